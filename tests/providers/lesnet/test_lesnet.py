"""LES.NET adapter: CDR links with configurable layouts, shared links, dedupe keys, levers."""

from __future__ import annotations

import hashlib
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import respx

from tests.support.recorded import recorded
from tests.support.rejects import fetch_strict, strict
from voipctl.config import LesnetServer
from voipctl.errors import (
    ConfigError,
    ManualActionRequired,
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    ProviderUnavailable,
)
from voipctl.providers.base import ServiceInfo
from voipctl.providers.lesnet import adapter as lesnet
from voipctl.providers.lesnet.adapter import LesnetAdapter, _TimeParser

LINK = "https://portal.les.test/cdr/11330_0000.txt?token=abc"
SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2027, 1, 1, tzinfo=UTC)
HEADER = "date,src,dst,duration,peer,did"
TORONTO = ZoneInfo("America/Toronto")


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(LesnetAdapter, "backoff_s", 0.0)


def make(fmt=None, **extra) -> LesnetAdapter:
    doc = {"type": "lesnet", "retries": 1, **extra}
    if fmt is not None:
        doc["cdr_format"] = fmt
    return LesnetAdapter("lesnet1", LesnetServer.model_validate(doc))


def svc(id_=1, peer="D4E3CD2BFC791", did="12046664021", link=LINK) -> ServiceInfo:
    return ServiceInfo(
        id=id_,
        client_id=100 + id_,
        server="lesnet1",
        peer_id=peer,
        main_did=did,
        dids=(did,),
        extensions=(did,),
        cdr_link=link,
    )


def write(tmp_path, *rows, header=HEADER, name="cdr.txt"):
    path = tmp_path / name
    path.write_text("\n".join([header, *rows] if header else rows) + "\n", encoding="utf-8")
    return path


@respx.mock
def test_a_shared_link_is_read_once_for_every_service_on_it():
    route = respx.get(LINK).mock(return_value=recorded("lesnet", "cdr__default"))
    services = [svc(1), svc(2, "A1B2C3D4E5F60", "12045550199")]
    with make() as adapter:
        records = strict(adapter, adapter.fetch_feed(services, SINCE, UNTIL))
    assert route.call_count == 1
    assert [(r.service_id, r.direction, r.number, r.billsec) for r in records] == [
        (1, "outbound", "15195550100", 65),
        (1, "inbound", "12046664021", 30),
        (2, "outbound", "442071234567", 12),
        (1, "outbound", "18005551234", 0),
    ]
    # 09:15:02 in Toronto (EST) is 14:15:02 UTC.
    assert records[0].start == datetime(2026, 11, 20, 14, 15, 2, tzinfo=UTC)
    assert records[0].end == records[0].start + timedelta(seconds=65)
    assert records[0].raw == {
        "date": "2026-11-20 09:15:02",
        "src": "12046664021",
        "dst": "15195550100",
        "duration": "65",
        "peer": "D4E3CD2BFC791",
        "did": "12046664021",
    }
    assert records[3].answer is None and records[3].hangup_cause == "no_answer"


@respx.mock
def test_fetch_cdrs_of_one_service_keeps_its_rows_only():
    respx.get(LINK).mock(return_value=recorded("lesnet", "cdr__default"))
    with make() as adapter:
        records = strict(
            adapter, adapter.fetch_cdrs(svc(2, "A1B2C3D4E5F60", "12045550199"), SINCE, UNTIL)
        )
    assert [r.number for r in records] == ["442071234567"]


def test_rows_match_by_did_when_the_peer_differs(tmp_path):
    path = write(
        tmp_path,
        "2026-11-20 09:15:02,2045550000,12046664021,10,OTHERPEER,",
        "2026-11-20 09:16:02,+1 204 666 4021,15195550100,11,OTHERPEER,",
    )
    with make() as adapter:
        records = strict(adapter, adapter.fetch_cdrs(svc(link=str(path)), SINCE, UNTIL))
    assert [(r.direction, r.billsec) for r in records] == [("inbound", 10), ("outbound", 11)]


def test_identical_rows_are_two_calls_and_keep_their_ids_when_the_file_grows(tmp_path):
    day1 = [
        "2026-11-20 09:15:02,12046664021,15195550100,65,D4E3CD2BFC791,12046664021",
        "2026-11-20 09:15:02,12046664021,15195550100,65,D4E3CD2BFC791,12046664021",
    ]
    day2 = ["2026-11-21 10:00:00,12046664021,15195550100,65,D4E3CD2BFC791,12046664021"]
    first = write(tmp_path, *day1, name="a.txt")
    grown = write(tmp_path, *day1, *day2, name="b.txt")
    with make() as adapter:
        ids1 = [r.provider_id for r in adapter.fetch_cdrs(svc(link=str(first)), SINCE, UNTIL)]
        ids2 = [r.provider_id for r in adapter.fetch_cdrs(svc(link=str(grown)), SINCE, UNTIL)]
    assert len(set(ids1)) == 2
    assert ids1[0].endswith("-0") and ids1[1].endswith("-1")
    assert ids2[:2] == ids1 and ids2[2] not in ids1


def _ids_remembering_every_row(rows: list[str]) -> list[str]:
    """The ids as reading the file once remembering every row's digest gives them."""
    seen: dict[bytes, int] = {}
    ids = []
    for row in rows:
        date, caller, number, seconds, peer, did = row.split(",")
        start = int(datetime.fromisoformat(date).replace(tzinfo=TORONTO).timestamp())
        digest = hashlib.blake2b(
            f"{start}|{caller}|{number}|{seconds}|{peer}|{did}".encode(), digest_size=12
        ).digest()
        occurrence = seen.get(digest, 0)
        seen[digest] = occurrence + 1
        ids.append(f"{start:x}-{digest.hex()}-{occurrence}")
    return ids


@pytest.fixture
def occurrence_stores(monkeypatch):
    """Every digest store a reading makes, with the most digests it held at once."""
    made = []

    class Watched(lesnet._Occurrences):
        def __init__(self, *, bounded):
            super().__init__(bounded=bounded)
            self.most = 0
            made.append(self)

        def number(self, start, digest):
            occurrence = super().number(start, digest)
            self.most = max(self.most, len(self.seen) + len(self.repeats))
            return occurrence

    monkeypatch.setattr(lesnet, "_Occurrences", Watched)
    return made


def _row(second: int, number: str) -> str:
    stamp = datetime(2026, 11, 20, 9, 0, 0) + timedelta(seconds=second)
    return f"{stamp:%Y-%m-%d %H:%M:%S},12046664021,{number},65,D4E3CD2BFC791,12046664021"


def test_a_sorted_file_remembers_one_second_and_keeps_its_ids(tmp_path, occurrence_stores):
    # 2,000 seconds, each with two different calls and one repeated: 4 rows, 3 digests.
    rows = []
    for second in range(2000):
        rows += [_row(second, "15195550100")] * 2
        rows += [_row(second, "15195550101"), _row(second, "15195550102")]
    path = write(tmp_path, *rows)
    with make() as adapter:
        ids = [r.provider_id for r in adapter.fetch_cdrs(svc(link=str(path)), SINCE, UNTIL)]
    assert ids == _ids_remembering_every_row(rows)
    assert len(set(ids)) == len(rows)
    [store] = occurrence_stores  # read once
    assert store.bounded and store.most <= 4


def test_an_unsorted_file_is_read_again_and_numbers_like_before(tmp_path, occurrence_stores):
    # The repeated call comes back after later seconds, then after an earlier one.
    rows = [
        _row(5, "15195550100"),
        _row(6, "15195550101"),
        _row(7, "15195550102"),
        _row(5, "15195550100"),
        _row(9, "15195550103"),
        _row(1, "15195550104"),
        _row(5, "15195550100"),
        _row(6, "15195550101"),
    ]
    path = write(tmp_path, *rows)
    with make() as adapter:
        ids = [r.provider_id for r in adapter.fetch_cdrs(svc(link=str(path)), SINCE, UNTIL)]
        again = [r.provider_id for r in adapter.fetch_cdrs(svc(link=str(path)), SINCE, UNTIL)]
    assert ids == _ids_remembering_every_row(rows) == again
    assert len(set(ids)) == len(rows)
    assert [i.rsplit("-", 1)[1] for i in ids] == ["0", "0", "0", "1", "0", "0", "2", "1"]
    # Each reading: a bounded pass that stops at the 4th row, then a full one.
    assert [s.bounded for s in occurrence_stores] == [True, False, True, False]


@respx.mock
def test_an_unsorted_link_that_changes_between_readings_is_an_error(occurrence_stores):
    first = [_row(5, "15195550100"), _row(6, "15195550101"), _row(1, "15195550102")]
    changed = [_row(5, "15195550100"), _row(5, "15195550100"), _row(1, "15195550102")]
    route = respx.get(LINK).mock(
        side_effect=[
            httpx.Response(200, text="\n".join([HEADER, *rows]) + "\n") for rows in (first, changed)
        ]
    )
    with make() as adapter, pytest.raises(ProviderUnavailable, match="changed while being read"):
        strict(adapter, adapter.fetch_cdrs(svc(), SINCE, UNTIL))
    assert route.call_count == 2


def test_a_mapped_call_id_is_the_dedupe_key(tmp_path):
    path = write(
        tmp_path,
        "abc-1,2026-11-20 09:15:02,12046664021,15195550100,65,D4E3CD2BFC791",
        header="callid,date,src,dst,duration,peer",
    )
    fmt = {
        "columns": {
            "call_id": "callid",
            "start": "date",
            "caller": "src",
            "number": "dst",
            "seconds": "duration",
            "peer": "peer",
        }
    }
    with make(fmt) as adapter:
        (record,) = adapter.fetch_cdrs(svc(link=f"file://{path}"), SINCE, UNTIL)
    assert record.provider_id == "abc-1"


def test_headerless_layout_with_a_sniffed_delimiter_and_another_time_format(tmp_path):
    path = write(
        tmp_path,
        "20/11/2026 09:15;D4E3CD2BFC791;12046664021;15195550100;65.2",
        "20/11/2026 09:16;D4E3CD2BFC791;15195550100;12046664021;7",
        header=None,
    )
    fmt = {
        "delimiter": "auto",
        "header": False,
        "columns": {"start": "0", "peer": "1", "caller": "2", "number": "3", "seconds": "4"},
        "time_format": "%d/%m/%Y %H:%M",
        "timezone": "America/Winnipeg",
    }
    with make(fmt) as adapter:
        records = strict(adapter, adapter.fetch_cdrs(svc(link=str(path)), SINCE, UNTIL))
    assert [(r.direction, r.billsec) for r in records] == [("outbound", 66), ("inbound", 7)]
    assert records[0].start == datetime(2026, 11, 20, 15, 15, tzinfo=UTC)  # CST = UTC-6


def test_the_repeated_dst_hour_is_its_first_occurrence(tmp_path):
    path = write(
        tmp_path,
        "2026-11-01 01:30:00,12046664021,15195550100,5,D4E3CD2BFC791,12046664021",
        "2026-11-01 00:59:59,12046664021,15195550100,5,D4E3CD2BFC791,12046664021",
    )
    with make() as adapter:
        records = strict(adapter, adapter.fetch_cdrs(svc(link=str(path)), SINCE, UNTIL))
    # 01:30 EDT (UTC-4), the first of the two 01:30s that night.
    assert records[0].start == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert records[1].start == datetime(2026, 11, 1, 4, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20 09:15:02",
        "2026-03-08 01:59:59",
        "2026-03-08 02:30:00",  # does not exist in Toronto: read before the change
        "2026-03-08 03:00:00",
        "2026-11-01 01:00:00",
        "2026-11-01 01:59:59",
        "2026-11-01 02:00:00",
        "2024-02-29 23:59:59",
    ],
)
def test_the_fast_time_parser_agrees_with_zoneinfo(text):
    fast = _TimeParser("%Y-%m-%d %H:%M:%S", TORONTO).parse(text)
    slow = int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=TORONTO).timestamp())
    assert fast == slow


@respx.mock
def test_a_bad_line_names_the_server_and_the_line_and_hides_the_query():
    respx.get(LINK).mock(return_value=recorded("lesnet", "cdr__malformed"))
    with pytest.raises(ProviderDataError) as err, make() as adapter:
        strict(adapter, adapter.fetch_cdrs(svc(), SINCE, UNTIL))
    message = str(err.value)
    assert message.startswith(
        "lesnet1: CDR link https://portal.les.test/cdr/11330_0000.txt?*** line 3:"
    )
    assert "token" not in message


def test_a_short_row_names_its_line(tmp_path):
    path = write(tmp_path, "2026-11-20 09:15:02,12046664021,15195550100,65,D4E3CD2BFC791,1", "x,y")
    with pytest.raises(ProviderDataError, match=r"line 3: 2 columns, expected at least 6"):
        fetch_strict(make(), svc(link=str(path)), SINCE, UNTIL)


def test_a_header_without_a_mapped_column_says_which(tmp_path):
    path = write(tmp_path, "2026-11-20 09:15:02,1,2,3", header="date,src,dst,secs")
    with pytest.raises(ProviderDataError, match=r"line 1: no column 'duration' for seconds"):
        fetch_strict(make(), svc(link=str(path)), SINCE, UNTIL)


@respx.mock
def test_an_empty_file_has_no_calls():
    respx.get(LINK).mock(return_value=recorded("lesnet", "cdr__empty"))
    assert fetch_strict(make(), svc(), SINCE, UNTIL) == []


@respx.mock
def test_503_then_success_and_404_is_an_error():
    route = respx.get(LINK).mock(
        side_effect=[httpx.Response(503), recorded("lesnet", "cdr__default")]
    )
    assert len(fetch_strict(make(), svc(), SINCE, UNTIL)) == 3
    assert route.call_count == 2
    route.mock(return_value=recorded("lesnet", "cdr__404"), side_effect=None)
    with pytest.raises(ProviderError, match=r"^lesnet1: HTTP 404 on GET /cdr/11330_0000.txt$"):
        fetch_strict(make(), svc(), SINCE, UNTIL)


@respx.mock
def test_timeouts_exhaust_the_retries():
    respx.get(LINK).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(ProviderUnavailable, match="timed out on GET /cdr/11330_0000.txt"):
        fetch_strict(make(), svc(), SINCE, UNTIL)


def test_a_missing_local_file_is_a_provider_error(tmp_path):
    with pytest.raises(ProviderError, match="cannot read"):
        fetch_strict(make(), svc(link=str(tmp_path / "nope.txt")), SINCE, UNTIL)


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ({"columns": {"start": "date", "caller": "src", "number": "dst"}}, "'seconds' is required"),
        (
            {"columns": {"start": "d", "caller": "s", "number": "n", "seconds": "x", "zip": "z"}},
            "unknown field 'zip'",
        ),
        ({"header": False}, "0-based numbers"),
        ({"delimiter": ";;"}, 'one character or "auto"'),
    ],
)
def test_a_bad_layout_is_a_config_error(fmt, message):
    with pytest.raises(ConfigError, match=message):
        make(fmt)


def test_manual_lever_asks_the_operator():
    with pytest.raises(ManualActionRequired) as err:
        make().suspend(svc(), "credit exhausted")
    assert "disable peer D4E3CD2BFC791 (DID 12046664021)" in err.value.instructions
    with pytest.raises(ManualActionRequired, match="enable peer D4E3CD2BFC791"):
        make().unsuspend(svc())


def test_command_lever_runs_the_argv_with_placeholders(tmp_path):
    out = tmp_path / "done.txt"
    script = "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:])); print('peer off')"
    adapter = make(
        suspend="command",
        suspend_command=[sys.executable, "-c", script, str(out), "{peer}", "{did}", "{service_id}"],
        unsuspend_command=[sys.executable, "-c", "import sys; sys.exit(3)"],
    )
    assert adapter.suspend(svc(), "") == "peer off"
    assert out.read_text() == "D4E3CD2BFC791 12046664021 1"
    with pytest.raises(ProviderError, match="unsuspend command .* exited 3"):
        adapter.unsuspend(svc())


def test_command_lever_times_out():
    adapter = make(
        suspend="command",
        timeout_s=0.2,
        suspend_command=[sys.executable, "-c", "import time; time.sleep(5)"],
        unsuspend_command=["true"],
    )
    with pytest.raises(ProviderUnavailable, match="timed out"):
        adapter.suspend(svc(), "")


@respx.mock
def test_check_uses_the_json_api_and_reads_link_headers(monkeypatch):
    monkeypatch.setenv("T_LES_KEY", "key-123")
    monkeypatch.setenv("T_LES_ID", "id-456")
    api = respx.post("https://api.les.net/v1/account/balance/").mock(
        side_effect=[recorded("lesnet", "balance__ok"), recorded("lesnet", "balance__401")]
    )
    respx.get(LINK).mock(return_value=recorded("lesnet", "cdr__default"))
    adapter = make(api_key_env="T_LES_KEY", id_key_env="T_LES_ID")
    said = adapter.check(links=[LINK])
    assert "balance 142.17" in said and "readable" in said
    sent = api.calls[0].request.read()
    assert b'"apikey":"key-123"' in sent.replace(b" ", b"")
    with pytest.raises(ProviderAuthError, match="credentials were refused") as err:
        adapter.check()
    assert "key-123" not in str(err.value)


def test_a_long_link_still_fits_the_watermark_scope():
    short = make().feed_key(svc())
    assert short == f"link:{LINK}"
    long_link = "https://portal.les.test/cdr/" + "a" * 400 + ".txt"
    key = make().feed_key(svc(link=long_link))
    assert key.startswith("link-sha256:") and len(key) <= 300
    assert make().feed_key(svc(link=None)) is None
