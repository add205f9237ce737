"""One call-length limit for every provider, strict numbers in feeds, and LES.NET file edges
(docs/rating.md, "Numbers, limits and decks").

The limit is checked where every record passes on its way to the store (pull-cdrs), so
it is tested through `voipctl pull-cdrs` with a LES.NET file and a Vodia PBX answering
over respx, on the test database (SQLite, or PostgreSQL with VOIPCTL_TEST_DB).
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, datetime

import httpx
import pytest
import respx
from sqlalchemy import text

from tests.support.rejects import strict
from voipctl.config import LesnetServer
from voipctl.errors import ProviderDataError
from voipctl.providers.base import ServiceInfo
from voipctl.providers.lesnet.adapter import LesnetAdapter
from voipctl.providers.vodia.adapter import VodiaAdapter

PEER, DID = "D4E3CD2BFC791", "12046664021"
HEADER = ["date", "src", "dst", "duration", "peer", "did"]
VODIA_URL = "https://vodia.test"
TENANT = "rucken.wat1.ictvoip.ca"
# The webcdr keys and float times (https://doc.vodia.com/docs/webcdr); the extensions and
# trunks lists are unverified (docs/providers.md, "Vodia: facts and sources").
VODIA_ITEM = {
    "callid": "20753",
    "from": f'"Front Desk" <sip:8300@{TENANT}>',
    "to": f'"5197830020" <sip:5197830020@{TENANT}>',
    "start": 1795184000.444,
    "connect": 1795184002.120,
    "end": 1795184097.860,
    "extensions": ["8300"],
    "trunks": ["106"],
}
SINCE = datetime(2000, 1, 1, tzinfo=UTC)
UNTIL = datetime(2100, 1, 1, tzinfo=UTC)


def lesnet_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([HEADER, *rows])
    return out.getvalue()


def row(second: int, seconds: str) -> list[str]:
    return [f"2026-11-20 09:15:{second:02d}", DID, "15195550100", seconds, PEER, DID]


@pytest.fixture
def setup(cli, tmp_path):
    """A LES.NET service and a Vodia service; the configuration's [pull] limit as given."""
    link = tmp_path / "cdrs.txt"
    link.write_text(lesnet_text([]), encoding="utf-8")

    def configure(extra: str = "") -> object:
        config = tmp_path / "voipctl.toml"
        config.write_text(
            f'{extra}\n[servers.les1]\ntype = "lesnet"\n\n'
            f'[servers.vodia1]\ntype = "vodia"\nurl = "{VODIA_URL}"\nretries = 0\n'
        )
        return config

    config = configure()
    for argv in (
        ["product", "add", "std"],
        ["client", "add", "1", "--first-name", "Ada", "--last-name", "L",
         "--email", "a@example.com"],
        ["client", "add", "2", "--first-name", "Bob", "--last-name", "K",
         "--email", "b@example.com"],
        [
            "service", "add", "--client", "1", "--product", "std", "--server", "les1",
            "--domain", f"{PEER} | {DID}", "--cdr-link", str(link),
        ],
        [
            "service", "add", "--client", "2", "--product", "std", "--server", "vodia1",
            "--domain", f"{TENANT} | 5484815577 | 5197830020", "--billed", "8300",
            "--trunk", "106",
        ],
    ):  # fmt: skip
        result = cli(*argv, config=config)
        assert result.exit_code == 0, (argv, result.output)
    return cli, configure, link


def vodia_answers(items: list[dict]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page", "1") != "1":
            return httpx.Response(200, json=[])
        return httpx.Response(200, json=items)

    respx.route(host="vodia.test").mock(side_effect=handler)


def pull(cli, config, *server: str):
    extra = ("--server", server[0]) if server else ()
    return cli("pull-cdrs", "--since", "2026-11-01", "--until", "2026-12-01", *extra, config=config)


def stored(store) -> list[tuple]:
    with store.engine.connect() as conn:
        return list(conn.execute(text("SELECT server, billsec FROM cdrs ORDER BY server")))


@respx.mock
def test_a_lesnet_call_longer_than_the_limit_is_refused_naming_server_and_call(setup, store):
    cli, configure, link = setup
    link.write_text(lesnet_text([row(1, "2147483647")]), encoding="utf-8")
    result = pull(cli, configure(), "les1")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if "longer than the limit" in line]
    assert len(errors) == 1, result.stderr
    # Set aside (docs/providers.md, "Records set aside"), named by the call id of a
    # LES.NET row without one: its start (hex), a digest, an occurrence.
    assert errors[0].startswith("pull-cdrs: les1: set aside link:"), errors[0]
    assert ": CDR 6b0055e5-" in errors[0], errors[0]
    assert errors[0].endswith(
        ": call of 2147483647 s is longer than the limit of 2678400 s ([pull] max_call_seconds)"
        " (voipctl pull-cdrs --retry-rejected after a fix)"
    ), errors[0]
    assert stored(store) == []


@respx.mock
def test_a_vodia_call_longer_than_the_limit_is_refused_naming_server_and_call(setup, store):
    cli, configure, _ = setup
    # Connect to end: 2**31-1 s, which Vodia itself accepts.
    vodia_answers([{**VODIA_ITEM, "connect": 1795184002, "end": 1795184002 + 2**31 - 1}])
    result = pull(cli, configure(), "vodia1")
    assert result.exit_code == 1, result.output
    assert (
        "pull-cdrs: vodia1: set aside service:2 20753: CDR 20753: call of 2147483647 s is "
        "longer than the limit of 2678400 s ([pull] max_call_seconds) (voipctl pull-cdrs "
        "--retry-rejected after a fix)"
    ) in result.stderr.splitlines(), result.stderr
    assert stored(store) == []


@respx.mock
def test_the_limit_is_configuration_and_a_call_at_it_is_stored(setup, store):
    cli, configure, link = setup
    link.write_text(lesnet_text([row(1, "3600"), row(2, "3601")]), encoding="utf-8")
    vodia_answers([{**VODIA_ITEM, "connect": 1795184000, "end": 1795187600}])
    config = configure("[pull]\nmax_call_seconds = 3600\n")
    result = pull(cli, config)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if "limit" in line]
    assert len(lines) == 1 and lines[0].startswith("pull-cdrs: les1: set aside "), lines
    assert lines[0].endswith(": call of 3601 s is longer than the limit of 3600 s "
                             "([pull] max_call_seconds) (voipctl pull-cdrs --retry-rejected "
                             "after a fix)"), lines  # fmt: skip
    # The call at the limit and the other server's call are stored; the longer one is set aside.
    assert stored(store) == [("les1", 3600), ("vodia1", 3600)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "pull.max_call_seconds: input should be greater than 0, got 0"),
        (
            "2147483648",
            "pull.max_call_seconds: input should be less than or equal to 2147483647, "
            "got 2147483648",
        ),
        (
            '"6_0"',
            "pull.max_call_seconds: not a whole number in plain digits 0-9 "
            "(no exponent, underscore or other digits), got '6_0'",
        ),
    ],
)
def test_a_limit_out_of_range_is_a_configuration_error(setup, value, message):
    cli, configure, _ = setup
    config = configure(f"[pull]\nmax_call_seconds = {value}\n")
    result = cli("pull-cdrs", config=config)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"voipctl: error: {config}: {message}"]


# --- strict numbers in a LES.NET file ---------------------------------------------------------


def lesnet_adapter() -> LesnetAdapter:
    return LesnetAdapter("les1", LesnetServer.model_validate({"type": "lesnet"}))


def read(path) -> list:
    service = ServiceInfo(
        id=1, client_id=1, server="les1", peer_id=PEER, main_did=DID, dids=(DID,),
        extensions=(DID,), cdr_link=str(path),
    )  # fmt: skip
    with lesnet_adapter() as adapter:
        return strict(adapter, adapter.fetch_cdrs(service, SINCE, UNTIL))


@pytest.mark.parametrize("seconds", ["6_0", "\u0661\u0662", "1e3", "0.0_1", "\uff11\uff12", "NaN"])
def test_a_lesnet_duration_not_in_plain_digits_is_refused(tmp_path, seconds):
    path = tmp_path / "cdrs.txt"
    path.write_text(lesnet_text([row(1, seconds)]), encoding="utf-8")
    with pytest.raises(ProviderDataError) as caught:
        read(path)
    assert str(caught.value) == (
        f"les1: CDR link {path} line 2: seconds {seconds!r} is not a duration (column duration)"
    )


@pytest.mark.parametrize(("seconds", "billsec"), [("65", 65), ("4.2", 5), (" 7 ", 7), ("0", 0)])
def test_a_lesnet_duration_in_plain_digits_is_read(tmp_path, seconds, billsec):
    path = tmp_path / "cdrs.txt"
    path.write_text(lesnet_text([row(1, seconds)]), encoding="utf-8")
    assert [r.billsec for r in read(path)] == [billsec]


def test_a_lesnet_time_in_other_digits_is_refused(tmp_path):
    path = tmp_path / "cdrs.txt"
    bad = "\u0662\u0660\u0662\u0666-11-20 09:15:02"
    path.write_text(lesnet_text([[bad, DID, "15195550100", "65", PEER, DID]]), encoding="utf-8")
    with pytest.raises(ProviderDataError) as caught:
        read(path)
    assert str(caught.value) == (
        f"les1: CDR link {path} line 2: time {bad!r} does not match '%Y-%m-%d %H:%M:%S' "
        "(column date)"
    )


# --- a BOM and an empty file ------------------------------------------------------------------


def test_a_lesnet_file_with_a_utf8_bom_is_read_as_the_deck_importer_reads_it(tmp_path):
    path = tmp_path / "cdrs.txt"
    path.write_bytes(b"\xef\xbb\xbf" + lesnet_text([row(1, "65")]).encode())
    records = read(path)
    assert [r.billsec for r in records] == [65]
    assert "date" in records[0].raw and "\ufeffdate" not in records[0].raw


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf"], ids=["empty", "bom-only"])
def test_an_empty_lesnet_file_says_so_in_one_line(tmp_path, caplog, content):
    path = tmp_path / "cdrs.txt"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="voipctl.providers.lesnet"):
        assert read(path) == []
    assert [r.getMessage() for r in caplog.records] == [
        f"les1: CDR link {path} is empty: no calls read"
    ]


# --- strict numbers in Vodia's JSON -----------------------------------------------------------


def vodia_adapter(items) -> VodiaAdapter:
    from voipctl.config import VodiaServer

    VodiaAdapter.backoff_s = 0

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page", "1") != "1":
            return httpx.Response(200, json=[])
        return httpx.Response(200, json=items)

    config = VodiaServer.model_validate({"type": "vodia", "url": VODIA_URL, "retries": 0})
    return VodiaAdapter("vodia1", config, transport=httpx.MockTransport(handler))


VODIA_SERVICE = ServiceInfo(
    id=1, client_id=1, server="vodia1", tenant=TENANT, main_did="5484815577",
    dids=("5484815577", "5197830020"), extensions=("8300",), trunk_id="106",
)  # fmt: skip


@pytest.mark.parametrize("value", ["1e3", "6_0", "\u0661\u0662", "1795184002.1_2"])
def test_a_vodia_time_as_text_not_in_plain_digits_is_refused(value):
    adapter = vodia_adapter([{**VODIA_ITEM, "connect": value}])
    with adapter, pytest.raises(ProviderDataError) as caught:
        strict(adapter, adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL))
    assert str(caught.value) == f"vodia1: CDR 20753: time {value!r} is not epoch seconds"


def test_vodia_float_epochs_are_read_exactly():
    # 0.120 and 0.860 as floats are 0.11999... and 0.85999...; read as Decimal they are
    # what the PBX wrote: 95.74 s, billed 96.
    with vodia_adapter([VODIA_ITEM]) as adapter:
        (record,) = adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL)
    assert record.billsec == 96
    assert record.answer == datetime(2026, 11, 20, 14, 13, 22, 120000, tzinfo=UTC)


def test_a_vodia_page_with_nan_is_not_json():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'[{"callid": "1", "start": NaN}]')

    from voipctl.config import VodiaServer

    config = VodiaServer.model_validate({"type": "vodia", "url": VODIA_URL, "retries": 0})
    adapter = VodiaAdapter("vodia1", config, transport=httpx.MockTransport(handler))
    with adapter, pytest.raises(ProviderDataError) as caught:
        list(adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL))
    assert "answered with non-JSON" in str(caught.value)
    assert str(caught.value).startswith("vodia1: ")


# --- strict numbers in configuration ----------------------------------------------------------


@pytest.mark.parametrize("value", ["6_0", "\u0661\u0662", "1e3"])
@pytest.mark.parametrize(
    ("variable", "key", "what"),
    [
        ("VOIPCTL_EMAIL__SMTP_PORT", "email.smtp_port", "a whole number"),
        (
            "VOIPCTL_SERVERS__LES1__OVERLAP_MINUTES",
            "servers.les1.overlap_minutes",
            "a whole number",
        ),
        ("VOIPCTL_EMAIL__TIMEOUT_S", "email.timeout_s", "a number"),
    ],
)
def test_a_configuration_value_not_in_plain_digits_is_one_line_exit_2(
    setup, monkeypatch, value, variable, key, what
):
    cli, configure, _ = setup
    monkeypatch.setenv(variable, value)
    result = cli("pull-cdrs", config=configure())
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"voipctl: error: ${variable}: {key}: not {what} in plain digits 0-9 "
        f"(no exponent, underscore or other digits), got {value!r}"
    ]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[email]\ntimeout_s = inf\n", "email.timeout_s: input should be a finite number, got inf"),
        ("[email]\nsmtp_port = 70000\n", "email.smtp_port: input should be less than or equal "
         "to 65535, got 70000"),
    ],
)  # fmt: skip
def test_a_configuration_number_out_of_range_is_one_line_exit_2(setup, toml, message):
    cli, configure, _ = setup
    config = configure(toml)
    result = cli("pull-cdrs", config=config)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"voipctl: error: {config}: {message}"]
