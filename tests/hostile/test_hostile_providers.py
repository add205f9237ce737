"""Hostile Vodia and FusionPBX payloads: calls, or one clear error naming the server and record.

The HTTP layer is an httpx.MockTransport serving what hypothesis generates;
everything past it (paging, parsing, classification) is the real adapter.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.support.fuzzing import FUZZ
from tests.support.rejects import strict
from voipctl.config import FusionPBXServer, VodiaServer
from voipctl.errors import VoipctlError
from voipctl.providers.base import ServiceInfo
from voipctl.providers.fusionpbx.adapter import FusionPBXAdapter
from voipctl.providers.vodia.adapter import VodiaAdapter

SINCE = datetime(2000, 1, 1, tzinfo=UTC)
UNTIL = datetime(2100, 1, 1, tzinfo=UTC)
MAX_BILLSEC = 2**31 - 1  # cdrs.billsec is a 32-bit integer on PostgreSQL

# --- Vodia ---------------------------------------------------------------------------------------

VODIA_SERVICE = ServiceInfo(
    id=1,
    client_id=1,
    server="vodia1",
    tenant="rucken.wat1.ictvoip.ca",
    main_did="5484815577",
    dids=("5484815577", "5197830020"),
    extensions=("8300",),
    trunk_id="106",
)
# The webcdr keys and float times (https://doc.vodia.com/docs/webcdr); the extensions and
# trunks lists are unverified (docs/providers.md, "Vodia: facts and sources").
GOOD_ITEM = {
    "callid": "20753",
    "from": '"Front Desk" <sip:8300@rucken.wat1.ictvoip.ca>',
    "to": '"5197830020" <sip:5197830020@rucken.wat1.ictvoip.ca>',
    "start": 1595572559.444,
    "connect": 1595572561.120,
    "end": 1595572656.860,
    "extensions": ["8300"],
    "trunks": ["106"],
}
HOSTILE_TEXT = [
    "'); DROP TABLE cdrs;--",
    "=cmd|' /C calc'!A0",
    "{{ 7*7 }}",
    "{$client_first_name}",
    "\x00",
    "<sip:\x00@x>",
    "",
    " ",
    "x" * 300,
]
epochs = st.one_of(
    st.sampled_from(
        ["", " ", "0", "-1", "1e30", "NaN", "Infinity", "1595572561.120", "8000000000", "abc"]
    ),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.just(float("nan")),
    st.none(),
    st.booleans(),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars | st.sampled_from(HOSTILE_TEXT),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)
sip_uris = st.one_of(
    st.sampled_from(
        [GOOD_ITEM["from"], GOOD_ITEM["to"], "<sip:5197830020@x>", "sip:8300@x", "<sip:@x>", "<>"]
    ),
    st.sampled_from(HOSTILE_TEXT).map(lambda t: f'"{t}" <sip:{t}@x>'),
    json_values,
)
ITEM_FIELDS = {
    "callid": st.integers() | st.text(max_size=10) | json_values,
    "from": sip_uris,
    "to": sip_uris,
    "start": epochs,
    "connect": epochs,
    "end": epochs,
    "extensions": st.lists(st.integers() | st.text(max_size=5), max_size=2) | json_values,
    "trunks": st.lists(st.integers(), max_size=2) | json_values,
}
# Mostly a good item with one or two fields spoiled: each spoiled field gets past the others.
one_field = st.sampled_from(sorted(ITEM_FIELDS)).flatmap(
    lambda key: ITEM_FIELDS[key].map(lambda value: {**GOOD_ITEM, key: value})
)
items = st.one_of(
    one_field,
    st.fixed_dictionaries({}, optional=ITEM_FIELDS).map(lambda extra: {**GOOD_ITEM, **extra}),
    json_values,
)


def vodia(handler) -> VodiaAdapter:
    VodiaAdapter.backoff_s = 0
    config = VodiaServer.model_validate(
        {"type": "vodia", "url": "https://vodia.test", "retries": 0}
    )
    return VodiaAdapter("vodia1", config, transport=httpx.MockTransport(handler))


def assert_clear(exc: VoipctlError, server: str) -> None:
    message = str(exc)
    assert message.startswith(f"{server}: "), message
    assert "\n" not in message and len(message) < 800, message


def assert_storable(records) -> None:
    """What the pull would write fits the schema's columns (NUL is tested at the pull level)."""
    for rec in records:
        assert 0 <= rec.billsec <= MAX_BILLSEC
        assert rec.provider_id and len(rec.provider_id) <= 200
        assert rec.start.tzinfo is not None


@FUZZ
@given(
    page=st.lists(items, max_size=5) | json_values,
    status=st.sampled_from([200, 200, 200, 404, 500]),
)
def test_any_vodia_cdr_page_gives_calls_or_one_clear_error(page, status):
    def handler(request):
        if request.url.params.get("page", "1") != "1":
            return httpx.Response(200, json=[])
        # json.dumps writes NaN/Infinity as a careless server would: not valid JSON.
        return httpx.Response(status, content=json.dumps(page).encode())

    with vodia(handler) as adapter:
        try:
            records = strict(adapter, adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL))
        except VoipctlError as exc:
            assert_clear(exc, "vodia1")
            return
    assert_storable(records)


@FUZZ
@given(body=st.binary(max_size=200))
def test_any_vodia_body_bytes_give_calls_or_one_clear_error(body):
    with vodia(lambda request: httpx.Response(200, content=body)) as adapter:
        try:
            strict(adapter, adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL))
        except VoipctlError as exc:
            assert_clear(exc, "vodia1")


@pytest.mark.parametrize("start", ["1e30", "253402300800", 9.2e18])
def test_a_vodia_time_past_year_9999_is_a_clear_error(start):
    item = {**GOOD_ITEM, "start": start}
    adapter = vodia(lambda request: httpx.Response(200, json=[item]))
    with adapter, pytest.raises(VoipctlError, match=r"^vodia1: CDR 20753: "):
        strict(adapter, adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL))


def test_a_vodia_call_longer_than_billsec_can_hold_is_a_clear_error():
    # connect 2020, end 2223: 6.4e9 seconds, past cdrs.billsec's 32 bits (PostgreSQL
    # refused the whole pull with "integer out of range").
    item = {**GOOD_ITEM, "end": "8000000000"}
    adapter = vodia(lambda request: httpx.Response(200, json=[item]))
    with adapter, pytest.raises(VoipctlError, match=r"^vodia1: CDR 20753: .* is not a call"):
        strict(adapter, adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL))


@pytest.mark.parametrize("ident", ["", None, " "])
def test_a_vodia_cdr_without_an_id_is_a_clear_error(ident):
    item = {**GOOD_ITEM, "callid": ident}
    adapter = vodia(lambda request: httpx.Response(200, json=[item]))
    with adapter, pytest.raises(VoipctlError, match=r"^vodia1: CDR"):
        strict(adapter, adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL))


def test_a_vodia_id_with_a_line_break_stays_on_one_line():
    # Found by fuzzing: the id went into the message as is, forging a second error line.
    item = {**GOOD_ITEM, "callid": "7\nvoipctl: error: forged", "start": "abc"}
    adapter = vodia(lambda request: httpx.Response(200, json=[item]))
    with adapter, pytest.raises(VoipctlError) as caught:
        strict(adapter, adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL))
    assert "\n" not in str(caught.value)


def test_hostile_caller_names_and_numbers_come_through_as_text():
    item = {
        **GOOD_ITEM,
        "from": '"\'); DROP TABLE cdrs;--" <sip:8300@rucken.wat1.ictvoip.ca>',
        "to": '"{{ 7*7 }}" <sip:5197830020@rucken.wat1.ictvoip.ca>',
    }
    with vodia(lambda request: httpx.Response(200, json=[item])) as adapter:
        (record,) = adapter.fetch_cdrs(VODIA_SERVICE, SINCE, UNTIL)
    assert record.caller == "8300" and record.number == "5197830020"
    assert record.raw["from"].startswith('"\'); DROP TABLE cdrs;--"')


# --- FusionPBX export ----------------------------------------------------------------------------

FUSION_SERVICE = ServiceInfo(
    id=2,
    client_id=2,
    server="fusion1",
    tenant="mcon.wat7.ictvoip.ca",
    main_did="5192229000",
    dids=("5192229000",),
    extensions=("2112", "2113"),
    gateway_uuid="6f1c3c2e-2c0c-4b57-9d2c-6a1c9e5f0a11",
)
EXPORT_HEADER = [
    "xml_cdr_uuid",
    "direction",
    "extension",
    "caller_id_number",
    "caller_destination",
    "destination_number",
    "start_epoch",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "billsec",
    "hangup_cause",
    "status",
    "leg",
]
GOOD_ROW = [
    "0b6a7f0e-7c43-4d7e-9d7e-1e2f3a4b5c6d",
    "outbound",
    "2112",
    "5192229000",
    "15195550100",
    "15195550100",
    "1763650000",
    "2025-11-20 09:46:40-05",
    "2025-11-20 09:46:42-05",
    "2025-11-20 09:47:47-05",
    "65",
    "NORMAL_CLEARING",
    "answered",
    "a",
]
export_cells = st.one_of(
    st.sampled_from(
        [
            "",
            "1e30",
            "-5",
            "NaN",
            "99999999999999999999",
            "0001-01-01 00:00:00+14",
            "9999-12-31 23:59:59-12",
            "2025-13-45 99:99:99",
            "not-a-uuid",
            "b",
            "inbound",
            "local",
            *HOSTILE_TEXT,
        ]
    ),
    st.text(max_size=15),
)
export_rows = st.lists(
    st.tuples(st.integers(min_value=0, max_value=len(GOOD_ROW) - 1), export_cells), max_size=3
).map(lambda edits: _edit(GOOD_ROW, edits))


def _edit(row: list[str], edits) -> list[str]:
    row = list(row)
    for index, value in edits:
        row[index] = value
    return row


def _csv_text(rows: list[list[str]]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture
def fusion_env(monkeypatch):
    monkeypatch.setenv("FUSION1_DB_URL", "postgresql://127.0.0.1:1/fusionpbx")
    monkeypatch.setenv("FUSION1_API_KEY", "k" * 40)


def fusion(handler) -> FusionPBXAdapter:
    FusionPBXAdapter.backoff_s = 0
    config = FusionPBXServer.model_validate(
        {
            "type": "fusionpbx",
            "mode": "export",
            "url": "https://fusion.test",
            "api_key_env": "FUSION1_API_KEY",
            "db_url_env": "FUSION1_DB_URL",
            "retries": 0,
        }
    )
    return FusionPBXAdapter("fusion1", config, transport=httpx.MockTransport(handler))


@FUZZ
@given(
    rows=st.lists(export_rows, max_size=4),
    header=st.sampled_from([EXPORT_HEADER, EXPORT_HEADER[:-1], ["xml_cdr_uuid"], []]),
)
def test_any_fusionpbx_export_gives_calls_or_one_clear_error(fusion_env, rows, header):
    body = _csv_text(([header] if header else []) + rows)
    with fusion(lambda request: httpx.Response(200, text=body)) as adapter:
        try:
            records = strict(adapter, adapter.fetch_cdrs(FUSION_SERVICE, SINCE, UNTIL))
        except VoipctlError as exc:
            assert_clear(exc, "fusion1")
            return
    assert_storable(records)


@FUZZ
@given(body=st.binary(max_size=300))
def test_any_fusionpbx_export_bytes_give_calls_or_one_clear_error(fusion_env, body):
    head = (",".join(EXPORT_HEADER) + "\n").encode()
    with fusion(lambda request: httpx.Response(200, content=head + body)) as adapter:
        try:
            records = strict(adapter, adapter.fetch_cdrs(FUSION_SERVICE, SINCE, UNTIL))
        except VoipctlError as exc:
            assert_clear(exc, "fusion1")
            return
    assert_storable(records)


def test_a_good_export_row_is_one_call(fusion_env):
    body = _csv_text([EXPORT_HEADER, GOOD_ROW])
    with fusion(lambda request: httpx.Response(200, text=body)) as adapter:
        (record,) = adapter.fetch_cdrs(FUSION_SERVICE, SINCE, UNTIL)
    assert (record.direction, record.number, record.billsec) == ("outbound", "15195550100", 65)
    assert math.isclose(record.start.timestamp(), 1763650000)
    assert json.dumps(record.raw)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("answer_stamp", "0001-01-01 00:00:00+14"),
        ("end_stamp", "9999-12-31 23:59:59-12"),
        ("start_epoch", "1e30"),
    ],
)
def test_a_fusionpbx_time_out_of_range_is_a_clear_error(fusion_env, column, value):
    row = _edit(GOOD_ROW, [(EXPORT_HEADER.index(column), value)])
    body = _csv_text([EXPORT_HEADER, row])
    adapter = fusion(lambda request: httpx.Response(200, text=body))
    with adapter, pytest.raises(VoipctlError, match=r"^fusion1: .* line 2: "):
        strict(adapter, adapter.fetch_cdrs(FUSION_SERVICE, SINCE, UNTIL))


def test_a_fusionpbx_billsec_beyond_any_call_is_a_clear_error(fusion_env):
    row = _edit(GOOD_ROW, [(EXPORT_HEADER.index("billsec"), "99999999999999999999")])
    body = _csv_text([EXPORT_HEADER, row])
    adapter = fusion(lambda request: httpx.Response(200, text=body))
    with adapter, pytest.raises(VoipctlError, match=r"^fusion1: .* line 2: "):
        strict(adapter, adapter.fetch_cdrs(FUSION_SERVICE, SINCE, UNTIL))


# --- FusionPBX database mode ---------------------------------------------------------------------

# A v_xml_cdr row as psycopg hands it over: the column types of FusionPBX's schema
# (uuid and text, numeric epochs and billsec, timestamptz stamps; source:
# fusionpbx/fusionpbx app/xml_cdr/app_config.php, as tests/fakes/fusionpbx_db.py
# declares it), every one possibly NULL, with any text PostgreSQL can hold (no NUL,
# no lone surrogate) and any numeric, NaN and infinities included.
_pg_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)
_pg_numeric = st.decimals(allow_nan=True, allow_infinity=True) | st.integers()
_pg_stamp = st.datetimes(timezones=st.just(UTC))
DB_FIELDS = {
    "xml_cdr_uuid": st.uuids().map(str),
    "domain_name": st.none() | _pg_text,
    "direction": st.none() | st.sampled_from(["outbound", "inbound", "local"]) | _pg_text,
    "leg": st.none() | st.sampled_from(["a", "b"]) | _pg_text,
    "caller_id_name": st.none() | _pg_text,
    "caller_id_number": st.none() | _pg_text,
    "caller_destination": st.none() | _pg_text,
    "destination_number": st.none() | st.just("15195550100") | _pg_text,
    "start_stamp": st.none() | _pg_stamp,
    "answer_stamp": st.none() | _pg_stamp,
    "end_stamp": st.none() | _pg_stamp,
    "start_epoch": st.none() | _pg_numeric,
    "answer_epoch": st.none() | _pg_numeric,
    "end_epoch": st.none() | _pg_numeric,
    "duration": st.none() | _pg_numeric,
    "billsec": st.none() | _pg_numeric,
    "hangup_cause": st.none() | _pg_text,
    "status": st.none() | _pg_text,
    "sip_call_id": st.none() | _pg_text,
    "extension": st.none() | st.sampled_from(["2112", "2113"]) | _pg_text,
}
GOOD_DB_ROW = {
    **{key: None for key in DB_FIELDS},
    "xml_cdr_uuid": "0b7f3c1e-8a52-4c3e-9d6e-1f2a3b4c5d6e",
    "direction": "outbound",
    "leg": "a",
    "caller_id_number": "2112",
    "destination_number": "15195550100",
    "start_stamp": SINCE,
    "answer_stamp": SINCE,
    "end_stamp": SINCE,
    "billsec": 61,
    "hangup_cause": "NORMAL_CLEARING",
    "extension": "2112",
}
# Any row at all, or mostly a good call of the service with some fields spoiled.
DB_ROW = st.fixed_dictionaries(DB_FIELDS) | st.fixed_dictionaries({}, optional=DB_FIELDS).map(
    lambda spoiled: {**GOOD_DB_ROW, **spoiled}
)


@FUZZ
@given(row=DB_ROW)
def test_any_fusionpbx_database_row_gives_a_call_nothing_or_one_clear_error(fusion_env, row):
    from voipctl.errors import ProviderDataError

    config = FusionPBXServer.model_validate({"type": "fusionpbx", "mode": "db"})
    adapter = FusionPBXAdapter("fusion1", config)
    dids = adapter._did_keys(FUSION_SERVICE)
    try:
        record = adapter._db_row_to_record(FUSION_SERVICE, dids, row)
    except ProviderDataError as exc:  # the pull sets the row aside by its uuid
        assert_clear(exc, "fusion1")
        event("set aside")
        return
    event("not this service's" if record is None else "a call")
    if record is not None:
        assert_storable([record])
        json.dumps(record.raw)  # what the pull stores as the provider's record
