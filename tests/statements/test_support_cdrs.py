"""`voipctl cdrs`: filters, formats, totals, CSV formula neutralisation, time zones."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.support.support_data import add_cdr, add_client, add_product, add_service, rated, utc
from voipctl.support.cdrs import number_like, number_regex


@pytest.fixture
def calls(store):
    """Client 42 (UTC) with two services and a spread of calls in November 2026."""
    with store.transaction() as s:
        client = add_client(s, 42)
        product = add_product(s)
        svc = add_service(s, client, product)
        svc2 = add_service(s, client, product, domain_field="second.pbx.example.com")
        other = add_service(s, add_client(s, 7), product, domain_field="other.example.com")
        ids = {
            "rated": add_cdr(s, svc, utc("2026-11-03 10:00:00"), **rated("0.0110")).id,
            "billed": add_cdr(
                s, svc, utc("2026-11-04 10:00:00"), billed_entry_id=99, **rated("0.0220")
            ).id,
            "uk": add_cdr(
                s,
                svc2,
                utc("2026-11-05 10:00:00"),
                number="011442071234567",
                billsec=31,
                **rated(
                    "0.0180",
                    prefix="4420",
                    billable=36,
                    normalized="442071234567",
                    description="UK - London",
                ),
            ).id,
            "no_rate": add_cdr(
                s,
                svc,
                utc("2026-11-06 10:00:00"),
                number="+33123456789",
                billsec=30,
                status="no_rate",
                normalized="33123456789",
            ).id,
            "suppressed": add_cdr(
                s,
                svc,
                utc("2026-11-07 10:00:00"),
                number="18005550100",
                status="suppressed",
                normalized="18005550100",
                billable_seconds=0,
                cost=None,
            ).id,
            "inbound": add_cdr(
                s,
                svc,
                utc("2026-11-08 10:00:00"),
                direction="inbound",
                number="15195551234",
                caller="+12125550100",
                status="inbound_not_billed",
                normalized="15195551234",
            ).id,
            "unrated": add_cdr(s, svc, utc("2026-11-09 10:00:00"), number="+1 (519) 555-0100").id,
            "october": add_cdr(s, svc, utc("2026-10-31 23:59:59"), **rated("0.0110")).id,
            "december": add_cdr(s, svc, utc("2026-12-01 00:00:00"), **rated("0.0110")).id,
        }
        add_cdr(s, other, utc("2026-11-03 10:00:00"), **rated("5.0000"))
    return ids


def ids_of(result) -> list[int]:
    assert result.exit_code == 0, result.output
    return [row["id"] for row in json.loads(result.stdout)]


def test_table_is_newest_first_with_totals_and_hides_suppressed(cli, calls):
    r = cli("cdrs", "42", "--from", "2026-11-01", "--to", "2026-11-30")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["id", "start", "(UTC)"]
    body = [line for line in lines[2:-1]]
    shown = [int(line.split()[0]) for line in body]
    expected = ["unrated", "inbound", "no_rate", "uk", "billed", "rated"]
    assert shown == [calls[k] for k in expected]
    # 66 + 66 + 36 billable seconds = 2.80 minutes; 0.0110 + 0.0220 + 0.0180 = 0.0510.
    assert lines[-1] == "total: 6 calls, 2.80 billable minutes, cost 0.0510"
    assert "2026-11-03 10:00:00+00:00" in r.stdout


def test_all_and_status_suppressed_show_suppressed_calls(cli, calls):
    period = ("--from", "2026-11-01", "--to", "2026-11-30", "--format", "json")
    assert calls["suppressed"] not in ids_of(cli("cdrs", "42", *period))
    assert calls["suppressed"] in ids_of(cli("cdrs", "42", *period, "--all"))
    assert ids_of(cli("cdrs", "42", *period, "--status", "suppressed")) == [calls["suppressed"]]


def test_status_filter(cli, calls):
    period = ("--from", "2026-11-01", "--to", "2026-11-30", "--format", "json")
    assert ids_of(cli("cdrs", "42", *period, "--status", "rated")) == [
        calls["uk"],
        calls["billed"],
        calls["rated"],
    ]
    assert ids_of(cli("cdrs", "42", *period, "--status", "no_rate")) == [calls["no_rate"]]
    assert ids_of(cli("cdrs", "42", *period, "--status", "unrated")) == [calls["unrated"]]
    r = cli("cdrs", "42", "--status", "cheap")
    assert r.exit_code == 2
    assert "cheap" in r.stderr


def test_period_is_inclusive_and_everything_without_one(cli, calls):
    everything = ids_of(cli("cdrs", "42", "--format", "json"))
    assert calls["october"] in everything and calls["december"] in everything
    assert len(everything) == 8  # all of client 42's but the suppressed one
    november = ids_of(
        cli("cdrs", "42", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json")
    )
    assert calls["october"] not in november and calls["december"] not in november
    one_day = ids_of(
        cli("cdrs", "42", "--from", "2026-11-04", "--to", "2026-11-04", "--format", "json")
    )
    assert one_day == [calls["billed"]]
    exact = ids_of(
        cli(
            "cdrs", "42", "--from", "2026-10-31T23:59:59Z", "--to", "2026-11-03", "--format", "json"
        )
    )
    assert exact == [calls["rated"], calls["october"]]


def test_service_filter(cli, calls):
    r = cli("cdrs", "42", "--service", "2", "--format", "json")
    assert ids_of(r) == [calls["uk"]]


def test_service_of_another_client_is_refused(cli, calls):
    r = cli("cdrs", "42", "--service", "3")
    assert r.exit_code == 2
    assert r.stderr.strip() == "voipctl: error: service 3 belongs to client 7, not 42"
    r = cli("cdrs", "42", "--service", "99")
    assert r.exit_code == 2
    assert r.stderr.strip() == "voipctl: error: no service 99"


def test_direction_filter(cli, calls):
    assert ids_of(cli("cdrs", "42", "--direction", "inbound", "--format", "json")) == [
        calls["inbound"]
    ]
    outbound = ids_of(cli("cdrs", "42", "--direction", "outbound", "--format", "json"))
    assert calls["inbound"] not in outbound and len(outbound) == 7


def test_number_pattern_matches_raw_or_normalized(cli, calls):
    def find(pattern):
        return ids_of(cli("cdrs", "42", "--number", pattern, "--format", "json"))

    # The unrated call's raw "+1 (519) 555-0100" has no normalised form yet, and its raw
    # form has other characters than digits where the * stands: it matches neither.
    assert find("1519*") == [
        calls["december"],
        calls["inbound"],
        calls["billed"],
        calls["rated"],
        calls["october"],
    ]
    assert find("*0100") == [calls["december"], calls["billed"], calls["rated"], calls["october"]]
    assert find("011442071234567") == [calls["uk"]]  # raw
    assert find("44*") == [calls["uk"]]  # normalised
    assert find("+33*") == [calls["no_rate"]]  # raw with its plus
    assert find("*1234*") == [calls["inbound"], calls["no_rate"], calls["uk"]]
    assert find("1800*") == []  # suppressed stays hidden
    assert find("99*") == []


def test_number_star_is_digits_only_and_like_is_escaped(store, cli):
    with store.transaction() as s:
        svc = add_service(s, add_client(s, 42), add_product(s))
        digits = add_cdr(s, svc, utc("2026-11-01 10:00:00"), number="15_5550100").id
        letters = add_cdr(s, svc, utc("2026-11-01 11:00:00"), number="1519abc").id
        plain = add_cdr(s, svc, utc("2026-11-01 12:00:00"), number="1525550100").id
    assert ids_of(cli("cdrs", "42", "--number", "15_5*", "--format", "json")) == [digits]
    assert ids_of(cli("cdrs", "42", "--number", "15*", "--format", "json")) == [plain]
    assert letters not in ids_of(cli("cdrs", "42", "--number", "1519*", "--format", "json"))
    assert number_like("1_%\\*") == "1\\_\\%\\\\%"
    assert number_regex("*0100").fullmatch("15195550100")
    assert not number_regex("*0100").fullmatch("1519x0100")


def test_limit_keeps_the_newest(cli, calls):
    assert ids_of(cli("cdrs", "42", "--limit", "2", "--format", "json")) == [
        calls["december"],
        calls["unrated"],
    ]
    # With a pattern the limit counts matching calls only.
    assert ids_of(cli("cdrs", "42", "--number", "*0100", "--limit", "2", "--format", "json")) == [
        calls["december"],
        calls["billed"],
    ]
    r = cli("cdrs", "42", "--limit", "2")
    assert r.stdout.splitlines()[-1] == "total: 2 calls, 1.10 billable minutes, cost 0.0110"
    assert cli("cdrs", "42", "--limit", "0").exit_code == 2


def test_json_rows(cli, calls):
    r = cli("cdrs", "42", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json")
    rows = {row["id"]: row for row in json.loads(r.stdout)}
    billed = rows[calls["billed"]]
    assert billed["service_id"] == 1
    assert billed["direction"] == "outbound"
    assert billed["caller"] == "5195550000"
    assert billed["number"] == "15195550100"
    assert billed["normalized"] == "15195550100"
    assert billed["start"] == "2026-11-04T10:00:00Z"
    assert billed["billsec"] == 61
    assert billed["billable_seconds"] == 66
    assert billed["status"] == "rated"
    assert billed["prefix"] == "1519"
    assert billed["cost"] == "0.0220"
    assert billed["billed"] is True
    assert rows[calls["rated"]]["billed"] is False
    no_rate = rows[calls["no_rate"]]
    assert no_rate["cost"] is None and no_rate["prefix"] is None
    assert no_rate["billable_seconds"] is None
    assert rows[calls["unrated"]]["status"] is None
    assert "total" not in r.stdout


def test_empty_results(cli, calls):
    r = cli("cdrs", "42", "--from", "2027-01-01", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    r = cli("cdrs", "42", "--from", "2027-01-01")
    assert "(none)" in r.stdout
    assert r.stdout.splitlines()[-1] == "total: 0 calls, 0.00 billable minutes, cost 0.0000"
    r = cli("cdrs", "42", "--from", "2027-01-01", "--format", "csv")
    assert r.stdout.splitlines() == [r.stdout.splitlines()[0]]


def test_csv_has_rows_only_in_the_client_zone(store, cli):
    with store.transaction() as s:
        svc = add_service(s, add_client(s, 42, "America/Toronto"), add_product(s))
        add_cdr(s, svc, utc("2026-07-01 16:00:00"), **rated("0.0110"))
    r = cli("cdrs", "42", "--format", "csv")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0][:3] == ["id", "start (America/Toronto)", "service"]
    assert rows[1][1] == "2026-07-01 12:00:00-04:00"  # EDT
    assert rows[1][rows[0].index("cost")] == "0.0110"
    assert rows[1][rows[0].index("billed")] == "no"
    assert len(rows) == 2  # no totals line in CSV
    r = cli("cdrs", "42", "--format", "csv", "--utc")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0][1] == "start (UTC)" and rows[1][1] == "2026-07-01 16:00:00+00:00"


def test_csv_neutralises_formula_cells_unless_raw(store, cli):
    callers = ['=HYPERLINK("http://evil.example/","call me")', "@SUM(A1:A9)", "+1 (519)", "-1.25"]
    with store.transaction() as s:
        svc = add_service(s, add_client(s, 42), add_product(s))
        for i, caller in enumerate(callers):
            add_cdr(s, svc, utc(f"2026-11-01 10:0{i}:00"), caller=caller, number="+15195550100")
    r = cli("cdrs", "42", "--format", "csv")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    col = rows[0].index("caller")
    assert [row[col] for row in rows[1:]] == [
        "-1.25",  # a plain number stays as it is
        "'+1 (519)",
        "'@SUM(A1:A9)",
        '\'=HYPERLINK("http://evil.example/","call me")',
    ]
    assert {row[rows[0].index("number")] for row in rows[1:]} == {"+15195550100"}
    raw = list(csv.reader(io.StringIO(cli("cdrs", "42", "--format", "csv", "--raw").stdout)))
    assert [row[col] for row in raw[1:]] == list(reversed(callers))


def test_dst_end_day_shows_the_repeated_hour_twice_in_order(store, cli):
    # 2026-11-01 in Toronto: 01:00-02:00 happens twice (EDT, then EST).
    with store.transaction() as s:
        svc = add_service(s, add_client(s, 42, "America/Toronto"), add_product(s))
        first = add_cdr(s, svc, utc("2026-11-01 05:30:00"), caller="first").id  # 01:30 EDT
        second = add_cdr(s, svc, utc("2026-11-01 06:30:00"), caller="second").id  # 01:30 EST
        add_cdr(s, svc, utc("2026-11-01 03:59:59"), caller="oct31")  # Oct 31, 23:59:59 EDT
        midnight = add_cdr(s, svc, utc("2026-11-01 04:00:00"), caller="midnight").id
        add_cdr(s, svc, utc("2026-11-02 05:30:00"), caller="nov2")  # Nov 2, 00:30 EST
        late = add_cdr(s, svc, utc("2026-11-02 04:59:59"), caller="late").id  # 23:59:59 EST
    r = cli("cdrs", "42", "--from", "2026-11-01", "--to", "2026-11-01", "--format", "csv")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert [(int(row[0]), row[1]) for row in rows[1:]] == [
        (late, "2026-11-01 23:59:59-05:00"),
        (second, "2026-11-01 01:30:00-05:00"),
        (first, "2026-11-01 01:30:00-04:00"),
        (midnight, "2026-11-01 00:00:00-04:00"),
    ]
    table = cli("cdrs", "42", "--from", "2026-11-01", "--to", "2026-11-01").stdout
    assert table.index("01:30:00-05:00") < table.index("01:30:00-04:00")
    utc_rows = list(
        csv.reader(
            io.StringIO(
                cli(
                    "cdrs",
                    "42",
                    "--from",
                    "2026-11-01",
                    "--to",
                    "2026-11-01",
                    "--format",
                    "csv",
                    "--utc",
                ).stdout
            )
        )
    )
    assert [row[1] for row in utc_rows[1:]] == [
        "2026-11-02 04:59:59+00:00",
        "2026-11-01 06:30:00+00:00",
        "2026-11-01 05:30:00+00:00",
        "2026-11-01 04:00:00+00:00",
    ]


def test_unknown_client_bad_date_and_bad_zone(store, cli):
    r = cli("cdrs", "999")
    assert r.exit_code == 2
    assert (
        r.stderr.strip()
        == "voipctl: error: no client 999 (add it with `voipctl client add 999 ...`)"
    )
    with store.transaction() as s:
        add_client(s, 42)
        add_client(s, 43, "Mars/Olympus_Mons")
    r = cli("cdrs", "42", "--from", "2026-13-01")
    assert r.exit_code == 2
    assert "'2026-13-01' is not a date" in r.stderr
    r = cli("cdrs", "42", "--from", "2026-11-02", "--to", "2026-11-01")
    assert r.exit_code == 2 and "--to is before --from" in r.stderr
    r = cli("cdrs", "43")
    assert r.exit_code == 1
    assert "clients.timezone 'Mars/Olympus_Mons' is not an IANA time zone" in r.stderr
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    "items",
    [[], [{"a": 1}], [{"a": "x", "b": [1, 2], "c": {"d": None}}, {"e": "ü\n"}], [1, "two"]],
)
def test_json_lists_are_streamed_exactly_as_one_document(items, capsys):
    from voipctl.cli.output import _echo_json_list, to_json

    _echo_json_list(iter(items))
    assert capsys.readouterr().out == to_json(items) + "\n"


def test_ids_too_large_for_the_database_are_not_found(cli, calls):
    for args, message in [
        (("cdrs", str(2**63)), f"no client {2**63} (add it with `voipctl client add {2**63} ...`)"),
        (("cdrs", "42", "--service", str(2**31)), f"no service {2**31}"),
        (("explain", str(2**63)), f"CDR {2**63} does not exist"),
        (
            ("statement", str(2**64)),
            f"no client {2**64} (add it with `voipctl client add {2**64} ...`)",
        ),
    ]:
        r = cli(*args)
        assert r.exit_code == 2, r.output
        assert r.stderr.strip() == f"voipctl: error: {message}"


PERIOD = ("--from", "2026-11-01", "--to", "2026-11-30")


def test_the_table_shows_what_support_reads_within_the_terminal(cli, calls, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    r = cli("cdrs", "42", *PERIOD)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "id", "start", "(UTC)", "direction", "number", "destination", "time", "cost", "status",
    ]  # fmt: skip
    assert max(len(line) for line in lines) <= 100
    assert lines[-1] == "total: 6 calls, 2.80 billable minutes, cost 0.0510"


def test_a_narrow_terminal_cuts_the_destination_first(cli, calls, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    wide_lines = cli("cdrs", "42", *PERIOD).stdout.splitlines()
    natural = max(len(line) for line in wide_lines[:-1])
    monkeypatch.setenv("COLUMNS", str(natural - 3))
    lines = cli("cdrs", "42", *PERIOD).stdout.splitlines()
    assert max(len(line) for line in lines[:-1]) == natural - 3
    assert any("~" in line for line in lines[2:-1])


def test_wide_and_columns_choose_the_table_columns(cli, calls):
    wide = cli("cdrs", "42", *PERIOD, "--wide").stdout.splitlines()[0].split()
    assert wide == [
        "id", "start", "(UTC)", "service", "direction", "caller", "number", "normalized",
        "billsec", "billable", "status", "prefix", "destination", "cost", "billed",
    ]  # fmt: skip
    r = cli("cdrs", "42", *PERIOD, "--columns", "id,billsec,time,billed")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].split() == ["id", "billsec", "time", "billed"]
    assert "1:06" in r.stdout  # 66 billable seconds


def test_an_unknown_column_is_one_line_with_a_suggestion(cli, calls):
    r = cli("cdrs", "42", "--columns", "id,cots")
    assert r.exit_code == 2
    assert r.stderr == (
        "voipctl: error: cdrs: --columns: unknown column 'cots' (did you mean cost?) (columns: "
        "id, start, service, direction, caller, number, normalized, billsec, billable, status, "
        "prefix, destination, cost, billed, time)\n"
    )


def test_csv_keeps_every_column(cli, calls):
    header = cli("cdrs", "42", *PERIOD, "--format", "csv").stdout.splitlines()[0]
    assert header == (
        "id,start (UTC),service,direction,caller,number,normalized,billsec,billable,status,"
        "prefix,destination,cost,billed"
    )
