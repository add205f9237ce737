"""`voipctl statement`: opening and closing balances, the period's rows, usage per destination."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tests.support.support_data import add_cdr, add_client, add_product, add_service, rated, utc
from voipctl.billing import ledger
from voipctl.support.statement import default_period

NOVEMBER = ("--from", "2026-11-01", "--to", "2026-11-30")


@pytest.fixture
def book(store):
    """Client 42 in Toronto: ledger rows on both sides of November's edges, and calls."""
    with store.transaction() as s:
        client = add_client(s, 42, "America/Toronto")
        svc = add_service(s, client, add_product(s))
        other = add_client(s, 7)

        def post(kind, amount, when, ref, note=""):
            ledger.post(
                s,
                client_id=42,
                kind=kind,
                amount=Decimal(amount),
                reference=ref,
                note=note,
                at=utc(when),
            )

        post("topup", "50.00", "2026-10-15 12:00:00", "pay-1")
        post("charge", "-1.2345", "2026-11-01 03:30:00", "bill-oct")  # Oct 31 23:30 EDT
        post("topup", "20.00", "2026-11-01 04:00:00", "pay-2", "card")  # Nov 1 00:00 EDT
        post("charge", "-0.0330", "2026-11-10 12:00:00", "bill-nov10")
        post("adjustment", "-5.00", "2026-11-15 12:00:00", "adj-1", "=cmd|' /C calc'!A0")
        post("reversal", "0.0110", "2026-11-20 12:00:00", "rev-1")
        post("charge", "-0.0001", "2026-12-01 04:59:59", "bill-last")  # Nov 30 23:59:59 EST
        post("topup", "100.00", "2026-12-01 05:00:00", "pay-3")  # Dec 1 00:00 EST
        ledger.post(
            s,
            client_id=other.id,
            kind="topup",
            amount=Decimal(9),
            reference="x",
            at=utc("2026-11-02 00:00:00"),
        )
        add_cdr(s, svc, utc("2026-11-02 15:00:00"), **rated("0.0110"))
        add_cdr(s, svc, utc("2026-11-03 15:00:00"), **rated("0.0110"))
        uk = rated("0.0180", prefix="4420", billable=36, description="UK - London")
        add_cdr(s, svc, utc("2026-11-04 15:00:00"), number="442071234567", **uk)
        add_cdr(s, svc, utc("2026-11-05 15:00:00"), status="no_rate", number="33123456789")
        add_cdr(s, svc, utc("2026-11-01 03:59:59"), **rated("7.0000"))  # Oct 31 local
        add_cdr(s, svc, utc("2026-12-01 05:00:00"), **rated("7.0000"))  # Dec 1 local


def test_json_statement_has_exact_amounts(cli, book):
    r = cli("statement", "42", *NOVEMBER, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["client_id"] == 42 and doc["currency"] == "CAD"
    assert doc["timezone"] == "America/Toronto"
    assert doc["from"] == "2026-11-01T04:00:00Z" and doc["to"] == "2026-12-01T05:00:00Z"
    assert doc["opening_balance"] == "48.7655"
    assert [(e["kind"], e["amount"], e["balance"], e["reference"]) for e in doc["entries"]] == [
        ("topup", "20.0000", "68.7655", "pay-2"),
        ("charge", "-0.0330", "68.7325", "bill-nov10"),
        ("adjustment", "-5.0000", "63.7325", "adj-1"),
        ("reversal", "0.0110", "63.7435", "rev-1"),
        ("charge", "-0.0001", "63.7434", "bill-last"),
    ]
    assert doc["entries"][0]["created_at"] == "2026-11-01T04:00:00Z"
    assert doc["closing_balance"] == "63.7434"
    assert doc["usage"] == [
        {
            "prefix": "1519",
            "description": "Canada - Ontario",
            "calls": 2,
            "billable_seconds": 132,
            "minutes": "2.20",
            "cost": "0.0220",
        },
        {
            "prefix": "4420",
            "description": "UK - London",
            "calls": 1,
            "billable_seconds": 36,
            "minutes": "0.60",
            "cost": "0.0180",
        },
    ]
    assert doc["usage_total"]["calls"] == 3 and doc["usage_total"]["cost"] == "0.0400"


def test_table_statement(cli, book):
    r = cli("statement", "42", *NOVEMBER)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Statement of client 42 (Ada Lovelace), CAD" in out
    assert "Period: 2026-11-01 to 2026-11-30 (America/Toronto)" in out
    assert "Opening balance: 48.7655" in out
    assert "Closing balance: 63.7434" in out
    assert "2026-11-01 00:00:00-04:00  topup" in out
    assert "2026-11-30 23:59:59-05:00  charge" in out
    assert "total: 3 calls, 2.80 minutes, cost 0.0400" in out
    lines = out.splitlines()
    usage = lines[lines.index("Usage by destination (rated calls)") + 3 :]
    assert usage[0].split()[:2] == ["1519", "Canada"] and usage[1].split()[0] == "4420"


def test_csv_statement_has_two_blocks_and_neutralises_notes(cli, book):
    r = cli("statement", "42", *NOVEMBER, "--format", "csv")
    assert r.exit_code == 0, r.output
    ledger_part, usage_part = r.stdout.split("\n\n")
    rows = list(csv.reader(io.StringIO(ledger_part)))
    assert rows[0] == ["date", "kind", "amount", "balance", "reference", "note"]
    assert rows[1][:4] == ["2026-11-01 00:00:00-04:00", "opening", "", "48.7655"]
    assert rows[-1][:4] == ["2026-12-01 00:00:00-05:00", "closing", "", "63.7434"]
    assert [row[2] for row in rows[2:-1]] == ["20.0000", "-0.0330", "-5.0000", "0.0110", "-0.0001"]
    assert rows[4][5] == "'=cmd|' /C calc'!A0"
    usage = list(csv.reader(io.StringIO(usage_part)))
    assert usage == [
        ["prefix", "destination", "calls", "minutes", "cost"],
        ["1519", "Canada - Ontario", "2", "2.20", "0.0220"],
        ["4420", "UK - London", "1", "0.60", "0.0180"],
    ]
    raw = cli("statement", "42", *NOVEMBER, "--format", "csv", "--raw").stdout
    assert (
        "\n2026-11-15 07:00:00-05:00,adjustment,-5.0000,63.7325,adj-1,=cmd|' /C calc'!A0\n" in raw
    )


def test_a_period_without_rows_shows_the_same_balance_twice(cli, book):
    r = cli("statement", "42", "--from", "2026-11-21", "--to", "2026-11-29", "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["opening_balance"] == doc["closing_balance"] == "63.7435"
    assert doc["entries"] == [] and doc["usage"] == []
    assert doc["usage_total"]["cost"] == "0.0000"


def test_only_to_starts_on_the_first_of_that_month(cli, book):
    r = cli("statement", "42", "--to", "2026-11-30", "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["from"] == "2026-11-01T04:00:00Z" and doc["closing_balance"] == "63.7434"


def test_default_period_is_this_month_so_far_in_the_clients_zone():
    zone = ZoneInfo("America/Toronto")
    start, end = default_period(zone, date(2026, 11, 15))
    assert start == datetime(2026, 11, 1, 4, tzinfo=UTC)
    assert end == datetime(2026, 11, 16, 5, tzinfo=UTC)


def test_errors(cli, book):
    r = cli("statement", "999")
    assert (
        r.exit_code == 2
        and r.stderr.strip()
        == "voipctl: error: no client 999 (add it with `voipctl client add 999 ...`)"
    )
    r = cli("statement", "42", "--from", "2026-11-30", "--to", "2026-11-01")
    assert r.exit_code == 2 and r.stderr.strip() == "voipctl: error: --to is before --from"
