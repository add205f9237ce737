"""`voipctl explain`: the story of a rated, a no_rate, an excluded, a partly free and a
re-rated billed call, with the CDRs rated by the rating engine itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import update

from tests.support.support_data import add_cdr, add_client, add_product, add_service, utc
from voipctl.billing import ledger
from voipctl.jobs.rate import rate_cdrs
from voipctl.rating.deck import import_deck_file
from voipctl.store.models import Cdr

DECK = "prefix,rate,increment,description\n1,0.02,60/6,North America\n1519,0.01,6/6,Ontario\n"
NEW_DECK = "prefix,rate,increment,description\n1,0.02,60/6,North America\n1519,0.02,6/6,Ontario\n"


def call(s, svc, when, number, billsec):
    start = utc(when)
    return add_cdr(
        s, svc, start, number=number, billsec=billsec, answer=start, hangup_cause="NORMAL_CLEARING"
    ).id


@pytest.fixture
def story(store, tmp_path):
    """Client 42 (Toronto), one free minute a month; calls rated by the engine, two billed."""
    deck = tmp_path / "deck.csv"
    deck.write_text(DECK)
    with store.transaction() as s:
        client = add_client(s, 42, "America/Toronto")
        svc = add_service(s, client, add_product(s, free_minutes=1))
        ids = {
            # The month's first call: 61 s bills 66 s, 60 of them free (docs/rating.md §5).
            "free": call(s, svc, "2026-11-03 15:00:00", "+12125550100", 61),
            "rated": call(s, svc, "2026-11-04 15:00:00", "5195550100", 61),
            "no_rate": call(s, svc, "2026-11-05 15:00:00", "+33123456789", 30),
            "excluded": call(s, svc, "2026-11-06 15:00:00", "*97", 20),
        }
    import_deck_file(store, "Standard", deck, effective_from=datetime(2026, 1, 1, tzinfo=UTC))
    rate_cdrs(store)
    return {"ids": ids, "tmp": tmp_path, "service": svc.id}


def bill(store, cdr_ids, amount, reference):
    """What autobill does: one charge, and the CDRs marked with it, in one transaction."""
    with store.transaction() as s:
        entry = ledger.post(
            s,
            client_id=42,
            kind="charge",
            amount=Decimal(amount),
            reference=reference,
            cdr_count=len(cdr_ids),
            at=utc("2026-11-10 12:00:00"),
        ).entry
        s.execute(update(Cdr).where(Cdr.id.in_(cdr_ids)).values(billed_entry_id=entry.id))
        return entry.id


def explain(cli, cdr_id):
    r = cli("explain", str(cdr_id), "--format", "json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_rated_call(cli, story):
    doc = explain(cli, story["ids"]["rated"])
    assert doc["call"]["number"] == "5195550100"
    assert doc["call"]["start"] == "2026-11-04T15:00:00Z"
    assert doc["call"]["start_local"] == "2026-11-04 10:00:00-05:00"
    assert doc["provider_record"]["destination_number"] == "5195550100"
    rating = doc["rating"]
    assert rating["status"] == "rated"
    assert rating["normalized"] == "15195550100"
    assert (rating["prefix"], rating["description"]) == ("1519", "Ontario")
    assert rating["rate"] == "0.01" and rating["increment"] == "6/6"
    assert rating["deck_version"]["effective_from"] == "2026-01-01T00:00:00Z"
    assert rating["billable_seconds"] == 66 and rating["free_seconds"] == 0
    assert rating["cost"] == "0.0110"
    assert doc["billing"]["state"] == "not billed yet: the next autobill run charges it"
    assert doc["billing"]["billed"] is False and doc["billing"]["billed_by"] is None
    trace = doc["trace"]
    assert [step["number"] for step in trace["normalization"]][-1] == "15195550100"
    assert trace["status"] == "rated" and trace["matches_stored"] is True
    assert trace["deck"]["version_id"] == rating["deck_version"]["id"]
    assert trace["match"]["row"]["prefix"] == "1519"
    assert trace["match"]["candidates"][-1] == "1519"  # longest first, down to the match
    assert trace["formula"]["billable_seconds"] == 66 and trace["formula"]["charged_seconds"] == 66
    assert (
        "cost = round_half_up(0.00 + 0.01 x 66 / 60, 4) = 0.011 -> 0.0110"
        in (trace["formula"]["text"])
    )
    assert "cdr" not in trace and "ledger" not in trace  # shown in their own sections


def test_rated_call_as_text(cli, story):
    r = cli("explain", str(story["ids"]["rated"]))
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith(
        f"CDR {story['ids']['rated']}: outbound call from 5195550000 to 5195550100"
    )
    assert "  start        2026-11-04 10:00:00-05:00 (2026-11-04T15:00:00Z)" in out
    assert "  number       5195550100 -> 15195550100" in out
    assert "  matched      prefix 1519 Ontario (deck version 1 in force from 2026-01-01" in out
    assert "  rate         0.01/min, increment 6/6, connect fee 0.00" in out
    assert "  billable     61 s -> 66 s, free 0 s" in out
    assert "  cost         0.0110" in out
    assert "destination_number: 5195550100" in out
    assert "  normalise    " in out
    assert "  prefixes     tried " in out and "matched 1519 Ontario 0.01/min 6/6" in out
    assert "  formula      billsec 61 -> billable 66 (6/6) -> free 0 -> charged 66 s" in out
    assert "  same as stored  yes" in out


def test_no_rate_call(cli, story):
    doc = explain(cli, story["ids"]["no_rate"])
    assert doc["rating"]["status"] == "no_rate"
    assert doc["rating"]["normalized"] == "33123456789"
    assert doc["rating"]["prefix"] is None and doc["rating"]["cost"] is None
    assert doc["billing"]["state"].startswith("not billed: no rate matched")
    out = cli("explain", str(story["ids"]["no_rate"])).stdout
    assert "  matched      no row: no prefix of 33123456789 in deck version 1" in out
    assert "  billable     billsec 30 s, not priced" in out
    assert doc["trace"]["match"]["row"] is None
    assert "is in the outbound deck or the overrides" in doc["trace"]["match"]["reason"]
    assert doc["trace"]["formula"] is None


def test_excluded_call(cli, story):
    doc = explain(cli, story["ids"]["excluded"])
    assert doc["call"]["number"] == "*97"
    assert doc["rating"]["status"] == "excluded"
    assert doc["rating"]["cost"] == "0.0000"
    assert doc["billing"]["state"] == "nothing to bill: excluded"
    assert doc["trace"]["status_reason"] == "a feature code (starts with * or #)"
    assert doc["trace"]["normalization"][0]["number"] == "*97"
    assert doc["trace"]["deck"] is None


def test_call_partly_covered_by_free_minutes(cli, story):
    doc = explain(cli, story["ids"]["free"])
    rating = doc["rating"]
    assert (rating["prefix"], rating["billable_seconds"], rating["free_seconds"]) == ("1", 66, 60)
    assert rating["cost"] == "0.0020"  # 0.02 x 6/60
    assert doc["free_minutes"] == {
        "month": "2026-11",
        "allowance_seconds": 60,
        "used_before_seconds": 0,
        "used_by_call_seconds": 60,
        "used_in_month_seconds": 60,
        "left_seconds": 0,
    }
    assert doc["trace"]["formula"]["free_seconds"] == 60
    assert doc["trace"]["formula"]["charged_seconds"] == 6
    later = explain(cli, story["ids"]["rated"])["free_minutes"]
    assert later["used_before_seconds"] == 60 and later["used_by_call_seconds"] == 0
    out = cli("explain", str(story["ids"]["free"])).stdout
    assert "Free minutes of service 1 in 2026-11" in out
    assert "allowance 60 s; used before this call 0 s, by this call 60 s" in out


def test_rerated_billed_call(store, cli, story):
    ids = story["ids"]
    charge = bill(store, [ids["free"], ids["rated"]], "-0.0130", "autobill:1:test")
    deck = story["tmp"] / "new.csv"
    deck.write_text(NEW_DECK)
    import_deck_file(store, "Standard", deck, effective_from=datetime(2026, 11, 1, tzinfo=UTC))
    rate_cdrs(store, rerate=(utc("2026-11-01 00:00:00"), utc("2026-12-01 00:00:00")))

    doc = explain(cli, ids["rated"])
    assert doc["rating"]["cost"] == "0.0220" and doc["rating"]["rate"] == "0.02"
    assert doc["rating"]["deck_version"]["effective_from"] == "2026-11-01T00:00:00Z"
    bill_doc = doc["billing"]
    assert bill_doc["billed"] is True and bill_doc["rerate_count"] == 1
    assert bill_doc["billed_by"]["id"] == charge
    assert bill_doc["billed_by"]["reference"] == "autobill:1:test"
    assert bill_doc["billed_by"]["amount"] == "-0.0130"
    assert [(e["kind"], e["amount"], e["reference"]) for e in bill_doc["rerating"]] == [
        ("reversal", "0.0110", f"rerate:{ids['rated']}:1:reversal"),
        ("charge", "-0.0220", f"rerate:{ids['rated']}:1:charge"),
    ]
    assert bill_doc["rerating"][0]["reverses_id"] == charge
    assert bill_doc["current_entry"]["reference"] == f"rerate:{ids['rated']}:1:charge"
    assert doc["trace"]["matches_stored"] is True
    assert doc["trace"]["deck"]["effective_from"] == "2026-11-01T00:00:00Z"
    out = cli("explain", str(ids["rated"])).stdout
    assert f"  billed by    entry {charge} charge -0.0130" in out
    assert "  re-rated     entry" in out and f"rerate:{ids['rated']}:1:reversal" in out
    # The free call's cost did not change: billed once, no re-rating entries.
    free = explain(cli, ids["free"])["billing"]
    assert free["billed_by"]["id"] == charge and free["rerating"] == []


def test_unknown_cdr(cli, story):
    r = cli("explain", "999999")
    assert r.exit_code == 2
    assert r.stderr.strip() == "voipctl: error: CDR 999999 does not exist"


def test_unparsable_raw_record_is_shown_as_text(store, cli):
    with store.transaction() as s:
        svc = add_service(s, add_client(s, 42), add_product(s))
        cdr_id = add_cdr(s, svc, utc("2026-11-01 10:00:00"), raw="a;b;c").id
    doc = explain(cli, cdr_id)
    assert doc["provider_record"] == "a;b;c"
    assert doc["rating"]["status"] is None
    assert doc["billing"]["state"] == "not rated yet: the next rate run prices it"
