"""FusionPBX through the command line: server check, pull-cdrs, suspend and unsuspend
against a real FusionPBX-shaped PostgreSQL database and a fake event socket on a real port."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from tests.fakes.esl_server import FakeEslServer
from voipctl.store.models import Cdr

TENANT = "mcon.wat7.ictvoip.ca"
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
DB_PASSWORD = "Db-Pa55word-never-shown"
ESL_PASSWORD = "Esl-Pa55word-never-shown"


@pytest.fixture
def pbx(fusion_db):
    fusion_db.add_domain(TENANT)
    ext = {x: fusion_db.add_extension(TENANT, x) for x in ("2112", "2113", "2199")}
    fusion_db.gw = fusion_db.add_gateway(TENANT, "mcon-trunk")
    for minute in range(5):
        fusion_db.add_cdr(TENANT, extension_uuid=ext["2112"], start=T0 + timedelta(minutes=minute))
    fusion_db.add_cdr(TENANT, extension_uuid=ext["2199"], start=T0)  # not billed
    fusion_db.add_cdr(TENANT, extension_uuid=ext["2112"], start=T0, leg="b")
    fusion_db.add_cdr(
        TENANT,
        direction="inbound",
        caller_destination="+15192229000",
        destination_number="2113",
        start=T0 + timedelta(minutes=9),
    )
    return fusion_db


@pytest.fixture
def esl(pbx):
    # FreeSWITCH runs the enabled gateways of the database; a rescan reads it again.
    with FakeEslServer(password=ESL_PASSWORD, sofia=pbx.sofia()) as server:
        yield server


@pytest.fixture
def config_file(pbx, esl, tmp_path, monkeypatch):
    url = make_url(pbx.url).set(
        password=DB_PASSWORD
    )  # the test server trusts; the URL still has one
    monkeypatch.setenv("FUSION1_DB_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("FUSION1_ESL_PASSWORD", ESL_PASSWORD)
    path = tmp_path / "fusion.toml"
    path.write_text(
        f"""
[servers.fusion1]
type = "fusionpbx"
mode = "db"
db_url_env = "FUSION1_DB_URL"
esl_host = "127.0.0.1"
esl_port = {esl.port}
esl_password_env = "FUSION1_ESL_PASSWORD"
suspend = "gateway"
timeout_s = 3
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def service_id(cli, config_file, pbx):
    assert cli("product", "add", "Metered", config=config_file).exit_code == 0
    client = cli(
        "client", "add", "42", "--first-name", "Ada", "--last-name", "Lovelace",
        "--email", "ada@example.com", "--has-voip-service", config=config_file,
    )  # fmt: skip
    assert client.exit_code == 0, client.output
    added = cli(
        "service", "add", "--client", "42", "--product", "Metered", "--server", "fusion1",
        "--domain", f"{TENANT} | 5192229000", "--billed", "2112 | 2113",
        "--gateway", pbx.gw.upper(), "--format", "json", config=config_file,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    return json.loads(added.stdout)["id"]


def assert_no_secret(*outputs: str) -> None:
    for text in outputs:
        assert DB_PASSWORD not in text and ESL_PASSWORD not in text


def test_check_pull_suspend_unsuspend(cli, store, config_file, service_id, pbx, esl):
    check = cli("-vv", "server", "check", "fusion1", config=config_file)
    assert check.exit_code == 0, check.output
    assert "fusion1" in check.stdout and "v_xml_cdr" in check.stdout
    assert "auth accepted" in check.stdout

    window = ("--since", T0.isoformat(), "--until", (T0 + timedelta(hours=1)).isoformat())
    first = cli("-vv", "pull-cdrs", "--server", "fusion1", *window, config=config_file)
    assert first.exit_code == 0, first.output
    with store.transaction() as session:
        rows = session.execute(select(Cdr.direction, func.count()).group_by(Cdr.direction)).all()
    assert dict(rows) == {"outbound": 5, "inbound": 1}
    again = cli("pull-cdrs", "--server", "fusion1", *window, config=config_file)
    assert again.exit_code == 0, again.output
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Cdr)) == 6

    suspended = cli("-vv", "suspend", "--service", service_id, "--reason", "t", config=config_file)
    assert suspended.exit_code == 0, suspended.output
    assert pbx.gateway_enabled(pbx.gw) is False
    assert f"api sofia profile external killgw {pbx.gw}" in esl.wait_for(2)

    restored = cli("-vv", "unsuspend", "--service", service_id, config=config_file)
    assert restored.exit_code == 0, restored.output
    assert pbx.gateway_enabled(pbx.gw) is True
    assert "api sofia profile external rescan" in esl.wait_for(4)
    assert_no_secret(check.output, first.output, suspended.output, restored.output)


def test_a_refused_event_socket_password_suspends_nothing(
    cli, config_file, service_id, pbx, esl, monkeypatch
):
    monkeypatch.setenv("FUSION1_ESL_PASSWORD", "a-wrong-password-9")
    result = cli("-vv", "suspend", "--service", service_id, "--reason", "t", config=config_file)
    assert result.exit_code == 1
    assert "fusion1" in result.stderr and "credentials were refused" in result.stderr
    assert "a-wrong-password-9" not in result.output
    assert_no_secret(result.output)
    assert pbx.gateway_enabled(pbx.gw) is True
    assert esl.api_commands == []


@pytest.mark.parametrize("stall", ["connect", "lock"])
def test_a_stalled_fusionpbx_database_fails_that_server_alone(
    cli, store, config_file, service_id, pbx, tmp_path, monkeypatch, stall
):
    """A second FusionPBX whose database accepts the connection and never speaks, or
    whose v_xml_cdr another session keeps locked: pull-cdrs names it and its limit in
    one line within timeout_s, and still pulls fusion1 (pulled after it, name order)."""
    import socket
    import time

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    listener = socket.create_server(("127.0.0.1", 0))
    if stall == "connect":
        stalled_url = f"postgresql://voipctl:pw@127.0.0.1:{listener.getsockname()[1]}/fusionpbx"
        where = "127.0.0.1/fusionpbx"
        reason = "could not connect within 1 s (servers.a_stalled.timeout_s)"
    else:
        # The same FusionPBX database under a second name, its table locked meanwhile.
        stalled_url = make_url(pbx.url).render_as_string(hide_password=False)
        url = make_url(pbx.url)
        where = f"{url.host}/{url.database}"
        reason = "no answer within 1 s (servers.a_stalled.timeout_s)"
    monkeypatch.setenv("STALLED_DB_URL", stalled_url)
    with config_file.open("a", encoding="utf-8") as fh:
        fh.write(
            '\n[servers.a_stalled]\ntype = "fusionpbx"\nmode = "db"\n'
            'db_url_env = "STALLED_DB_URL"\nsuspend = "domain"\ntimeout_s = 1\n'
        )
    added = cli(
        "service", "add", "--client", "42", "--product", "Metered", "--server", "a_stalled",
        "--domain", "stalled.example.com | 5195550111", config=config_file,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    window = ("--since", T0.isoformat(), "--until", (T0 + timedelta(hours=1)).isoformat())
    # Connect stall: every server at once. Lock: the stalled name alone (fusion1 reads the
    # same, locked table), then every server once the lock is gone.
    only = ("--server", "a_stalled") if stall == "lock" else ()
    holder = create_engine(
        make_url(pbx.url).set(drivername="postgresql+psycopg"), poolclass=NullPool
    )
    try:
        with holder.connect() as held:
            if stall == "lock":
                held.execute(text("LOCK TABLE v_xml_cdr IN ACCESS EXCLUSIVE MODE"))
            began = time.monotonic()
            pulled = cli("pull-cdrs", *only, *window, config=config_file)
            took = time.monotonic() - began
            held.rollback()
    finally:
        holder.dispose()
        listener.close()
    assert pulled.exit_code == 1, pulled.output
    assert pulled.stderr == (
        f"voipctl: error: a_stalled: FusionPBX database {where}: reading v_xml_cdr of "
        f"stalled.example.com: {reason}\n"
    )
    assert took < 15, took
    if stall == "lock":
        after = cli("pull-cdrs", *window, config=config_file)
        assert after.exit_code == 0, after.output
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Cdr)) == 6  # fusion1's calls
