"""`voipctl rate` on stored CDRs: statuses, free minutes, overrides, re-rating and the ledger."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from tests.support.rating_support import SPEC_DECK, add_cdrs, cdrs, setup_account, write
from voipctl.billing import ledger
from voipctl.errors import NotFound
from voipctl.rating.deck import import_deck_file
from voipctl.rating.explain import trace
from voipctl.rating.load import SessionSource
from voipctl.rating.rater import Rater
from voipctl.store.locks import job_lock
from voipctl.store.models import Cdr, JobRun, LedgerEntry

DECK_FROM = datetime(2025, 12, 1, tzinfo=UTC)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def load_deck(store, tmp_path, content=SPEC_DECK, product="R", effective=DECK_FROM, name="d.csv"):
    return import_deck_file(
        store, product, write(tmp_path, name, content), effective_from=effective
    )


def by_number(rows):
    return {(r.number, r.billsec, r.direction): r for r in rows}


def test_every_status_of_rating_md_first_match_wins(cli, store, tmp_path):
    _, sid = setup_account(store, exclude="911,1800xxxxxxx", suppress="1900xxxxxxx")
    _, unmetered = setup_account(store, product="U", metered=False)
    load_deck(store, tmp_path)
    when = t("2026-01-10 12:00:00")
    calls = [
        ("19005550100", 61, when),  # suppressed beats everything
        ("1 800 555 0100", 61, when),  # excluded by pattern
        ("*97", 0, when),  # feature code
        ("911", 0, when),  # pattern beats internal
        ("2112", 30, when),  # extension
        ("+15195550100", 30, when, "local"),  # the PBX says local
        ("5550100", 30, when),  # 7 digits, no area code
        ("abc", 0, when),  # invalid beats unanswered
        ("+15195550100", 0, when),  # billsec 0
        ("+15195550100", 30, when, "outbound", False),  # no answer time
        ("15195550100", 61, when, "inbound"),
        ("+33123456789", 30, when),
        ("+15195550100", 61, when),
    ]
    add_cdrs(store, sid, 42, calls)
    add_cdrs(store, unmetered, 42, [("+15195550100", 61, when)])

    result = cli("rate", "--format", "json")
    assert result.exit_code == 1
    assert "1 entered no_rate" in result.stderr and "2 entered invalid_number" in result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {
        "suppressed": 1,
        "excluded": 3,
        "internal": 2,
        "invalid_number": 2,
        "unanswered": 2,
        "unmetered": 1,
        "inbound_not_billed": 1,
        "no_rate": 1,
        "rated": 1,
    }
    got = [(r.number, r.status, r.cost) for r in cdrs(store) if r.service_id == sid]
    assert [status for _, status, _ in got] == [
        "suppressed",
        "excluded",
        "excluded",
        "excluded",
        "internal",
        "internal",
        "invalid_number",
        "invalid_number",
        "unanswered",
        "unanswered",
        "inbound_not_billed",
        "no_rate",
        "rated",
    ]
    costs = {status: cost for _, status, cost in got}
    assert costs["no_rate"] is None and costs["invalid_number"] is None
    assert costs["unanswered"] == Decimal(0) and costs["excluded"] == Decimal(0)

    rated = next(r for r in cdrs(store) if r.status == "rated")
    assert (rated.normalized, rated.prefix, rated.rate, rated.connect_fee) == (
        "15195550100",
        "1519",
        Decimal("0.01"),
        Decimal(0),
    )
    assert (rated.increment, rated.rate_source, rated.billable_seconds, rated.free_seconds) == (
        "6/6",
        "deck",
        66,
        0,
    )
    assert rated.cost == Decimal("0.0110") and rated.deck_version_id is not None
    assert rated.rated_at is not None

    # The next run tries no_rate and invalid_number again, but mails nobody twice.
    again = cli("rate")
    assert again.exit_code == 0, again.output
    # A deck that covers +33 fixes the no_rate call on the next run.
    load_deck(store, tmp_path, "prefix,rate\n33,0.06\n", effective=DECK_FROM, name="fr.csv")
    fixed = cli("rate", "--format", "json")
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.stdout)["counts"]["rated"] == 1
    french = next(r for r in cdrs(store) if r.number == "+33123456789")
    assert (french.status, french.cost) == ("rated", Decimal("0.0600"))
    with store.transaction() as session:
        runs = session.scalars(select(JobRun).where(JobRun.job == "rate").order_by(JobRun.id))
        assert [r.status for r in runs] == ["failed", "ok", "ok"]


def test_free_minutes_of_rating_md_per_month_in_the_clients_zone(cli, store, tmp_path):
    _, sid = setup_account(store, free_minutes=1, timezone="America/Toronto")
    load_deck(store, tmp_path, "prefix,rate,increment\n1,0.02,60/6\n")
    add_cdrs(
        store,
        sid,
        42,
        [
            ("+12125550100", 61, t("2026-01-10 15:00:00")),  # 66 s, 60 free: 0.0020
            ("+12125550100", 30, t("2026-01-11 15:00:00")),  # 60 s, none free: 0.0200
            ("+12125550100", 30, t("2026-02-01 03:00:00")),  # Jan 31 22:00 in Toronto
            ("+12125550100", 30, t("2026-02-01 06:00:00")),  # Feb 1 01:00: a new month
        ],
    )
    assert cli("rate").exit_code == 0
    rows = cdrs(store)
    assert [(r.free_seconds, r.cost) for r in rows] == [
        (60, Decimal("0.0020")),
        (0, Decimal("0.0200")),
        (0, Decimal("0.0200")),
        (60, Decimal("0.0000")),
    ]
    # A late call of January takes nothing back from the calls already rated.
    (late,) = add_cdrs(store, sid, 42, [("+12125550100", 30, t("2026-01-05 15:00:00"))])
    assert cli("rate").exit_code == 0
    assert [(r.free_seconds, r.cost) for r in cdrs(store, [late])] == [(0, Decimal("0.0200"))]
    # Re-rating the whole month hands the free minute out in start order again.
    result = cli("rate", "--rerate", "--from", "2026-01-01", "--to", "2026-01-31", "--client", "42")
    assert result.exit_code == 0, result.output
    january = [(r.free_seconds, r.cost) for r in cdrs(store)][:4]
    assert january == [
        (60, Decimal("0.0000")),  # Jan 5, 30 s -> 60 s, all free
        (0, Decimal("0.0220")),  # Jan 10, 61 s -> 66 s
        (0, Decimal("0.0200")),
        (0, Decimal("0.0200")),  # Jan 31 in Toronto
    ]


def test_override_markup_and_inbound_examples_through_the_job(cli, store, tmp_path):
    _, sid = setup_account(store, product="M", markup_percent=Decimal(25))
    _, billed = setup_account(store, product="B", bill_inbound=True)
    _, not_billed = setup_account(store, product="N")
    load_deck(store, tmp_path, product="M")
    inbound = "prefix,rate,increment,direction\n1800,0.02,6/6,inbound\n"
    load_deck(store, tmp_path, inbound, product="B", name="in.csv")
    load_deck(store, tmp_path, inbound, product="N", name="in.csv")
    assert cli("rates", "override", "M", "1212", "0.015", "--increment", "1/1").exit_code == 0
    when = t("2026-01-10 12:00:00")
    add_cdrs(store, sid, 42, [("+15195550100", 61, when), ("+12125550100", 61, when)])
    add_cdrs(store, billed, 42, [("18005550100", 61, when, "inbound")])
    add_cdrs(store, not_billed, 42, [("18005550100", 62, when, "inbound")])
    assert cli("rate").exit_code == 0
    rows = by_number(cdrs(store))
    assert rows[("+15195550100", 61, "outbound")].cost == Decimal("0.0138")
    override = rows[("+12125550100", 61, "outbound")]
    assert (override.cost, override.rate_source, override.deck_version_id) == (
        Decimal("0.0153"),
        "override",
        None,
    )
    assert rows[("18005550100", 62, "inbound")].status == "inbound_not_billed"
    assert rows[("18005550100", 61, "inbound")].cost == Decimal("0.0220")


def _autobill(store, client_id, ids, reference):
    """What autobill does: one charge for many CDRs, and each CDR marked billed."""
    with store.transaction() as session:
        total = sum(r.cost for r in session.scalars(select(Cdr).where(Cdr.id.in_(ids))))
        entry = ledger.post(
            session,
            client_id=client_id,
            kind="charge",
            amount=-total,
            reference=reference,
            cdr_count=len(ids),
        ).entry
        session.execute(update(Cdr).where(Cdr.id.in_(ids)).values(billed_entry_id=entry.id))
        return entry.id


def _balance(store, client_id=42):
    with store.transaction() as session:
        return ledger.balance(session, client_id)


def _entries(store):
    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(LedgerEntry))


def test_rerate_moves_the_balance_by_exactly_the_difference_once(cli, store, tmp_path):
    _, sid = setup_account(store)
    load_deck(store, tmp_path, "prefix,rate,increment\n1,0.02,60/6\n1519,0.01,6/6\n")
    when = t("2026-01-10 12:00:00")
    ids = add_cdrs(
        store,
        sid,
        42,
        [("+15195550100", 61, when), ("+12125550100", 61, when), ("+12125550100", 60, when)],
    )
    assert cli("rate").exit_code == 0
    with store.transaction() as session:
        ledger.post(session, client_id=42, kind="topup", amount=Decimal(10), reference="top:1")
    first_charge = _autobill(store, 42, ids, "autobill:42:1")
    (unbilled,) = add_cdrs(store, sid, 42, [("+12125550100", 30, when)])
    assert cli("rate").exit_code == 0
    assert _balance(store) == Decimal("9.9470")  # 10 - (0.0110 + 0.0220 + 0.0200)

    # The carrier's price for 1 was wrong for January: a corrected deck, then a re-rate.
    load_deck(
        store,
        tmp_path,
        "prefix,rate,increment\n1,0.03,60/6\n1519,0.01,6/6\n",
        effective=t("2026-01-01 00:00:00"),
        name="fix.csv",
    )
    result = cli(
        "rate", "--rerate", "--from", "2026-01-01", "--to", "2026-01-31", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["ledger_adjusted"], report["ledger_difference"]) == (2, "0.021")
    # 0.0220 -> 0.0330 and 0.0200 -> 0.0300: the balance moves by exactly 0.0210
    assert _balance(store) == Decimal("9.9260")
    rows = {r.id: r for r in cdrs(store)}
    assert rows[ids[0]].cost == Decimal("0.0110") and rows[ids[0]].rerate_count == 0
    assert rows[ids[0]].billed_entry_id == first_charge
    assert rows[ids[1]].cost == Decimal("0.0330") and rows[ids[1]].rerate_count == 1
    assert rows[unbilled].cost == Decimal("0.0300") and rows[unbilled].billed_entry_id is None
    with store.transaction() as session:
        refs = {
            e.reference: (e.kind, e.amount, e.reverses_id)
            for e in session.scalars(
                select(LedgerEntry).where(LedgerEntry.reference.like("rerate:%"))
            )
        }
    assert refs == {
        f"rerate:{ids[1]}:1:reversal": ("reversal", Decimal("0.022"), first_charge),
        f"rerate:{ids[1]}:1:charge": ("charge", Decimal("-0.033"), None),
        f"rerate:{ids[2]}:1:reversal": ("reversal", Decimal("0.02"), first_charge),
        f"rerate:{ids[2]}:1:charge": ("charge", Decimal("-0.03"), None),
    }
    stamp = {r.id: r.rated_at for r in cdrs(store)}

    # The same re-run changes nothing at all.
    entries = _entries(store)
    again = cli(
        "rate", "--rerate", "--from", "2026-01-01", "--to", "2026-01-31", "--format", "json"
    )
    assert again.exit_code == 0
    assert json.loads(again.stdout)["changed"] == 0
    assert _balance(store) == Decimal("9.9260") and _entries(store) == entries
    assert {r.id: r.rated_at for r in cdrs(store)} == stamp

    # A second correction reverses the re-rate charge, not the first one.
    load_deck(store, tmp_path, "prefix,rate,increment\n1,0.025,60/6\n", effective=DECK_FROM)
    load_deck(
        store,
        tmp_path,
        "prefix,rate,increment\n1,0.025,60/6\n",
        effective=t("2026-01-02 00:00:00"),
        name="fix2.csv",
    )
    assert cli("rate", "--rerate", "--from", "2026-01-01", "--to", "2026-01-31").exit_code == 0
    # 0.0110 -> 0.0275, 0.0330 -> 0.0275, 0.0300 -> 0.0250 (billed), 0.0300 -> 0.0250 (unbilled)
    assert _balance(store) == Decimal("9.9260") - Decimal("0.0165") + Decimal("0.0055") + Decimal(
        "0.0050"
    )
    with store.transaction() as session:
        second = session.scalar(
            select(LedgerEntry).where(LedgerEntry.reference == f"rerate:{ids[1]}:2:reversal")
        )
        first_rerate_charge = session.scalar(
            select(LedgerEntry.id).where(LedgerEntry.reference == f"rerate:{ids[1]}:1:charge")
        )
    assert (second.amount, second.reverses_id) == (Decimal("0.033"), first_rerate_charge)


def test_rerate_only_touches_the_range_and_the_client(cli, store, tmp_path):
    _, sid = setup_account(store)
    _, other = setup_account(store, client_id=7)
    load_deck(store, tmp_path, "prefix,rate\n1,0.02\n")
    add_cdrs(store, sid, 42, [("+12125550100", 60, t("2026-01-10 12:00:00"))])
    add_cdrs(store, sid, 42, [("+12125550100", 60, t("2026-02-10 12:00:00"))])
    add_cdrs(store, other, 7, [("+12125550100", 60, t("2026-01-10 12:00:00"))])
    assert cli("rate").exit_code == 0
    load_deck(store, tmp_path, "prefix,rate\n1,0.05\n", effective=DECK_FROM, name="new.csv")
    result = cli("rate", "--rerate", "--from", "2026-01-01", "--to", "2026-01-31", "--client", "42")
    assert result.exit_code == 0, result.output
    costs = sorted((r.client_id, r.start.month, r.cost) for r in cdrs(store))
    assert costs == [
        (7, 1, Decimal("0.0200")),
        (42, 1, Decimal("0.0500")),
        (42, 2, Decimal("0.0200")),
    ]


def test_rate_usage_errors(cli, store):
    assert cli("rate", "--rerate").exit_code == 2
    assert cli("rate", "--from", "2026-01-01").exit_code == 2
    bad = cli("rate", "--rerate", "--from", "2026-02-01", "--to", "2026-01-01")
    assert bad.exit_code == 2


def test_dry_run_writes_nothing(cli, store, tmp_path):
    _, sid = setup_account(store)
    load_deck(store, tmp_path)
    add_cdrs(store, sid, 42, [("+15195550100", 61, t("2026-01-10 12:00:00"))])
    result = cli("rate", "--dry-run")
    assert result.exit_code == 0
    assert "rate: 1 CDRs rated: rated 1 (dry run: nothing written)" in result.stdout
    assert [r.status for r in cdrs(store)] == [None]
    # -v shows the summary line (under cron, without -v, a success prints nothing)
    assert cli("rate").stdout == ""
    assert cli("-v", "rate").stdout == "rate: 0 CDRs rated\n"
    assert [r.status for r in cdrs(store)] == ["rated"]


def test_a_held_lock_exits_75(cli, store, tmp_path):
    with job_lock(store, "rate"):
        result = cli("rate")
    assert result.exit_code == 75
    assert "another run holds" in result.stderr


def test_rater_rates_rows_in_one_pass_for_pull_cdrs(store, tmp_path):
    _, sid = setup_account(store, free_minutes=1)
    load_deck(store, tmp_path)
    with store.transaction() as session:
        rater = Rater(SessionSource(session))
        first = rater.rate_row(sid, "outbound", "+12125550100", 61, t("2026-01-10 12:00:00"))
        second = rater.rate_row(sid, "outbound", "+12125550100", 30, t("2026-01-11 12:00:00"))
        unanswered = rater.rate_row(sid, "outbound", "+12125550100", 0, t("2026-01-11 12:00:00"))
    assert (first.status, first.prefix, first.free_seconds, first.cost_decimal) == (
        "rated",
        "1",
        60,
        Decimal("0.0020"),
    )
    assert second.cost_decimal == Decimal("0.0200")
    assert unanswered.status == "unanswered"
    values = first.columns(t("2026-01-10 12:00:00"))
    assert values["cost"] == 2_000_000 and values["increment"] == "60/6"
    assert values["rated_at"] == int(t("2026-01-10 12:00:00").timestamp())


def test_explain_trace_tells_the_whole_story(cli, store, tmp_path):
    _, sid = setup_account(store, product="M", markup_percent=Decimal(25), exclude="911")
    load_deck(store, tmp_path, product="M")
    when = t("2026-01-10 12:00:00")
    rated, missing, excluded = add_cdrs(
        store,
        sid,
        42,
        [("+1 (519) 555-0100", 61, when), ("+33123456789", 30, when), ("911", 0, when)],
    )
    cli("rate")
    with store.transaction() as session:
        story = trace(session, rated)
        none = trace(session, missing)
        skipped = trace(session, excluded)
    assert [s["number"] for s in story["normalization"]] == [
        "+15195550100",
        "15195550100",
        "15195550100",
    ]
    assert story["status"] == "rated" and story["matches_stored"]
    assert story["match"]["row"]["prefix"] == "1519"
    assert story["match"]["candidates"] == ["1519"]
    assert story["deck"]["version_id"] is not None
    formula = story["formula"]
    assert (formula["billable_seconds"], formula["free_seconds"]) == (66, 0)
    assert formula["exact_cost"] == Decimal("0.01375") and formula["cost"] == Decimal("0.0138")
    assert "0.01375 -> 0.0138" in formula["text"]
    assert "x (1 + 25" in formula["text"]
    assert none["status"] == "no_rate"
    # the deck has prefixes of 4, 2 and 1 digits: those are the lengths tried
    assert none["match"]["candidates"] == ["3312", "33", "3"]
    assert "is in the outbound deck" in none["match"]["reason"]
    assert skipped["status"] == "excluded"
    assert skipped["patterns"]["exclude"]["matched"] == "911"
    with pytest.raises(NotFound, match="no CDR 999999"), store.transaction() as session:
        trace(session, 999999)


@pytest.mark.parametrize("free_minutes", [0, 1])
def test_each_call_is_rated_with_the_version_in_force_at_its_start(
    cli, store, tmp_path, free_minutes
):
    _, sid = setup_account(store, free_minutes=free_minutes)
    load_deck(store, tmp_path, "prefix,rate\n1,0.02\n")
    load_deck(
        store, tmp_path, "prefix,rate\n1,0.04\n", effective=t("2026-01-15 00:00:00"), name="b"
    )
    load_deck(
        store, tmp_path, "prefix,rate\n1,0.08\n", effective=t("2026-01-25 00:00:00"), name="c"
    )
    # inserted out of start order, read in one run
    add_cdrs(
        store,
        sid,
        42,
        [
            ("+12125550100", 120, t("2026-01-20 00:00:00")),
            ("+12125550100", 120, t("2026-01-10 00:00:00")),
            ("+12125550100", 120, t("2026-01-26 00:00:00")),
            ("+12125550100", 120, t("2026-01-14 23:59:59")),
        ],
    )
    assert cli("rate").exit_code == 0
    charged = Decimal(2 if free_minutes == 0 else 1)  # minutes, after the free one
    got = [(r.start.day, r.cost) for r in cdrs(store)]
    # with a free minute it goes to the first call by start, whatever the order of insertion
    assert got == [
        (10, Decimal("0.02") * charged),
        (14, Decimal("0.04")),
        (20, Decimal("0.08")),
        (26, Decimal("0.16")),
    ]


def test_pull_rater_rates_rows_as_pull_cdrs_stores_them(store, tmp_path):
    from sqlalchemy import insert

    from voipctl.rating.pull import PullRater

    _, sid = setup_account(store)
    _, free = setup_account(store, product="F", free_minutes=10)
    load_deck(store, tmp_path)
    load_deck(store, tmp_path, product="F", name="f.csv")
    start = int(t("2026-01-10 12:00:00").timestamp())

    def row(service_id, number, billsec, n):
        return {
            "server": "fusion1",
            "provider_id": f"pull{n}",
            "service_id": service_id,
            "client_id": 42,
            "direction": "outbound",
            "number": number,
            "start": start,
            "answer": start,
            "billsec": billsec,
            "pulled_at": start,
            "status": None,
            "rerate_count": 0,
        }

    rows = [
        row(sid, "+15195550100", 61, 1),
        row(sid, "+33123456789", 61, 2),  # no_rate: left for `voipctl rate` to report
        row(free, "+15195550100", 61, 3),  # free minutes: left for `voipctl rate`
    ]
    hook = PullRater(store)
    try:
        hook(rows)
    finally:
        hook.close()
    with store.engine.begin() as conn:
        conn.execute(insert(Cdr.__table__), rows)  # what pull-cdrs' Core path does
    got = {r.provider_id: (r.status, r.cost, r.increment) for r in cdrs(store)}
    assert got == {
        "pull1": ("rated", Decimal("0.0110"), "6/6"),
        "pull2": (None, None, None),
        "pull3": (None, None, None),
    }


def test_free_minutes_go_in_start_order_whatever_the_chunk_size(store, tmp_path):
    from voipctl.jobs.rate import rate_cdrs

    services = [setup_account(store, free_minutes=1)[1] for _ in range(3)]
    _, plain = setup_account(store, product="P")
    load_deck(store, tmp_path, "prefix,rate,increment\n1,0.06,1/1\n")
    load_deck(store, tmp_path, "prefix,rate,increment\n1,0.06,1/1\n", product="P", name="p.csv")
    calls = []
    for day in range(9, 0, -1):  # stored newest first, services interleaved
        for n, sid in enumerate([*services, plain]):
            calls.append((sid, t(f"2026-01-{day:02d} 0{n}:00:00")))
    for sid, when in calls:
        add_cdrs(store, sid, 42, [("+12125550100", 40, when)])
    report = rate_cdrs(store, chunk=3)
    assert report.counts["rated"] == len(calls)
    for sid in services:
        rows = sorted((r for r in cdrs(store) if r.service_id == sid), key=lambda r: r.start)
        # 40 s calls, 60 free seconds: all of the first, 20 s of the second, then none
        assert [r.free_seconds for r in rows] == [40, 20] + [0] * 7
        assert [r.cost for r in rows][:3] == [
            Decimal("0.0000"),
            Decimal("0.0200"),
            Decimal("0.0400"),
        ]
    assert {r.cost for r in cdrs(store) if r.service_id == plain} == {Decimal("0.0400")}


def test_a_billed_call_set_back_to_unrated_is_not_charged_twice(cli, store, tmp_path):
    _, sid = setup_account(store)
    load_deck(store, tmp_path)
    ids = add_cdrs(store, sid, 42, [("+15195550100", 61, t("2026-01-10 12:00:00"))])
    assert cli("rate").exit_code == 0
    _autobill(store, 42, ids, "autobill:42:1")
    with store.transaction() as session:
        session.execute(update(Cdr).values(status=None))  # an operator forcing a re-rate
    entries = _entries(store)
    assert cli("rate").exit_code == 0
    assert _balance(store) == Decimal("-0.0110") and _entries(store) == entries
    assert [r.status for r in cdrs(store)] == ["rated"]
