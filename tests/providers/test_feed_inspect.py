"""`voipctl feed inspect`: the layout of a CDR file told from its first lines, a proposed
[servers.NAME.cdr_format] block that then pulls and rates the file (docs/providers.md,
"Feed inspect")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import respx
from sqlalchemy import select

from voipctl.store.models import Cdr

PEER = "D4E3CD2BFC791"
DID = "12046664021"
BASE = '[servers.les1]\ntype = "lesnet"\ntimeout_s = 5\nretries = 0\n'
DECK = "prefix,rate\n1,0.02\n44,0.10\n"
# The three calls of every file below: outbound to Ontario, inbound, outbound to London.
# 65 s at 0.02/min in 6/6 steps is 66 s, 0.022; 12 s at 0.10 is 0.02; inbound is not billed.
CALLS = [
    ("outbound", "15195550100", 65, "rated", Decimal("0.022")),
    ("inbound", DID, 30, "inbound_not_billed", Decimal("0")),
    ("outbound", "442071234567", 12, "rated", Decimal("0.02")),
]

# LES.NET does not publish the file's layout (docs/providers.md): these layouts are
# made up to exercise the detection, not read from a LES.NET source (none is public).
COMMA_WITH_HEADER = (
    "date,src,dst,duration,peer,did\n"
    f"2026-11-20 09:15:02,{DID},15195550100,65,{PEER},{DID}\n"
    f"2026-11-21 10:00:00,15195550100,{DID},30,{PEER},{DID}\n"
    f"2026-11-22 11:00:00,{DID},442071234567,12,{PEER},{DID}\n"
)
SEMICOLON_DAY_FIRST = (
    f"20/11/2026 09:15:02;{DID};15195550100;65;{PEER};{DID}\n"
    f"21/11/2026 10:00:00;15195550100;{DID};30;{PEER};{DID}\n"
    f"22/11/2026 11:00:00;{DID};442071234567;12;{PEER};{DID}\n"
)
TAB_OTHER_ORDER = (
    "Duration\tCaller ID\tDestination\tPeer ID\tCall Date\n"
    f"65\t{DID}\t15195550100\t{PEER}\t2026-11-20T09:15:02\n"
    f"30\t15195550100\t{DID}\t{PEER}\t2026-11-21T10:00:00\n"
    f"12\t{DID}\t442071234567\t{PEER}\t2026-11-22T11:00:00\n"
)

BLOCKS = {
    "comma": (
        COMMA_WITH_HEADER,
        '[servers.les1.cdr_format]\ndelimiter = ","\nheader = true\n'
        'time_format = "%Y-%m-%d %H:%M:%S"\ntimezone = "America/Toronto"\nencoding = "utf-8"\n\n'
        '[servers.les1.cdr_format.columns]\nstart = "date"\ncaller = "src"\nnumber = "dst"\n'
        'seconds = "duration"\npeer = "peer"\ndid = "did"\n',
    ),
    "semicolon": (
        SEMICOLON_DAY_FIRST,
        '[servers.les1.cdr_format]\ndelimiter = ";"\nheader = false\n'
        'time_format = "%d/%m/%Y %H:%M:%S"\ntimezone = "America/Toronto"\nencoding = "utf-8"\n\n'
        '[servers.les1.cdr_format.columns]\nstart = "0"\ncaller = "1"\nnumber = "2"\n'
        'seconds = "3"\npeer = "4"\ndid = "5"\n',
    ),
    "tab": (
        TAB_OTHER_ORDER,
        '[servers.les1.cdr_format]\ndelimiter = "\\t"\nheader = true\n'
        'time_format = "%Y-%m-%dT%H:%M:%S"\ntimezone = "America/Toronto"\nencoding = "utf-8"\n\n'
        '[servers.les1.cdr_format.columns]\nstart = "Call Date"\ncaller = "Caller ID"\n'
        'number = "Destination"\nseconds = "Duration"\npeer = "Peer ID"\n',
    ),
}


def _setup(cli, tmp_path, link: str):
    config = tmp_path / "base.toml"
    config.write_text(BASE, encoding="utf-8")
    deck = tmp_path / "deck.csv"
    deck.write_text(DECK, encoding="utf-8")
    steps = [
        ("product", "add", "Metered", "--increment", "6/6"),
        ("rates", "import", "Metered", str(deck), "--effective", "2000-01-01"),
        ("client", "add", "42", "--first-name", "Ada", "--last-name", "Lovelace",
         "--email", "ada@example.com", "--has-voip-service"),
        ("service", "add", "--client", "42", "--product", "Metered", "--server", "les1",
         "--domain", f"{PEER} | {DID}", "--billed", DID, "--cdr-link", link),
    ]  # fmt: skip
    for step in steps:
        done = cli(*step, config=config)
        assert done.exit_code == 0, done.output
    return config


def _block(stdout: str) -> str:
    start = stdout.index("Proposed configuration:\n") + len("Proposed configuration:\n")
    return stdout[start : stdout.index("\nThe first rows")]


@pytest.mark.parametrize("layout", sorted(BLOCKS))
def test_the_proposed_block_pulls_and_rates_the_file(cli, store, tmp_path, layout):
    text, expected = BLOCKS[layout]
    path = tmp_path / "cdr.txt"
    path.write_text(text, encoding="utf-8")
    base = _setup(cli, tmp_path, str(path))

    seen = cli("feed", "inspect", "--server", "les1", str(path), config=base)
    assert seen.exit_code == 0, seen.output
    assert seen.stderr == ""
    assert _block(seen.stdout) == expected
    rows = cli("feed", "inspect", "--server", "les1", str(path), "--format", "json", config=base)
    doc = json.loads(rows.stdout)
    first = 1 if layout == "semicolon" else 2
    # The product shows 4 decimals; the same costs as pull-cdrs and rate store below.
    assert [(r["line"], r["service"], r["status"], r["cost"]) for r in doc["rows"]] == [
        (first, 1, "rated", "0.0220"),
        (first + 1, 1, "inbound_not_billed", "0.0000"),
        (first + 2, 1, "rated", "0.0200"),
    ]

    full = tmp_path / "full.toml"
    full.write_text(BASE + "\n" + _block(seen.stdout), encoding="utf-8")
    pulled = cli("pull-cdrs", "--since", "2026-11-01", "--until", "2026-12-01", config=full)
    assert pulled.exit_code == 0, pulled.output
    rated = cli("rate", config=full)
    assert rated.exit_code == 0, rated.output
    with store.transaction() as session:
        got = session.execute(
            select(Cdr.direction, Cdr.number, Cdr.billsec, Cdr.status, Cdr.cost).order_by(Cdr.start)
        ).all()
    assert [tuple(r) for r in got] == CALLS
    with store.transaction() as session:
        first = session.scalar(select(Cdr.start).order_by(Cdr.start))
    # 09:15:02 in Toronto (EST) on 2026-11-20 is 14:15:02 UTC.
    assert first == datetime(2026, 11, 20, 14, 15, 2, tzinfo=UTC)


def test_a_row_the_layout_cannot_read_names_its_line_and_column(cli, store, tmp_path):
    path = tmp_path / "cdr.txt"
    path.write_text(
        COMMA_WITH_HEADER + f"2026-11-3x 11:00:00,{DID},15195550100,7,{PEER},{DID}\n"
        f"2026-11-23 11:00:00,{DID},15195550100,7s,{PEER},{DID}\n",
        encoding="utf-8",
    )
    base = _setup(cli, tmp_path, str(path))
    seen = cli("feed", "inspect", "--server", "les1", "--format", "json", str(path), config=base)
    assert seen.exit_code == 1, seen.output
    rows = json.loads(seen.stdout)["rows"]
    refused = [(r["line"], r["reason"]) for r in rows if r["status"] == "refused"]
    assert refused == [
        (5, f"CDR link {path} line 5: time '2026-11-3x 11:00:00' does not match "
            "'%Y-%m-%d %H:%M:%S' (column date)"),
        (6, f"CDR link {path} line 6: seconds '7s' is not a duration (column duration)"),
    ]  # fmt: skip


def test_a_server_without_a_file_feed_says_so_on_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("FUSION1_DB_URL", "postgresql://voipctl@127.0.0.1:9/fusionpbx")
    config = tmp_path / "f.toml"
    config.write_text(
        '[servers.fusion1]\ntype = "fusionpbx"\ndb_url_env = "FUSION1_DB_URL"\n', encoding="utf-8"
    )
    path = tmp_path / "cdr.txt"
    path.write_text(COMMA_WITH_HEADER, encoding="utf-8")
    seen = cli("feed", "inspect", "--server", "fusion1", str(path), config=config)
    assert (seen.exit_code, seen.stdout) == (2, "")
    assert seen.stderr == (
        "voipctl: error: feed inspect: server fusion1 (type fusionpbx) has no file feed\n"
    )


def test_a_row_of_no_service_is_rated_with_the_product_asked_for(cli, tmp_path):
    path = tmp_path / "cdr.txt"
    path.write_text(COMMA_WITH_HEADER.replace(PEER, "OTHERPEER123").replace(DID, "12045550199"))
    base = _setup(cli, tmp_path, str(tmp_path / "other.txt"))
    plain = cli("feed", "inspect", "--server", "les1", "--format", "json", str(path), config=base)
    rows = json.loads(plain.stdout)["rows"]
    assert [(r["service"], r["status"]) for r in rows] == [(None, "no service")] * 3
    priced = cli(
        "feed", "inspect", "--server", "les1", "--product", "Metered", "--format", "json",
        str(path), config=base,
    )  # fmt: skip
    rows = json.loads(priced.stdout)["rows"]
    # Read as outbound (a peer's row): the three calls priced as outbound calls.
    assert [(r["number"], r["status"], r["cost"]) for r in rows] == [
        ("15195550100", "rated", "0.0220"),
        ("12045550199", "rated", "0.0100"),
        ("442071234567", "rated", "0.0200"),
    ]


@respx.mock
def test_a_url_is_read_through_the_server_client_and_only_its_first_part(cli, tmp_path):
    link = "https://portal.les.test/cdr/11330_0000.txt?token=secret"
    row = f"2026-11-20 09:15:02,{DID},15195550100,65,{PEER},{DID}\n"

    def body():
        yield ("date,src,dst,duration,peer,did\n" + row * 2000).encode()
        raise AssertionError("read past the first part of the file")

    route = respx.get(link).mock(return_value=httpx.Response(200, content=body()))
    base = _setup(cli, tmp_path, link)
    seen = cli("feed", "inspect", "--server", "les1", link, config=base)
    assert seen.exit_code == 0, seen.output
    assert route.call_count == 1
    assert "secret" not in seen.output
    assert seen.stdout.splitlines()[0] == (
        "feed inspect: les1: https://portal.les.test/cdr/11330_0000.txt?*** (first 20 lines)"
    )


def _detect(lines, prefer="%Y-%m-%d %H:%M:%S"):
    from voipctl.providers.lesnet.inspect import detect

    return detect(
        "les1", "cdr.txt", lines, timezone="America/Toronto", zone_source="config", prefer=prefer
    )


def test_times_with_an_offset_give_their_zone_and_need_no_zone_setting():
    found = _detect(
        [
            f"2026-11-20 09:15:02-05:00,{DID},15195550100,65",
            f"2026-11-21 10:00:00-05:00,15195550100,{DID},30",
        ]
    )
    assert (found.header, found.time_format, found.timezone) == (
        None,
        "%Y-%m-%d %H:%M:%S%z",
        "UTC",
    )
    assert found.columns == {"start": "0", "caller": "1", "number": "2", "seconds": "3"}


def test_dates_that_read_day_first_and_month_first_are_said_to_be_ambiguous():
    found = _detect([f"05/11/2026 09:15:02;{DID};15195550100;65"], prefer="%m/%d/%Y %H:%M:%S")
    assert found.time_format == "%m/%d/%Y %H:%M:%S"  # the configured one, being among them
    assert found.notes[0] == (
        "the dates read as %d/%m/%Y %H:%M:%S and as %m/%d/%Y %H:%M:%S: %m/%d/%Y %H:%M:%S "
        "proposed; check a date after the 12th of a month"
    )


def test_a_file_of_one_column_has_no_delimiter_to_tell():
    from voipctl.errors import ProviderDataError

    with pytest.raises(ProviderDataError) as caught:
        _detect(["2026-11-20 09:15:02", "2026-11-21 10:00:00"])
    assert str(caught.value) == (
        "les1: CDR file cdr.txt line 1: cannot tell the delimiter (tried , ; tab |); "
        "set servers.les1.cdr_format.delimiter"
    )


def test_unix_times_are_told_when_no_column_reads_as_a_text_time():
    found = _detect([f"{DID},1795702502,15195550100,65", f"15195550100,1795706000,{DID},30"])
    assert (found.time_format, found.timezone, found.time_column) == ("epoch", "UTC", "1")
    assert found.columns == {"start": "1", "caller": "0", "number": "2", "seconds": "3"}
