"""FusionPBX `mode = "export"`: xml_cdr_export.php CSV, with recorded payloads (respx)
and once against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import csv
import io
import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from sqlalchemy import select

from tests import support
from tests.support.fusionpbx_env import TENANT, service
from tests.support.rejects import strict
from voipctl.config import FusionPBXServer
from voipctl.errors import ProviderAuthError, ProviderDataError, ProviderUnavailable
from voipctl.providers import adapter_for
from voipctl.providers.base import Rejected, digest
from voipctl.providers.fusionpbx.export import lf_lines, read_export, split_record
from voipctl.store.models import Cdr

FIXTURES = support.FIXTURES / "fusionpbx"
BASE = "https://pbx.example.com"
EXPORT = f"{BASE}/app/xml_cdr/xml_cdr_export.php"
KEY = "k3y-9f8e7d6c5b4a39281706f5e4d3c2b1a0"  # FusionPBX keys are longer than 30 characters
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # epoch 1772463600
SINCE, UNTIL = T0, T0 + timedelta(hours=1)

IDS = {
    "out": "6513270e-269e-4d37-b2a7-4de452e6b438",
    "in": "90c192cf-d3ac-44af-8f21-ddb66cad4a26",
    "missed": "0fd630f1-f29d-4da9-953f-48f1a09f76b5",
    "local": "92276658-1e27-41c0-8a6a-63ec24ede6a4",
    "at_stop": "923a7369-94e3-4f91-9a61-dbe22e44158b",
}


def payload(scenario: str) -> bytes:
    return (FIXTURES / f"xml_cdr_export__{scenario}.csv").read_bytes()


def csv_response(scenario: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=payload(scenario),
        headers={
            "content-type": "application/octet-binary",
            "content-disposition": f"attachment; filename=cdr_{TENANT}_20260302_160000.csv",
        },
    )


@pytest.fixture
def config(monkeypatch) -> FusionPBXServer:
    monkeypatch.setenv("FUSION1_API_KEY", KEY)
    return FusionPBXServer(
        type="fusionpbx",
        mode="export",
        url=BASE,
        api_key_env="FUSION1_API_KEY",
        timezone="America/Toronto",
        suspend="domain",
        timeout_s=2,
    )


@pytest.fixture
def adapter(config):
    fusion = adapter_for("fusion1", config)
    fusion.backoff_s = 0.0
    yield fusion
    fusion.close()


def fetch(adapter, svc=None, since=SINCE, until=UNTIL):
    return strict(adapter, adapter.fetch_cdrs(svc or service(), since, until))


@respx.mock
def test_window_rules_and_request(adapter):
    route = respx.get(EXPORT).mock(return_value=csv_response("window"))
    records = fetch(adapter)

    request = route.calls.last.request
    assert request.url.path == "/app/xml_cdr/xml_cdr_export.php"
    assert dict(request.url.params) == {
        "key": KEY,
        "export_format": "csv",
        "start_epoch": "1772463600",
        "stop_epoch": "1772467200",
        "domain_name": TENANT,
    }
    # b-leg, unbilled extension, a DID not the service's, and the call at stop_epoch
    # (FusionPBX's BETWEEN includes it; the window is half-open) are left out.
    assert [r.provider_id for r in records] == [IDS["out"], IDS["in"], IDS["missed"], IDS["local"]]
    out, inbound, missed, local = records
    assert (out.direction, out.number, out.extension, out.caller) == (
        "outbound",
        "15195550100",
        "2112",
        "5192229000",
    )
    assert out.billsec == 62 and out.start == T0 + timedelta(minutes=5)
    assert out.answer == out.start + timedelta(seconds=4) and out.end == out.answer + timedelta(
        seconds=62
    )
    assert out.raw["xml_cdr_uuid"] == IDS["out"] and out.raw["caller_id_name"] == "Front Desk"
    assert (inbound.direction, inbound.number, inbound.billsec) == ("inbound", "+15192229000", 45)
    assert inbound.raw["caller_id_name"] == "Smith, John"
    assert (missed.number, missed.billsec, missed.answer, missed.hangup_cause) == (
        "15192229000",
        0,
        None,
        "NO_ANSWER",
    )
    assert (local.direction, local.number, local.extension) == ("local", "2112", "2113")


@respx.mock
def test_whole_tenant_when_billed_field_is_empty(adapter):
    respx.get(EXPORT).mock(return_value=csv_response("window"))
    records = fetch(adapter, service(extensions=(), dids=(), main_did=None))
    assert len(records) == 6  # every a-leg of the window; the b-leg and stop_epoch call stay out


@respx.mock
def test_empty_export(adapter):
    respx.get(EXPORT).mock(return_value=csv_response("empty"))
    assert fetch(adapter) == []


@respx.mock
def test_duration_is_billsec_when_the_header_has_no_billsec(adapter):
    respx.get(EXPORT).mock(return_value=csv_response("duration_only"))
    [record] = fetch(adapter)
    assert record.provider_id == IDS["out"] and record.billsec == 62


@respx.mock
def test_401_says_credentials_refused_without_the_key(adapter):
    respx.get(EXPORT).mock(return_value=httpx.Response(401, text="Unauthorized"))
    with pytest.raises(ProviderAuthError) as caught:
        fetch(adapter)
    message = str(caught.value)
    assert message.startswith("fusion1: the credentials were refused (HTTP 401")
    assert KEY not in message and "key=" not in message


@respx.mock
def test_refused_key_redirects_to_login(adapter):
    respx.get(EXPORT).mock(
        return_value=httpx.Response(
            302, headers={"location": "/?path=%2Fapp%2Fxml_cdr%2Fxml_cdr_export.php"}
        )
    )
    with pytest.raises(ProviderAuthError, match="credentials were refused .*login") as caught:
        fetch(adapter)
    assert KEY not in str(caught.value)


@respx.mock
def test_user_without_export_permission(adapter):
    respx.get(EXPORT).mock(return_value=httpx.Response(200, text="access denied"))
    with pytest.raises(ProviderAuthError, match="xml_cdr_export_csv permissions"):
        fetch(adapter)


@respx.mock
def test_503_then_success(adapter, caplog):
    route = respx.get(EXPORT).mock(
        side_effect=[httpx.Response(503, text="busy"), csv_response("window")]
    )
    with caplog.at_level(logging.DEBUG):
        records = fetch(adapter)
    assert route.call_count == 2 and len(records) == 4
    # voipctl's own log lines (httpx's, which print whole URLs, are silenced by the CLI).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("voipctl"))
    assert "GET /app/xml_cdr/xml_cdr_export.php start_epoch=1772463600" in ours
    assert KEY not in ours


@respx.mock
def test_timeouts_make_the_server_unavailable(adapter):
    route = respx.get(EXPORT).mock(side_effect=httpx.ReadTimeout("read timed out"))
    with pytest.raises(ProviderUnavailable) as caught:
        fetch(adapter)
    assert route.call_count == 4  # the first try and 3 retries
    assert str(caught.value) == (
        "fusion1: timed out on GET /app/xml_cdr/xml_cdr_export.php (after 4 attempts)"
    )


@respx.mock
def test_a_record_cut_short_is_set_aside_naming_its_line(adapter):
    respx.get(EXPORT).mock(return_value=csv_response("malformed"))
    records = adapter.fetch_cdrs(service(), SINCE, UNTIL)
    assert next(records).provider_id == IDS["out"]  # line 2 is fine
    rejected = next(records)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "/app/xml_cdr/xml_cdr_export.php line 3: 20 fields, the header has 34"
    lines = payload("malformed").decode().split("\n")
    # Kept as the header line and the record's line: what reparse reads again.
    assert rejected.raw == lines[0] + "\n" + lines[2]
    assert rejected.locator == digest(lines[2])


def test_the_record_after_an_unreadable_one_is_read():
    lines = payload("malformed").decode().split("\n")
    read = list(read_export("fusion1", lines))
    assert [(r.line, r.row is not None) for r in read] == [(2, True), (3, False), (4, True)]
    assert read[1].raw == lines[2] and read[1].error is not None
    # FusionPBX's own writing of a quote in a name, once refused as "35 fields".
    assert read[2].row["caller_id_name"] == 'O"Brien, Pat'
    assert read[2].row["xml_cdr_uuid"] == IDS["in"]


REAL_IDS = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"voipctl-export-harness/{i}")) for i in range(8)]


@respx.mock
def test_fusionpbx_s_own_export_with_unescaped_quotes(adapter):
    """xml_cdr_export.php's real output (xml_cdr_export__real.source) read whole."""
    respx.get(EXPORT).mock(return_value=csv_response("real_hostile"))
    records = fetch(adapter, service(extensions=(), dids=(), main_did=None))
    # FusionPBX sorts by start_stamp desc; the b-leg (CALLS[7]) stays out.
    assert [r.provider_id for r in records] == REAL_IDS[6::-1]
    names = {r.provider_id: r.raw["caller_id_name"] for r in records}
    assert [names[i] for i in REAL_IDS[:7]] == [
        "Front Desk",
        "WIRELESS CALLER",
        'Pat "The Boss", OBrien',
        'Smith","Jane',
        '"',
        'Trailing quote"',
        "Two\nLines",
    ]
    by_id = {r.provider_id: r for r in records}
    boss = by_id[REAL_IDS[2]]
    assert (boss.direction, boss.number, boss.billsec, boss.caller) == (
        "inbound",
        "+15192229000",
        45,
        "4165550199",
    )
    assert boss.start == T0 + timedelta(minutes=10)
    missed = by_id[REAL_IDS[1]]
    assert (missed.billsec, missed.answer, missed.raw["missed_call"]) == (0, None, "1")
    assert by_id[REAL_IDS[6]].number == "15195550103" and by_id[REAL_IDS[6]].billsec == 9


@respx.mock
def test_fusionpbx_s_own_empty_export(adapter):
    respx.get(EXPORT).mock(return_value=csv_response("real_empty"))
    assert payload("real_empty") == b"\n\n"
    assert fetch(adapter) == []


HEADER = ["xml_cdr_uuid", "start_epoch", "caller_id_name", "caller_id_number", "billsec"]
ONE = "6513270e-269e-4d37-b2a7-4de452e6b438"


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ('Pat "The Boss", OBrien', "4165550199"),
        ('Smith","Jane', "4165550199"),
        (",", "4165550199"),
        ('","', "4165550199"),
        ('"', ""),
        ("a\rb\u2028c", "4165550199"),
    ],
)
def test_a_name_with_quotes_and_commas_is_read(name, number):
    text = f'"{ONE}","1772463900","{name}","{number}","62"'
    assert split_record(HEADER, text) == [ONE, "1772463900", name, number, "62"]


def test_two_free_text_columns_sharing_a_separator_are_ambiguous():
    header = ["xml_cdr_uuid", "start_epoch", "caller_id_name", "extension_name", "billsec"]
    with pytest.raises(ValueError) as caught:
        split_record(header, f'"{ONE}","1772463900","A","B","C","62"')
    assert str(caught.value) == (
        "ambiguous: a value holds '\",\"' and it cannot be told which of "
        "caller_id_name, extension_name it belongs to"
    )


def test_too_many_pieces_that_fit_no_column():
    header = ["xml_cdr_uuid", "start_epoch", "caller_id_number", "billsec"]
    with pytest.raises(ValueError) as caught:
        split_record(header, f'"{ONE}","1772463900","4165550199","62","63"')
    assert str(caught.value) == "no reading of its 5 quoted pieces fits the header's 4 columns"


def test_a_line_break_inside_a_value_joins_the_lines():
    head = '"xml_cdr_uuid","start_epoch","caller_id_name","caller_id_number","billsec"'
    text = f'{head}\n"{ONE}","1772463900","Two\nLines","4165550199","62"\n'
    chunks = [text[i : i + 7] for i in range(0, len(text), 7)]  # split anywhere on the wire
    [record] = read_export("fusion1", lf_lines(chunks))
    assert (record.line, record.row["caller_id_name"], record.row["billsec"]) == (
        2,
        "Two\nLines",
        "62",
    )
    assert record.raw == f'"{ONE}","1772463900","Two\nLines","4165550199","62"'


@respx.mock
def test_bad_billsec_names_server_and_line(adapter):
    respx.get(EXPORT).mock(return_value=csv_response("bad_billsec"))
    with pytest.raises(ProviderDataError) as caught:
        fetch(adapter)
    assert str(caught.value) == (
        "fusion1: /app/xml_cdr/xml_cdr_export.php line 3: billsec '6O' is not a number"
    )


@respx.mock
def test_html_instead_of_csv(adapter):
    respx.get(EXPORT).mock(return_value=httpx.Response(200, text="<!DOCTYPE html><html>login"))
    with pytest.raises(ProviderAuthError, match="answered a web page"):
        fetch(adapter)


@respx.mock
def test_check_asks_a_one_second_window(adapter):
    route = respx.get(EXPORT).mock(return_value=csv_response("empty"))
    assert adapter.check() == f"export at {BASE}: API key accepted"
    params = route.calls.last.request.url.params
    assert int(params["stop_epoch"]) - int(params["start_epoch"]) == 1
    assert params["key"] == KEY


class _ExportHandler(BaseHTTPRequestHandler):
    seen: list[dict[str, list[str]]] = []
    scenario = "window"

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        type(self).seen.append(query)
        if url.path != "/app/xml_cdr/xml_cdr_export.php":
            self.send_error(404)
        elif query.get("key") != [KEY]:
            self.send_response(302)
            self.send_header("Location", "/?path=%2Fapp%2Fxml_cdr%2Fxml_cdr_export.php")
            self.end_headers()
        else:
            body = payload(self.scenario)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-binary")
            self.end_headers()  # no Content-Length: PHP streams until it closes
            self.wfile.write(body)
            self.close_connection = True

    def log_message(self, *args):
        pass


def test_against_a_real_http_server(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ExportHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("FUSION1_API_KEY", KEY)
        config = FusionPBXServer(
            type="fusionpbx", mode="export", url=url, api_key_env="FUSION1_API_KEY", timeout_s=5
        )
        with adapter_for("fusion1", config) as fusion:
            records = fetch(fusion)
        assert [r.provider_id for r in records] == [
            IDS["out"],
            IDS["in"],
            IDS["missed"],
            IDS["local"],
        ]
        assert _ExportHandler.seen[-1]["domain_name"] == [TENANT]

        monkeypatch.setenv("FUSION1_API_KEY", "a-revoked-key-0000000000000000000000")
        with (
            adapter_for("fusion1", config) as fusion,
            pytest.raises(ProviderAuthError) as caught,
        ):
            fetch(fusion)
        assert "revoked" not in str(caught.value)
    finally:
        server.shutdown()
        server.server_close()


def _window_with(column: str, value: str) -> bytes:
    """The recorded window with one cell of its first call (line 2) replaced."""
    rows = list(csv.reader(io.StringIO(payload("window").decode())))
    rows[1][rows[0].index(column)] = value
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


@respx.mock
@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("billsec", "99999999999999999999", "billsec 99999999999999999999 is longer than any call"),
        ("billsec", "-5", "billsec '-5' is not a number of seconds"),
        ("start_epoch", "1e30", "start_epoch '1e30' is not a number"),
        ("billsec", "6_0", "billsec '6_0' is not a number"),
        ("billsec", "\u0661\u0662", "billsec '\u0661\u0662' is not a number"),
        ("answer_stamp", "0001-01-01 00:00:00+14", "answer_stamp '0001-01-01 00:00:00+14' is out"),
        ("end_stamp", "yesterday", "end_stamp 'yesterday' is not a time"),
        ("xml_cdr_uuid", "not-a-uuid", "xml_cdr_uuid 'not-a-uuid' is not a uuid"),
    ],
)
def test_impossible_values_name_server_and_line(adapter, column, value, error):
    respx.get(EXPORT).mock(return_value=httpx.Response(200, content=_window_with(column, value)))
    with pytest.raises(ProviderDataError) as caught:
        fetch(adapter)
    assert str(caught.value).startswith(f"fusion1: /app/xml_cdr/xml_cdr_export.php line 2: {error}")


def test_pull_cdrs_stores_fusionpbx_s_own_export_whole(cli, store, tmp_path, monkeypatch):
    """pull-cdrs over HTTP from a server answering xml_cdr_export.php's real output."""
    handler = type("RealExport", (_ExportHandler,), {"scenario": "real_hostile", "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("FUSION1_API_KEY", KEY)
        # The lever's database; pull-cdrs in export mode never connects to it.
        monkeypatch.setenv("FUSION1_DB_URL", "postgresql://voipctl@127.0.0.1:9/fusionpbx")
        config = tmp_path / "fusion.toml"
        config.write_text(
            f"""
[servers.fusion1]
type = "fusionpbx"
mode = "export"
url = "http://127.0.0.1:{server.server_address[1]}"
api_key_env = "FUSION1_API_KEY"
db_url_env = "FUSION1_DB_URL"
suspend = "domain"
timeout_s = 5
""",
            encoding="utf-8",
        )
        assert cli("product", "add", "Metered", config=config).exit_code == 0
        client = cli(
            "client", "add", "42", "--first-name", "Ada", "--last-name", "Lovelace",
            "--email", "ada@example.com", "--has-voip-service", config=config,
        )  # fmt: skip
        assert client.exit_code == 0, client.output
        added = cli(
            "service", "add", "--client", "42", "--product", "Metered", "--server", "fusion1",
            "--domain", f"{TENANT} | 5192229000", "--billed", "2112 | 2113", config=config,
        )  # fmt: skip
        assert added.exit_code == 0, added.output
        window = ("--since", SINCE.isoformat(), "--until", UNTIL.isoformat())
        pulled = cli("pull-cdrs", "--server", "fusion1", *window, config=config)
        assert pulled.exit_code == 0, pulled.output
        with store.transaction() as session:
            stored = session.execute(
                select(Cdr.provider_id, Cdr.direction, Cdr.number).order_by(Cdr.start)
            ).all()
        assert [tuple(row) for row in stored] == [
            (REAL_IDS[0], "outbound", "15195550100"),
            (REAL_IDS[1], "inbound", "+15192229000"),
            (REAL_IDS[2], "inbound", "+15192229000"),
            (REAL_IDS[3], "inbound", "+15192229000"),
            (REAL_IDS[4], "outbound", "15195550101"),
            (REAL_IDS[5], "outbound", "15195550102"),
            (REAL_IDS[6], "outbound", "15195550103"),
        ]
        assert KEY not in pulled.output
    finally:
        server.shutdown()
        server.server_close()
