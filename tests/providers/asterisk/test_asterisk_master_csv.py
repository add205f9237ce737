"""Master.csv rows -> CallRecord / Rejected / Skipped (voipctl.providers.asterisk.master_csv)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from itertools import product

import pytest

from tests import support
from voipctl.errors import ConfigError
from voipctl.providers.asterisk.master_csv import (
    BASE_COLUMNS,
    CallRules,
    Layout,
    RowReader,
    Skipped,
)
from voipctl.providers.asterisk.offsets import MasterCsvReader
from voipctl.providers.base import CallRecord, Rejected, digest

FIXTURES = support.FIXTURES / "asterisk"
TRUNKS = CallRules(trunk_prefixes=("PJSIP/trunk-", "SIP/trunk-"))


def read(name: str, layout: Layout, rules: CallRules = TRUNKS, **kw) -> list:
    """The fixture's records as the offsets reader gives them, each parsed."""
    reader = RowReader(layout, rules, source="Master.csv", **kw)
    lines = MasterCsvReader(FIXTURES / name).lines()
    return [reader.parse_line(line.text, line.lineno) for line in lines]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def row_key(layout: Layout, line: str, start: datetime, occurrence: int = 0) -> str:
    import csv

    (fields,) = list(csv.reader([line]))
    text = "\x1f".join(fields)
    h = hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
    return f"{int(start.timestamp()):x}-{h}-{occurrence}"


@pytest.mark.parametrize(("uid", "user", "new"), list(product([False, True], repeat=3)))
def test_columns_follow_the_three_flags(uid, user, new):
    layout = Layout(loguniqueid=uid, loguserfield=user, newcdrcolumns=new)
    expected = list(BASE_COLUMNS)
    if uid:
        expected.append("uniqueid")
    if user:
        expected.append("userfield")
    if new:
        expected += ["peeraccount", "linkedid", "sequence"]
    assert list(layout.columns) == expected
    assert len(layout.columns) == 16 + uid + user + 3 * new


def test_defaults_are_cdr_csv_load_config_defaults():
    layout = Layout()
    assert (layout.loguniqueid, layout.loguserfield, layout.newcdrcolumns) == (False,) * 3
    assert layout.usegmtime is False
    assert len(layout.columns) == 16


def test_default_layout_in_local_time():
    layout = Layout(zone="America/Toronto")
    out = read("master__default.csv", layout)
    lines = (FIXTURES / "master__default.csv").read_text().splitlines()
    outbound, inbound, missed, local, busy = out
    start = utc(2026, 11, 20, 14, 15, 2)
    assert outbound == CallRecord(
        provider_id=row_key(layout, lines[0], start),
        direction="outbound",
        start=start,
        billsec=65,
        number="15195550100",
        caller="101",
        extension="101",
        answer=utc(2026, 11, 20, 14, 15, 9),
        end=utc(2026, 11, 20, 14, 16, 14),
        hangup_cause="answered",
        raw=outbound.raw,
    )
    # The clid's quotes come back single; the comma in a quoted field is not a separator.
    assert outbound.raw["clid"] == '"Alice Smith" <101>'
    assert outbound.raw["lastdata"] == "PJSIP/15195550100@trunk-voipms,300,Tt"
    assert inbound.direction == "inbound"
    assert (inbound.number, inbound.caller, inbound.extension) == (
        "5195550199",
        "12045550111",
        None,
    )
    assert inbound.raw["clid"] == '"CALLER, ONE" <12045550111>'
    assert inbound.billsec == 56
    assert missed == Skipped("Master.csv line 3", "disposition 'NO ANSWER', not ANSWERED")
    assert local == Skipped(
        "Master.csv line 4", "a local row (no trunk, no inbound context or DID)"
    )
    assert busy == Skipped("Master.csv line 5", "disposition 'BUSY', not ANSWERED")


def test_empty_answer_time_is_none():
    rules = CallRules(trunk_prefixes=("PJSIP/trunk-",), billed_rows="all")
    out = read("master__default.csv", Layout(zone="America/Toronto"), rules)
    missed = out[2]
    assert isinstance(missed, CallRecord)
    assert missed.answer is None
    assert missed.billsec == 0
    assert missed.hangup_cause == "no_answer"
    assert missed.end == utc(2026, 11, 20, 14, 20, 4)


def test_billed_rows_answered_keeps_local_rows():
    rules = CallRules(trunk_prefixes=("PJSIP/trunk-",), billed_rows="answered")
    out = read("master__default.csv", Layout(zone="America/Toronto"), rules)
    assert [type(o).__name__ for o in out] == [
        "CallRecord",
        "CallRecord",
        "Skipped",
        "CallRecord",
        "Skipped",
    ]
    assert out[3].direction == "local"
    assert (out[3].number, out[3].extension, out[3].billsec) == ("102", "101", 120)


def test_without_trunk_prefixes_context_and_dids_tell_inbound():
    rules = CallRules(billed_rows="all")
    out = read("master__default.csv", Layout(zone="America/Toronto"), rules)
    # No trunk configured: outbound cannot be told; from-trunk still says inbound.
    assert [o.direction for o in out] == ["local", "inbound", "inbound", "local", "local"]
    rules = CallRules(inbound_contexts=(), billed_rows="all")
    out = read(
        "master__default.csv", Layout(zone="America/Toronto"), rules, dids=["+1 519-555-0199"]
    )
    assert [o.direction for o in out] == ["local", "inbound", "inbound", "local", "local"]


def test_gmt_uniqueid_userfield_identical_rows_are_two_calls():
    layout = Layout(loguniqueid=True, loguserfield=True, usegmtime=True, zone="America/Toronto")
    first, second, transfer = read("master__uniqueid_userfield_gmt.csv", layout)
    lines = (FIXTURES / "master__uniqueid_userfield_gmt.csv").read_text().splitlines()
    # usegmtime: the times are UTC whatever the zone.
    assert first.start == utc(2026, 11, 20, 14, 15, 2)
    assert first.raw["uniqueid"] == "1795184102.1"
    assert first.raw["userfield"] == "prepaid"
    h = hashlib.blake2b(
        "\x1f".join(__import__("csv").reader([lines[0]]).__next__()).encode(), digest_size=12
    ).hexdigest()
    assert first.provider_id == f"1795184102.1-{h}-0"
    assert second.provider_id == f"1795184102.1-{h}-1"
    # A second CDR of the same party A shares its uniqueid: the digest tells them apart.
    assert transfer.provider_id.startswith("1795184102.1-")
    assert transfer.provider_id not in (first.provider_id, second.provider_id)
    assert transfer.billsec == 60


def test_newcdrcolumns_key_is_linkedid_and_sequence():
    layout = Layout(loguniqueid=True, loguserfield=True, newcdrcolumns=True, zone="America/Toronto")
    out = read("master__all_flags.csv", layout)
    assert out[0].provider_id == "1795184102.1:7"
    assert out[1].provider_id == "1795184400.3:8"
    assert out[1].raw["peeraccount"] == "acct-7"
    assert out[2] == Skipped("Master.csv line 3", "disposition 'NO ANSWER', not ANSWERED")


def test_layout_mismatch_names_line_and_flags():
    out = read("master__all_flags.csv", Layout())
    line = (FIXTURES / "master__all_flags.csv").read_text().splitlines()[0]
    assert out[0] == Rejected(
        digest(line),
        "Master.csv line 1: 21 fields where the layout (no flags) has 16; "
        "check cdr.conf's loguniqueid, loguserfield, newcdrcolumns",
        line,
    )
    out = read("master__default.csv", Layout(loguniqueid=True))
    assert out[0].reason == (
        "Master.csv line 1: 16 fields where the layout (loguniqueid) has 17; "
        "check cdr.conf's loguniqueid, loguserfield, newcdrcolumns"
    )


def test_bad_lines_are_set_aside_with_one_line_reasons():
    out = read("master__bad.csv", Layout(zone="America/Toronto"))
    bad = [o for o in out if isinstance(o, Rejected)]
    assert [o.reason for o in bad] == [
        "Master.csv line 1: 17 fields where the layout (no flags) has 16; "
        "check cdr.conf's loguniqueid, loguserfield, newcdrcolumns",
        "Master.csv line 2: start '2026-11-20 9:15' is not a time like 2026-11-20 09:15:02",
        "Master.csv line 5: billsec '-5' is not a number of seconds",
    ]
    lines = (FIXTURES / "master__bad.csv").read_text().splitlines()
    assert [o.raw for o in bad] == [lines[0], lines[1], lines[4]]
    assert [o.locator for o in bad] == [digest(o.raw) for o in bad]
    # cdr_csv writes a newline inside a field as it is: lines 3-4 are one record.
    (record,) = [o for o in out if isinstance(o, CallRecord)]
    assert record.raw["clid"] == '"Alice\nSmith" <101>'
    assert record.billsec == 65


def test_a_line_read_alone_is_set_aside():
    line = (FIXTURES / "master__bad.csv").read_text().splitlines()[2]
    out = RowReader(Layout(), TRUNKS, source="Master.csv").parse_line(line, 3)
    assert out.reason == "Master.csv line 3: not a cdr_csv line (unexpected end of data)"


def test_repeated_hour_of_dst_change_reads_as_first(write_line):
    layout = Layout(zone="America/Toronto")
    row = ["", "101", "15195550100", "from-internal", "", "PJSIP/101-1", "PJSIP/trunk-a-2"]
    row += ["Dial", "x", "2026-11-01 01:30:00", "2026-11-01 01:30:05", "2026-11-01 01:31:05"]
    row += [65, 60, "ANSWERED", "DOCUMENTATION"]
    rec = RowReader(layout, TRUNKS, source="Master.csv").parse_line(write_line(row)[:-1], 1)
    assert rec.start == utc(2026, 11, 1, 5, 30)  # EDT, UTC-4: the first 01:30


def test_billsec_over_duration_is_rejected(write_line):
    row = ["", "101", "1", "from-internal", "", "PJSIP/101-1", "PJSIP/trunk-a-2", "Dial", "x"]
    row += ["2026-11-20 09:15:02", "2026-11-20 09:15:09", "2026-11-20 09:16:14", 5, 65]
    row += ["ANSWERED", "DOCUMENTATION"]
    out = RowReader(Layout(), TRUNKS, source="Master.csv").parse_line(write_line(row)[:-1], 9)
    assert out.reason == "Master.csv line 9: billsec 65 is more than duration 5"


def test_config_errors_are_one_line():
    with pytest.raises(ConfigError) as exc:
        Layout(zone="Mars/Olympus")
    assert str(exc.value) == "time_zone: unknown time zone 'Mars/Olympus'"
    with pytest.raises(ConfigError) as exc:
        CallRules(billed_rows="first")
    assert str(exc.value) == "billed_rows: 'first' is not one of trunk, answered, all"
    with pytest.raises(ConfigError) as exc:
        CallRules(trunk_prefixes=("",))
    assert str(exc.value) == "trunk_prefixes: an empty prefix would match every channel"


def test_keys_are_the_same_when_a_file_is_read_again():
    # After a truncation or a changed first line the file is read from its start:
    # the rows already stored must get the ids they had.
    layout = Layout(loguniqueid=True, loguserfield=True, usegmtime=True)
    first = [o.provider_id for o in read("master__uniqueid_userfield_gmt.csv", layout)]
    again = [o.provider_id for o in read("master__uniqueid_userfield_gmt.csv", layout)]
    assert first == again
    assert len(set(first)) == 3

    def ids():
        out = read("master__default.csv", Layout(zone="America/Toronto"))
        return [o.provider_id for o in out if isinstance(o, CallRecord)]

    plain = ids()
    assert plain == ids()
    assert all(p.startswith(("6b0055e6-", "6b005710-")) for p in plain)
