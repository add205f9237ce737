"""FusionPBX `mode = "db"` against a real PostgreSQL holding FusionPBX's tables."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.support.fusionpbx_env import OTHER, TENANT, db_mode_config
from tests.support.fusionpbx_env import service as fusion_service
from voipctl.errors import ConfigError, ProviderAuthError, ProviderError, ProviderUnavailable
from voipctl.providers import adapter_for
from voipctl.providers.base import ServiceInfo
from voipctl.providers.fusionpbx.adapter import STREAM_ROWS, FusionPBXAdapter

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SINCE, UNTIL = T0, T0 + timedelta(hours=1)


def service(**overrides) -> ServiceInfo:
    # A second DID as an operator may type it (+1, spaces): inbound calls to it must match.
    return fusion_service(**{"dids": ("5192229000", "+1 519 222 9001"), **overrides})


@pytest.fixture
def pbx(fusion_db):
    """A tenant with billed extensions 2112/2113, an unbilled 2199, and a second tenant."""
    fusion_db.add_domain(TENANT)
    fusion_db.add_domain(OTHER)
    fusion_db.ext = {x: fusion_db.add_extension(TENANT, x) for x in ("2112", "2113", "2199")}
    fusion_db.other_ext = fusion_db.add_extension(OTHER, "2112")
    return fusion_db


@pytest.fixture
def adapter(pbx, monkeypatch):
    with adapter_for("fusion1", db_mode_config(monkeypatch, pbx.url)) as fusion:
        yield fusion


def fetch(adapter, svc=None, since=SINCE, until=UNTIL):
    return list(adapter.fetch_cdrs(svc or service(), since, until))


def test_registry_builds_the_fusionpbx_adapter(adapter):
    assert isinstance(adapter, FusionPBXAdapter)


def test_outbound_inbound_local_rules_tenant_and_legs(pbx, adapter):
    ext = pbx.ext
    at = T0 + timedelta(minutes=5)
    out = pbx.add_cdr(TENANT, extension_uuid=ext["2112"], destination_number="15195550100",
                      start=at, billsec=Decimal("59.2"))  # fmt: skip
    pbx.add_cdr(TENANT, extension_uuid=ext["2112"], destination_number="15195550100",
                start=at, leg="b")  # fmt: skip
    pbx.add_cdr(TENANT, extension_uuid=ext["2199"], destination_number="15195550101", start=at)
    pbx.add_cdr(OTHER, extension_uuid=pbx.other_ext, destination_number="15195550102", start=at)
    inbound_plus = pbx.add_cdr(
        TENANT, direction="inbound", extension_uuid=ext["2113"], caller_id_number="4165550199",
        caller_destination="+15192229000", destination_number="2113",
        start=at + timedelta(minutes=1), billsec=30,
    )  # fmt: skip
    inbound_11 = pbx.add_cdr(
        TENANT, direction="inbound", caller_destination="15192229001",
        destination_number="2113", start=at + timedelta(minutes=2), answered=False,
    )  # fmt: skip
    pbx.add_cdr(TENANT, direction="inbound", caller_destination="5195550000",
                destination_number="2113", start=at + timedelta(minutes=3))  # fmt: skip
    local = pbx.add_cdr(TENANT, direction="local", extension_uuid=ext["2113"],
                        destination_number="2112", start=at + timedelta(minutes=4))  # fmt: skip
    pbx.add_cdr(TENANT, direction="local", extension_uuid=ext["2199"],
                destination_number="2112", start=at + timedelta(minutes=4))  # fmt: skip

    records = fetch(adapter)

    assert [r.provider_id for r in records] == [out, inbound_plus, inbound_11, local]
    o, i1, i2, loc = records
    assert (o.direction, o.number, o.extension, o.billsec) == (
        "outbound",
        "15195550100",
        "2112",
        60,
    )
    assert o.caller == "5192229000" and o.hangup_cause == "NORMAL_CLEARING"
    assert o.start == at and o.answer == at + timedelta(seconds=3)
    assert o.end == o.answer + timedelta(seconds=59.2)
    assert o.raw["xml_cdr_uuid"] == out and o.raw["billsec"] == "59.2" and o.raw["leg"] == "a"
    assert (i1.direction, i1.number, i1.caller, i1.billsec) == (
        "inbound",
        "+15192229000",
        "4165550199",
        30,
    )
    assert (i2.number, i2.billsec, i2.answer, i2.hangup_cause) == (
        "15192229001",
        0,
        None,
        "NO_ANSWER",
    )
    assert (loc.direction, loc.number, loc.extension) == ("local", "2112", "2113")
    assert all(r.start.tzinfo is UTC for r in records)


def test_empty_billed_field_is_the_whole_tenant(pbx, adapter):
    for extension in ("2112", "2199"):
        pbx.add_cdr(TENANT, extension_uuid=pbx.ext[extension], start=T0)
    pbx.add_cdr(OTHER, extension_uuid=pbx.other_ext, start=T0)
    records = fetch(adapter, service(extensions=()))
    assert sorted(r.extension for r in records) == ["2112", "2199"]


def test_inbound_did_forms_match_both_ways(pbx, adapter):
    forms = ["5192229000", "15192229000", "+15192229000", "+1 (519) 222-9000"]
    for minute, number in enumerate(forms):
        pbx.add_cdr(TENANT, direction="inbound", caller_destination=number,
                    destination_number="2112", start=T0 + timedelta(minutes=minute))  # fmt: skip
    for did in ("5192229000", "+15192229000", "15192229000"):
        records = fetch(adapter, service(main_did=did, dids=(did,)))
        assert [r.number for r in records] == forms, did


def test_time_window_is_half_open(pbx, adapter):
    ext = pbx.ext["2112"]
    before = pbx.add_cdr(TENANT, extension_uuid=ext, start=SINCE - timedelta(seconds=1))
    first = pbx.add_cdr(TENANT, extension_uuid=ext, start=SINCE)
    last = pbx.add_cdr(TENANT, extension_uuid=ext, start=UNTIL - timedelta(microseconds=1))
    at_until = pbx.add_cdr(TENANT, extension_uuid=ext, start=UNTIL)
    assert [r.provider_id for r in fetch(adapter)] == [first, last]
    later = fetch(adapter, since=UNTIL, until=UNTIL + timedelta(hours=1))
    assert [r.provider_id for r in later] == [at_until]
    wide = fetch(adapter, since=SINCE - timedelta(seconds=1))
    assert [r.provider_id for r in wide] == [before, first, last]


def test_streams_many_rows_through_a_server_side_cursor(pbx, adapter):
    count = STREAM_ROWS * 6 + 7
    pbx.add_many_cdrs(TENANT, count, extension_uuid=pbx.ext["2112"], start=T0)
    records = adapter.fetch_cdrs(service(), T0, T0 + timedelta(days=1))
    first = next(records)
    # While the first rows are in hand, the server is still holding the cursor:
    # the rows come in FETCH batches, not as one result set.
    engine = create_engine(pbx.url, poolclass=NullPool)
    with engine.connect() as conn:
        queries = conn.execute(
            text(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        ).scalars()
        assert any(q.lstrip().upper().startswith("FETCH") for q in queries)
    engine.dispose()
    rest = list(records)
    assert len(rest) + 1 == count
    starts = [first.start, *(r.start for r in rest)]
    assert starts == sorted(starts) and starts[-1] == T0 + timedelta(seconds=count - 1)
    assert len({r.provider_id for r in rest}) == count - 1


def test_stopping_early_releases_the_connection(pbx, adapter):
    pbx.add_many_cdrs(TENANT, 50, extension_uuid=pbx.ext["2112"], start=T0)
    records = adapter.fetch_cdrs(service(), T0, T0 + timedelta(days=1))
    next(records)
    records.close()
    active = pbx.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid()"
    )
    assert active == 0


def test_check_names_the_database_tables_and_event_socket(pbx, esl_server, monkeypatch):
    config = db_mode_config(monkeypatch, pbx.url, esl_port=esl_server.port)
    with adapter_for("fusion1", config) as fusion:
        answer = fusion.check()
    assert (
        re.search(r"\(PostgreSQL \d+[.\d]*", answer)
        and "v_xml_cdr, v_extensions, v_gateways readable" in answer
    )
    assert f"event socket 127.0.0.1:{esl_server.port}: auth accepted (FreeSWITCH Version" in answer


def test_check_on_a_database_that_is_not_fusionpbx(pg_server, monkeypatch):
    config = db_mode_config(monkeypatch, pg_server.create("notfusion"), suspend="domain")
    with adapter_for("fusion1", config) as fusion, pytest.raises(ProviderError) as caught:
        fusion.check()
    assert "table v_xml_cdr not found" in str(caught.value)
    assert str(caught.value).startswith("fusion1: ")


def test_unreachable_database_hides_the_password(monkeypatch):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://voipctl:hunter2secret@127.0.0.1:{port}/fusionpbx"
    config = db_mode_config(monkeypatch, url, timeout_s=2)
    with adapter_for("fusion1", config) as fusion, pytest.raises(ProviderUnavailable) as caught:
        list(fusion.fetch_cdrs(service(), SINCE, UNTIL))
    message = str(caught.value)
    assert message.startswith("fusion1: FusionPBX database 127.0.0.1/fusionpbx: reading v_xml_cdr")
    assert "hunter2secret" not in message


def test_a_url_that_is_not_postgresql_is_a_config_error(monkeypatch):
    config = db_mode_config(monkeypatch, "mysql://u:p@localhost/fusionpbx")
    with adapter_for("fusion1", config) as fusion, pytest.raises(ConfigError) as caught:
        list(fusion.fetch_cdrs(service(), SINCE, UNTIL))
    assert "servers.fusion1.db_url_env" in str(caught.value) and ":p@" not in str(caught.value)


def test_a_plain_postgresql_url_uses_psycopg(pbx, adapter, monkeypatch):
    plain = pbx.url.replace("postgresql+psycopg://", "postgresql://")
    config = db_mode_config(monkeypatch, plain)
    pbx.add_cdr(TENANT, extension_uuid=pbx.ext["2112"], start=T0)
    with adapter_for("fusion1", config) as fusion:
        assert len(list(fusion.fetch_cdrs(service(), SINCE, UNTIL))) == 1


def test_two_services_read_at_once(pbx, adapter):
    """Generators of two services interleave, each on its own connection."""
    pbx.add_many_cdrs(TENANT, 30, extension_uuid=pbx.ext["2112"], start=T0)
    a = adapter.fetch_cdrs(service(), T0, T0 + timedelta(days=1))
    b = adapter.fetch_cdrs(service(id=8), T0, T0 + timedelta(days=1))
    pairs = list(zip(a, b, strict=True))
    assert len(pairs) == 30 and all(x.provider_id == y.provider_id for x, y in pairs)


def test_older_schema_without_status_and_caller_destination(pbx, adapter):
    pbx.execute("ALTER TABLE v_xml_cdr DROP COLUMN caller_destination, DROP COLUMN status")
    # Before caller_destination existed, an inbound a-leg's destination_number was the DID.
    pbx.execute(
        "INSERT INTO v_xml_cdr (xml_cdr_uuid, domain_name, direction, leg, caller_id_number,"
        " destination_number, start_stamp, billsec) VALUES (gen_random_uuid(), :t, 'inbound',"
        " 'a', '4165550199', '+15192229000', :start, 12.5)",
        t=TENANT,
        start=T0,
    )
    [record] = fetch(adapter)
    assert (record.direction, record.number, record.billsec) == ("inbound", "+15192229000", 13)
    assert record.raw["status"] is None and record.raw["caller_destination"] is None


def test_an_unknown_role_is_refused_credentials(pbx, monkeypatch):
    url = make_url(pbx.url).set(username="no_such_role_voipctl", password="Zz-secret-9")
    config = db_mode_config(monkeypatch, url.render_as_string(hide_password=False))
    with adapter_for("fusion1", config) as fusion, pytest.raises(ProviderAuthError) as caught:
        fusion.check()
    assert "the credentials were refused" in str(caught.value)
    assert "Zz-secret-9" not in str(caught.value)


def test_a_database_that_does_not_exist_names_the_variable(pbx, monkeypatch):
    url = make_url(pbx.url).set(database="voipctl_no_such_db_x")
    config = db_mode_config(monkeypatch, url.render_as_string(hide_password=False))
    with adapter_for("fusion1", config) as fusion, pytest.raises(ProviderError) as caught:
        fusion.check()
    assert not isinstance(caught.value, ProviderUnavailable | ProviderAuthError)
    assert 'database "voipctl_no_such_db_x" does not exist' in str(caught.value)
    assert "(check FUSION1_DB_URL)" in str(caught.value)


def test_a_row_that_cannot_be_read_is_set_aside_by_its_uuid(pbx, adapter):
    ext = pbx.ext["2112"]
    good = pbx.add_cdr(TENANT, extension_uuid=ext, start=SINCE)
    bad = pbx.add_cdr(TENANT, extension_uuid=ext, start=SINCE + timedelta(minutes=1), billsec=-5)
    records = fetch(adapter)
    assert [type(r).__name__ for r in records] == ["CallRecord", "Rejected"]
    assert records[0].provider_id == good
    assert records[1].locator == str(bad)
    assert records[1].reason.startswith(f"v_xml_cdr {bad}: billsec")
    assert f'"xml_cdr_uuid": "{bad}"' in records[1].raw


def test_a_database_that_accepts_and_never_speaks_fails_within_the_limit(monkeypatch):
    """A port that accepts the TCP connection and then says nothing (no PostgreSQL
    greeting): libpq's connect_timeout ends the wait, one line names the limit."""
    import socket
    import time

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        config = db_mode_config(
            monkeypatch, f"postgresql://voipctl:pw@127.0.0.1:{port}/fusionpbx", timeout_s=1
        )
        began = time.monotonic()
        with adapter_for("fusion1", config) as fusion, pytest.raises(ProviderUnavailable) as caught:
            list(fusion.fetch_cdrs(service(), SINCE, UNTIL))
        assert time.monotonic() - began < 10
    finally:
        listener.close()
    assert str(caught.value) == (
        f"fusion1: FusionPBX database 127.0.0.1/fusionpbx: reading v_xml_cdr of {TENANT}: "
        "could not connect within 1 s (servers.fusion1.timeout_s)"
    )


def test_a_read_behind_a_held_lock_fails_within_the_limit(pbx, monkeypatch):
    """Another session holds a lock on v_xml_cdr: statement_timeout ends the read."""
    import time

    holder = create_engine(
        make_url(pbx.url).set(drivername="postgresql+psycopg"), poolclass=NullPool
    )
    try:
        with holder.connect() as held:
            held.execute(text("LOCK TABLE v_xml_cdr IN ACCESS EXCLUSIVE MODE"))
            config = db_mode_config(monkeypatch, pbx.url, timeout_s=1)
            began = time.monotonic()
            with (
                adapter_for("fusion1", config) as fusion,
                pytest.raises(ProviderUnavailable) as caught,
            ):
                list(fusion.fetch_cdrs(service(), SINCE, UNTIL))
            assert time.monotonic() - began < 10
            held.rollback()
    finally:
        holder.dispose()
    host_db = re.sub(r"^.*@([^:/]+)(?::\d+)?/", r"\1/", make_url(pbx.url).render_as_string())
    assert str(caught.value) == (
        f"fusion1: FusionPBX database {host_db}: reading v_xml_cdr of {TENANT}: "
        "no answer within 1 s (servers.fusion1.timeout_s)"
    )
