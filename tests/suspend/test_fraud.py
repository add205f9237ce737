"""The fraud guard (docs/fraud.md) inside autosuspend, against real parts.

Vodia: the provider simulator on a real port. FusionPBX: `v_gateways` in a real
PostgreSQL and the fake event socket (its `hupall` answers with FreeSWITCH's
text). Emails: a real SMTP server on localhost. Calls are stored and rated rows
dated relative to now, since the limits look at the last hour and day.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert

from tests.support.smtp_sink import SmtpSink
from tests.support.suspend_env import TRUNK_PATH, SuspendEnv
from voipctl.sim.server import SimConfig, Simulator
from voipctl.store.models import Cdr, Client

_n = itertools.count()
NOC = "noc@example.net"


@pytest.fixture
def sim():
    with Simulator(SimConfig(days=1, calls_per_day=1)) as server:
        yield server


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


@pytest.fixture
def env(tmp_path, store, monkeypatch, sim, sink):
    return SuspendEnv(tmp_path, store, monkeypatch, sim=sim, sink=sink)


@pytest.fixture
def env_full(tmp_path, store, monkeypatch, sim, sink, fusion_db, esl_server):
    return SuspendEnv(
        tmp_path, store, monkeypatch, sim=sim, sink=sink, fusion=fusion_db, esl=esl_server
    )


def guard(env: SuspendEnv, **limits: str) -> None:
    """Append a [fraud] table to the test's configuration."""
    lines = ["", "[fraud]"]
    for name, value in limits.items():
        lines.append(f"{name} = {value}")
    env.config.write_text(env.config.read_text() + "\n".join(lines) + "\n")


def call(
    env: SuspendEnv,
    service_id: int,
    cost: str,
    *,
    ago: timedelta = timedelta(minutes=10),
    number: str = "15195550100",
    direction: str = "outbound",
) -> None:
    """One stored, rated call of client 42's service that started `ago` before now."""
    start = datetime.now(UTC) - ago
    i = next(_n)
    with env.store.transaction() as s:
        s.execute(
            insert(Cdr),
            [
                {
                    "server": "vodia1",
                    "provider_id": f"fraud-{service_id}-{i}",
                    "service_id": service_id,
                    "client_id": 42,
                    "direction": direction,
                    "number": number,
                    "normalized": number,
                    "start": start,
                    "billsec": 60,
                    "pulled_at": start,
                    "status": "rated",
                    "cost": Decimal(cost),
                    "billable_seconds": 60,
                    "rerate_count": 0,
                }
            ],
        )


def history(env: SuspendEnv, service_id: int, per_day: str) -> None:
    """One call a day over the 30 days before the last hour (outside the day window)."""
    for day in range(1, 31):
        call(env, service_id, per_day, ago=timedelta(days=day, minutes=30))


def fraud_events(env: SuspendEnv, service_id: int):
    return [e for e in env.events(service_id) if e[2] == "fraud guard"]


# (limit, its configuration, the calls that reach it exactly, the call one below, reason)
LIMITS = [
    (
        "max_spend_per_hour",
        {"max_spend_per_hour": '"10.00"'},
        lambda env, sid, last: (call(env, sid, "4.00"), call(env, sid, last)),
        ("6.00", "5.99"),
        "fraud guard: max_spend_per_hour 10.00",
    ),
    (
        "max_spend_per_day",
        {"max_spend_per_day": '"20.00"'},
        lambda env, sid, last: (
            call(env, sid, "15.00", ago=timedelta(hours=5)),
            call(env, sid, last, ago=timedelta(hours=23)),
            # A call of the day before does not count.
            call(env, sid, "50.00", ago=timedelta(hours=25)),
        ),
        ("5.00", "4.99"),
        "fraud guard: max_spend_per_day 20.00",
    ),
    (
        "max_risk_calls_per_hour",
        {"max_risk_calls_per_hour": "3"},
        lambda env, sid, last: (
            call(env, sid, "0.10", number="5372001234"),  # Cuba (53): a default risk prefix
            call(env, sid, "0.10", number="3712001234"),  # Latvia (371)
            # Not counted: a number outside the list, an inbound call from a risk
            # prefix, a risk call of more than an hour ago.
            call(env, sid, "0.10", number="15195550100"),
            call(env, sid, "0.00", number="5372009999", direction="inbound"),
            call(env, sid, "0.10", number="5372001234", ago=timedelta(minutes=61)),
            call(env, sid, "0.10", number=last) if last else None,
        ),
        ("18095550100", ""),  # Dominican Republic (1809)
        "fraud guard: max_risk_calls_per_hour 3",
    ),
    (
        "trailing_multiple",
        {"trailing_multiple": '"3"'},
        lambda env, sid, last: (history(env, sid, "48.00"), call(env, sid, last)),
        ("6.00", "5.99"),  # average 30 x 48.00 / 720 h = 2.00 an hour; 3 x 2.00
        "fraud guard: trailing_multiple 6.00 (3 x hourly average 2.00)",
    ),
]


@pytest.mark.parametrize(
    ("limit", "settings", "make", "lasts", "reason"), LIMITS, ids=[r[0] for r in LIMITS]
)
def test_each_limit_trips_at_its_figure_and_not_below(
    cli, env, limit, settings, make, lasts, reason
):
    guard(env, **settings)
    # Unbilled calls count against available credit: enough that only the guard acts.
    env.client(42, credit="5000", first_name="Grace")
    service_id = env.vodia_service(42)
    at, below = lasts

    make(env, service_id, below)
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    assert env.vodia_puts() == [], r.stdout
    assert not env.service(service_id).suspended

    if limit == "max_risk_calls_per_hour":
        call(env, service_id, "0.10", number=at)
    else:
        # The difference that brings the figure to the limit exactly.
        call(env, service_id, str(Decimal(at) - Decimal(below)))
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    service = env.service(service_id)
    assert (service.suspended, service.suspended_by, service.suspend_reason) == (
        True,
        "fraud guard",
        reason,
    )
    assert env.vodia_puts() == [TRUNK_PATH] and env.trunk_state() == {"dis": "true"}
    assert f"service {service_id} of client 42 on vodia1: suspended (" in r.stdout
    assert f"held: {reason}" in r.stdout
    assert fraud_events(env, service_id) == [(service_id, "suspend", "fraud guard", True)]


def test_a_hold_survives_a_top_up_and_autosuspend_runs_until_the_operator_releases_it(cli, env):
    guard(env, max_spend_per_hour='"10.00"')
    env.client(42, credit="0.50")
    service_id = env.vodia_service(42)
    call(env, service_id, "10.00")
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.service(service_id).suspended_by == "fraud guard"

    # A top-up: the decision table alone would restore the service; the hold stays.
    with env.store.transaction() as s:
        from tests.support.billing_data import topup

        topup(s, 42, "100.00", "fraud-topup")
    for _ in range(2):
        r = cli("autosuspend", "-v", config=env.config)
        assert r.exit_code == 0, r.output
    service = env.service(service_id)
    assert (service.suspended, service.suspended_by) == (True, "fraud guard")
    assert env.vodia_puts() == [TRUNK_PATH]  # the one suspend, nothing since
    assert env.trunk_state() == {"dis": "true"}

    # Only the operator releases it.
    r = cli("unsuspend", "--service", service_id, "--reason", "calls explained", config=env.config)
    assert r.exit_code == 0, r.output
    assert not env.service(service_id).suspended and env.trunk_state() == {"dis": "false"}

    # The calls before the release are not counted again: no new stop.
    r = cli("autosuspend", config=env.config)
    assert r.exit_code == 0, r.output
    assert not env.service(service_id).suspended
    assert env.events(service_id) == [
        (service_id, "suspend", "fraud guard", True),
        (service_id, "unsuspend", "operator", True),
    ]


def test_a_credit_suspension_becomes_a_fraud_hold_without_a_second_lever_call(cli, env):
    guard(env, max_spend_per_hour='"10.00"')
    env.client(42, credit="0")
    service_id = env.vodia_service(42)
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.service(service_id).suspended_by == "autosuspend"
    call(env, service_id, "12.00")
    assert cli("autosuspend", config=env.config).exit_code == 0
    service = env.service(service_id)
    assert (service.suspended_by, service.suspend_reason) == (
        "fraud guard",
        "fraud guard: max_spend_per_hour 12.00",
    )
    assert env.vodia_puts() == [TRUNK_PATH]


@pytest.mark.parametrize("notify_client", [False, True])
def test_the_operator_is_mailed_once_and_the_client_only_if_configured(
    cli, env, sink, notify_client
):
    guard(
        env,
        max_spend_per_hour='"10.00"',
        **({"notify_client": "true"} if notify_client else {}),
    )
    env.client(42, credit="500", first_name="Grace", last_name="Hopper")
    vodia = env.vodia_service(42)
    lesnet = env.lesnet_service(42)  # a manual lever: its instructions mail as well
    call(env, vodia, "7.00", number="5372001234")
    call(env, vodia, "3.50", number="3712001234", ago=timedelta(minutes=20))

    r = cli("autosuspend", config=env.config)
    assert r.exit_code == 0, r.output
    assert env.service(vodia).suspended_by == "fraud guard"
    assert env.service(lesnet).suspended_by == "fraud guard"
    mails = [(m["To"], " ".join(m["Subject"].split())) for m in sink.messages]
    assert [m for m in mails if m[0] == NOC] == [
        (NOC, "Fraud guard stopped client 42 (Grace Hopper): max_spend_per_hour 10.50"),
        (NOC, f"Manual suspend needed: service {lesnet} of client 42 on lesnet"),
    ]
    fraud_mail = [m for m in sink.messages if "Fraud guard" in m["Subject"]]
    body = fraud_mail[0].get_payload(decode=True).decode()
    assert "Limit: max_spend_per_hour (set to 10.00)" in body
    assert "Figure: 10.50" in body
    lines = [line for line in body.splitlines() if "UTC  outbound" in line]
    assert [line.split("  ")[2] for line in lines] == ["5372001234", "3712001234"]
    assert "7.0000" in lines[0] and "3.5000" in lines[1]
    client_mail = [m for m in sink.messages if m["To"] == "client42@example.com"]
    if notify_client:
        assert [" ".join(m["Subject"].split()) for m in client_mail] == [
            "Your VoIP service has been suspended for unusual calling"
        ]
    else:
        assert client_mail == []

    total = len(sink.messages)
    call(env, vodia, "5.00")  # more spend while held: not a new stop
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert len(sink.messages) == total


def test_a_large_steady_customer_is_not_cut_by_the_trailing_rule(cli, env):
    # A flat 10.00 an hour would cut this customer; its own average is 20.00 an hour.
    guard(env, max_spend_per_hour='"10.00"', trailing_multiple='"3"')
    env.client(42, credit="50000")
    service_id = env.vodia_service(42)
    history(env, service_id, "480.00")  # 30 x 480.00 / 720 h = 20.00 an hour
    call(env, service_id, "25.00")  # its usual hour, and then some
    r = cli("autosuspend", config=env.config)
    assert r.exit_code == 0, r.output
    assert not env.service(service_id).suspended and env.vodia_puts() == []

    r = cli("fraud", "report", "--format", "json", config=env.config)
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert row["hour_spend"] == "25.00"
    assert (row["hour_limit"], row["hour_limit_from"]) == ("60.00", "trailing_multiple")
    assert row["hourly_average"] == "20.00" and row["hour_percent"] == "41.7"
    assert row["tripped"] is None

    call(env, service_id, "35.00")  # 60.00 in the hour: three times its usual
    r = cli("autosuspend", config=env.config)
    assert r.exit_code == 0, r.output
    assert env.service(service_id).suspend_reason == (
        "fraud guard: trailing_multiple 60.00 (3 x hourly average 20.00)"
    )


def test_a_new_client_without_history_is_left_to_the_flat_limits(cli, env):
    guard(env, trailing_multiple='"3"')
    env.client(42, credit="500")
    service_id = env.vodia_service(42)
    call(env, service_id, "40.00")
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert not env.service(service_id).suspended


def test_overrides_per_product_and_client(cli, env):
    guard(env, max_spend_per_hour='"10.00"')
    env.client(42, credit="500")
    service_id = env.vodia_service(42)
    call(env, service_id, "15.00")
    r = cli("fraud", "set", "--product", env.product_id, "max_spend_per_hour=20", config=env.config)
    assert (r.exit_code, r.stdout) == (
        0,
        f"product {env.product_id}: fraud overrides max_spend_per_hour=20\n",
    )
    r = cli("fraud", "set", "--client", "42", "max_spend_per_hour=", config=env.config)
    assert (r.exit_code, r.stdout) == (0, "client 42: fraud overrides max_spend_per_hour=\n")
    call(env, service_id, "15.00")  # 30.00: above [fraud]'s and the product's
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert not env.service(service_id).suspended  # the client's override disabled it

    r = cli("fraud", "set", "--client", "42", "max_spend_per_hour=inherit", config=env.config)
    assert (r.exit_code, r.stdout) == (0, "client 42: no fraud overrides ([fraud] applies)\n")
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.service(service_id).suspend_reason == "fraud guard: max_spend_per_hour 30.00"


def test_fraud_set_refuses_bad_input_with_one_line(cli, env):
    env.client(42)
    r = cli("fraud", "set", "--client", "42", "max_spend=5", config=env.config)
    assert r.exit_code == 2
    assert r.stderr == (
        "voipctl: error: unknown limit 'max_spend' (limits: max_spend_per_hour, "
        "max_spend_per_day, risk_prefixes, max_risk_calls_per_hour, trailing_multiple)\n"
    )
    r = cli("fraud", "set", "--client", "42", "risk_prefixes=53,+1x", config=env.config)
    assert r.exit_code == 1
    assert (
        "client 42: fraud.risk_prefixes:" in r.stderr and "'+1x' is not a number prefix" in r.stderr
    )
    r = cli("fraud", "set", "--client", "7", "max_spend_per_day=5", config=env.config)
    assert (r.exit_code, r.stderr) == (2, "voipctl: error: no client 7\n")
    with env.store.transaction() as s:
        assert s.get(Client, 42).fraud is None


def test_a_bad_fraud_configuration_is_one_line(cli, env):
    guard(env, max_spend_per_hour='"ten"')
    r = cli("autosuspend", config=env.config)
    assert r.exit_code == 2
    assert r.stderr == (
        f"voipctl: error: {env.config}: fraud.max_spend_per_hour: 'ten' is not a number, "
        "got 'ten'\n"
    )


def test_report_table_and_explain_name_the_limits(cli, env):
    guard(env, max_spend_per_hour='"10.00"', max_spend_per_day='"100.00"')
    env.client(42, credit="500")
    service_id = env.vodia_service(42)
    call(env, service_id, "4.00")
    r = cli("fraud", "report", config=env.config)
    assert r.exit_code == 0, r.output
    header, rule, row = r.stdout.splitlines()
    assert header.split() == [
        "client", "hour", "spend", "hour", "limit", "from", "%", "30-day", "avg/h",
        "day", "spend", "day", "limit", "%", "risk", "calls/h", "limit", "%", "tripped",
    ]  # fmt: skip
    assert row.split() == [
        "42", "4.00", "10.00", "max_spend_per_hour", "40.0", "4.00", "100.00", "4.0", "0",
    ]  # fmt: skip

    call(env, service_id, "6.00")
    assert cli("autosuspend", config=env.config).exit_code == 0
    with env.store.transaction() as s:
        from sqlalchemy import select

        cdr_id = s.scalar(select(Cdr.id).where(Cdr.cost == Decimal("6.00")))
    r = cli("explain", cdr_id, config=env.config)
    assert r.exit_code == 0, r.output
    text = r.stdout.split("Fraud guard\n", 1)[1]
    assert "max_spend_per_hour: its cost 6.0000 counts in the hour after it started" in text
    assert "contributed to the stop at " in text
    assert text.rstrip().endswith("fraud guard: max_spend_per_hour 10.00")


# --- FusionPBX: calls in progress ---------------------------------------------------


def test_a_fusionpbx_stop_hangs_up_the_gateways_calls_in_progress(cli, env_full):
    env = env_full
    guard(env, max_spend_per_hour='"10.00"')
    env.client(42, credit="500")
    service_id, gateway = env.fusion_service(42)
    other = "0b9f3c1e-6a53-4f0e-9d7a-2f1b8e6c4d11"
    env.esl.channels.up = [
        {"sip_gateway_name": gateway, "uuid": "a"},
        {"sip_gateway_name": other, "uuid": "b"},
    ]
    call(env, service_id, "10.00")
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    assert env.lever_commands() == [
        f"api sofia profile external killgw {gateway}",
        f"api hupall MANAGER_REQUEST sip_gateway_name {gateway}",
    ]
    assert [c["uuid"] for c, _ in env.esl.channels.hung_up] == ["a"]
    assert [c["uuid"] for c in env.esl.channels.up] == ["b"]
    assert (
        f"calls in progress hung up (+OK hangup all channels matching "
        f"[sip_gateway_name]=[{gateway}] with cause: MANAGER_REQUEST)"
    ) in r.stdout
    assert env.service(service_id).suspended_by == "fraud guard"


def test_a_refused_hupall_fails_the_run_and_the_hold_stands(cli, env_full):
    env = env_full
    guard(env, max_spend_per_hour='"10.00"')
    env.client(42, credit="500")
    service_id, gateway = env.fusion_service(42)
    # mod_event_socket.c api_exec(): a FreeSWITCH without mod_commands loaded.
    env.esl.replies[f"hupall MANAGER_REQUEST sip_gateway_name {gateway}"] = (
        "-ERR hupall Command not found!\n"
    )
    call(env, service_id, "10.00")
    r = cli("autosuspend", config=env.config)
    assert r.exit_code == 1
    assert (
        f"voipctl: error: service {service_id} of client 42 on fusion1: calls in "
        "progress NOT hung up: fusion1: event socket 127.0.0.1:"
    ) in r.stderr
    assert "`hupall MANAGER_REQUEST sip_gateway_name" in r.stderr and "Traceback" not in r.stderr
    assert env.service(service_id).suspended_by == "fraud guard"
    assert env.fusion.gateway_enabled(gateway) is False


@pytest.mark.parametrize(
    ("lever", "commands", "left"),
    [
        ("domain", ["api hupall MANAGER_REQUEST domain_name mcon.example.net"], ["other"]),
        (
            "extensions",
            [
                "api hupall MANAGER_REQUEST user_name 101 domain_name mcon.example.net",
                "api hupall MANAGER_REQUEST user_name 102 domain_name mcon.example.net",
            ],
            ["same-ext-other-tenant", "other", "unauthenticated"],
        ),
    ],
)
def test_hupall_filters_of_the_domain_and_extension_levers(esl_server, lever, commands, left):
    from voipctl.config import FusionPBXServer
    from voipctl.providers.base import ServiceInfo
    from voipctl.providers.fusionpbx.adapter import FusionPBXAdapter

    config = FusionPBXServer(
        type="fusionpbx",
        db_url_env="UNUSED",
        esl_host=esl_server.host,
        esl_port=esl_server.port,
        suspend=lever,
    )
    tenant = "mcon.example.net"
    esl_server.channels.up = [
        {"uuid": "ext101", "user_name": "101", "domain_name": tenant},
        {"uuid": "ext102", "user_name": "102", "domain_name": tenant},
        {"uuid": "same-ext-other-tenant", "user_name": "101", "domain_name": "other.example"},
        {"uuid": "other", "user_name": "300", "domain_name": "other.example"},
        {"uuid": "unauthenticated", "sip_from_user": "101"},
    ]
    if lever == "domain":
        esl_server.channels.up = [
            c for c in esl_server.channels.up if c["uuid"] in ("ext101", "ext102", "other")
        ]
    service = ServiceInfo(
        id=7, client_id=42, server="fusion1", tenant=tenant, extensions=("102", "101")
    )
    answer = FusionPBXAdapter("fusion1", config).hang_up(service)
    assert esl_server.wait_for(len(commands))[: len(commands)] == commands
    assert sorted(c["uuid"] for c in esl_server.channels.up) == sorted(left)
    more = "..." if lever == "extensions" else ""
    first = "user_name" if lever == "extensions" else "domain_name"
    value = "101" if lever == "extensions" else tenant
    assert answer.startswith(
        f"+OK hangup all channels matching [{first}]=[{value}]{more} with cause: MANAGER_REQUEST"
    )


def test_the_spend_sums_read_the_client_start_index_alone(store):
    """On SQLite the check's sums never read a row: a covering index (docs/fraud.md, "Cost")."""
    if not store.is_sqlite:
        pytest.skip("SQLite's plan names a covering index; PostgreSQL's depends on vacuum")
    from sqlalchemy import event

    from voipctl.jobs import fraud

    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, params, context, executemany):
        seen.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", capture)
    try:
        with store.transaction() as s:
            fraud._window_sums(s, [1, 2], datetime.now(UTC), ("53",))
    finally:
        event.remove(store.engine, "before_cursor_execute", capture)
    (sums, sums_args), (risk, risk_args) = seen[-2:]
    with store.engine.connect() as conn:
        raw = conn.connection.driver_connection
        sums_plan = raw.execute("EXPLAIN QUERY PLAN " + sums, sums_args).fetchall()
        risk_plan = raw.execute("EXPLAIN QUERY PLAN " + risk, risk_args).fetchall()
    assert [row[-1] for row in sums_plan] == [
        "SEARCH cdrs USING COVERING INDEX ix_cdrs_client_start "
        "(client_id=? AND start>? AND start<?)"
    ]
    assert [row[-1] for row in risk_plan] == [
        "SEARCH cdrs USING INDEX ix_cdrs_client_start (client_id=? AND start>? AND start<?)"
    ]


def test_report_since_shows_only_clients_with_calls_since_then(cli, env):
    guard(env, max_spend_per_day='"100.00"')
    env.client(42, credit="500")
    service_id = env.vodia_service(42)
    call(env, service_id, "30.00", ago=timedelta(hours=5))
    r = cli("fraud", "report", "--format", "json", config=env.config)
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)
    assert (row["day_spend"], row["day_limit"], row["day_percent"]) == ("30.00", "100.00", "30.0")
    since = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = cli("fraud", "report", "--since", since, config=env.config)
    assert (r.exit_code, r.stdout.splitlines()[-1]) == (0, "(none)")
    # --since takes what every other --since takes: yesterday is a time, soon is not.
    r = cli("fraud", "report", "--since", "yesterday", config=env.config)
    assert r.exit_code == 0, r.output
    r = cli("fraud", "report", "--since", "soon", config=env.config)
    assert r.exit_code == 2
    assert r.stderr.startswith("voipctl: error: fraud report: --since: 'soon' is not a date")
