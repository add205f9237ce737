"""autosuspend: every row of docs/billing.md's decision table, against real parts.

Vodia: the simulator's REST API on a real port (the exact PUTs it received and
the trunk state it keeps). FusionPBX: the gateway lever, with `v_gateways` in a
real PostgreSQL and a fake FreeSWITCH event socket that records each command.
Emails: a real SMTP server on localhost.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.invariants import check_invariants
from tests.support.smtp_sink import SmtpSink
from tests.support.suspend_env import TRUNK_PATH, VODIA_TENANT, VODIA_TRUNK, SuspendEnv
from voipctl.sim.server import SimConfig, Simulator

ZERO_SUBJECT = "Your VoIP service has been suspended"


@pytest.fixture
def sim():
    with Simulator(SimConfig(days=1, calls_per_day=1)) as server:
        yield server


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


@pytest.fixture
def env_vodia(tmp_path, store, monkeypatch, sim, sink):
    return SuspendEnv(tmp_path, store, monkeypatch, sim=sim, sink=sink)


@pytest.fixture
def env_full(tmp_path, store, monkeypatch, sim, sink, fusion_db, esl_server):
    return SuspendEnv(
        tmp_path, store, monkeypatch, sim=sim, sink=sink, fusion=fusion_db, esl=esl_server
    )


# (row, client fields, credit, owing, state before, what autosuspend does, zero-balance email)
ROWS = [
    ("manual_suspend_yes", {"manual_voip_suspend": True}, "50", "0", "active", "suspend", False),
    (
        "manual_suspend_yes_beats_voip_suspended_no",
        {"manual_voip_suspend": True, "voip_suspended": "no"},
        "50", "0", "active", "suspend", False,
    ),
    ("voip_suspended_yes", {"voip_suspended": "yes"}, "50", "0", "active", "suspend", False),
    ("voip_suspended_no", {"voip_suspended": "no"}, "-20", "100", "auto", "unsuspend", False),
    ("credit_zero_at_limit_zero", {}, "0", "0", "active", "suspend", True),
    ("credit_at_minus_limit", {"credit_limit": Decimal(5)}, "-5", "0", "active", "suspend", True),
    ("owing_above_credit", {}, "5", "10", "active", "suspend", True),
    (
        "above_minus_limit_nothing_owing",
        {"credit_limit": Decimal(5)}, "-4.99", "0", "auto", "unsuspend", False,
    ),
    ("topped_up_nothing_owing", {}, "0.01", "0", "auto", "unsuspend", False),
    ("owing_within_credit_stays_suspended", {}, "10", "10", "auto", None, False),
    ("owing_within_credit_stays_active", {}, "10", "4", "active", None, False),
    ("no_voip_service_left_alone", {"has_voip_service": False}, "-10", "0", "active", None, False),
    ("operator_hold_never_lifted", {}, "50", "0", "operator", None, False),
]  # fmt: skip


def _prepare(env: SuspendEnv, kind: str, fields: dict, credit: str, owing: str, before: str):
    env.client(42, credit=credit, owing=owing, first_name="Grace", **fields)
    gateway = None
    if kind == "vodia":
        service_id = env.vodia_service(42)
        if before != "active":
            env.sim.vodia_state[f"{VODIA_TENANT}/trunk/{VODIA_TRUNK}"] = {"dis": "true"}
    else:
        service_id, gateway = env.fusion_service(42)
        if before != "active":
            env.disable_gateway(gateway)
    if before == "auto":
        env.mark_suspended(service_id, "autosuspend")
    elif before == "operator":
        env.mark_suspended(service_id, "operator")
    return service_id, gateway


@pytest.mark.parametrize("kind", ["vodia", "fusion"])
@pytest.mark.parametrize(
    ("row", "fields", "credit", "owing", "before", "action", "email"),
    ROWS,
    ids=[r[0] for r in ROWS],
)
def test_decision_table(request, cli, kind, row, fields, credit, owing, before, action, email):
    env: SuspendEnv = request.getfixturevalue("env_vodia" if kind == "vodia" else "env_full")
    service_id, gateway = _prepare(env, kind, fields, credit, owing, before)

    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output

    suspended_after = action == "suspend" or (action is None and before != "active")
    service = env.service(service_id)
    assert service.suspended is suspended_after
    if action == "suspend":
        assert service.suspended_by == "autosuspend"
    elif action is None and before == "operator":
        assert service.suspended_by == "operator"

    # Exactly what the PBX was asked to do.
    if kind == "vodia":
        assert env.vodia_puts() == ([TRUNK_PATH] if action else [])
        if action:
            assert env.trunk_state() == {"dis": "true" if action == "suspend" else "false"}
    else:
        expected = {
            "suspend": [f"api sofia profile external killgw {gateway}"],
            "unsuspend": ["api sofia profile external rescan"],
            None: [],
        }[action]
        assert env.lever_commands() == expected
        assert env.fusion.gateway_enabled(gateway) is (not suspended_after)

    events = env.events(service_id)
    if action:
        assert events[-1] == (service_id, action, "autosuspend", True)
        server = "vodia1" if kind == "vodia" else "fusion1"
        assert f"service {service_id} of client 42 on {server}: {action}ed (" in r.stdout
    else:
        assert len(events) == (0 if before == "active" else 1)

    assert env.subjects() == ([("client42@example.com", ZERO_SUBJECT)] if email else [])
    if email:
        body = env.sink.messages[0].get_payload(decode=True).decode()
        assert body.startswith("Dear Grace,")
        assert f"Credit: {Decimal(credit):.2f} CAD" in body
        assert f"Amount owing: {Decimal(owing):.2f} CAD" in body

    # Run again: the table is satisfied, nothing more is changed or sent (the levers
    # are read back, GET edit_trunk for Vodia).
    calls_before = (env.vodia_puts(), env.lever_commands() if env.esl else [])
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert calls_before == (env.vodia_puts(), env.lever_commands() if env.esl else [])
    assert len(env.sink.messages) == (1 if email else 0)
    check_invariants(env.store, smtp=env.sink, provider_suspended={service_id: suspended_after})


def test_zero_balance_email_once_per_suspension_across_services(cli, env_full):
    env = env_full
    env.client(42, credit="0", first_name="Grace")
    vodia = env.vodia_service(42)
    fusion, gateway = env.fusion_service(42)
    # The FusionPBX lever fails the first time: one service is cut now, the other next run.
    # mod_sofia.c cmd_profile(): the answer while the profile is not running.
    env.esl.replies[f"sofia profile external killgw {gateway}"] = "Invalid Profile [external]"
    r = cli("autosuspend", config=env.config)
    assert r.exit_code == 1
    assert f"service {fusion} of client 42 on fusion1: suspend FAILED" in r.stderr
    assert env.service(vodia).suspended and not env.service(fusion).suspended
    assert env.fusion.gateway_enabled(gateway) is True  # rolled back with the refused killgw
    assert env.events(fusion) == [(fusion, "suspend", "autosuspend", False)]
    assert env.subjects() == [("client42@example.com", ZERO_SUBJECT)]

    del env.esl.replies[f"sofia profile external killgw {gateway}"]
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.service(fusion).suspended and env.fusion.gateway_enabled(gateway) is False
    assert len(env.sink.messages) == 1  # the same suspension: no second email

    # Top-up: both restored, no email; a new fall is a new suspension and a new email.
    with env.store.transaction() as s:
        from tests.support.billing_data import topup

        topup(s, 42, "10.00", "t2")
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert not env.service(vodia).suspended and not env.service(fusion).suspended
    with env.store.transaction() as s:
        topup(s, 42, "-10.00", "t3")
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.subjects() == [("client42@example.com", ZERO_SUBJECT)] * 2
    check_invariants(env.store, smtp=env.sink, provider_suspended={vodia: True, fusion: True})


def test_a_failing_provider_changes_nothing_and_is_retried_next_run(cli, env_vodia):
    env = env_vodia
    env.client(42, credit="0")
    service_id = env.vodia_service(42)
    # Two answers fail: the trunk's read-back (of a service nothing holds: only
    # logged) and the PUT that suspends it.
    env.sim.fail("/rest/domain/", times=2, status=503)
    r = cli("autosuspend", config=env.config)
    assert r.exit_code == 1
    assert f"voipctl: error: service {service_id} of client 42 on vodia1" in r.stderr
    assert "suspend FAILED" in r.stderr and "Traceback" not in r.stderr
    assert not env.service(service_id).suspended
    assert env.events() == [(service_id, "suspend", "autosuspend", False)]
    assert env.subjects() == []  # no email for a suspension that did not happen
    check_invariants(env.store, smtp=env.sink, provider_suspended={service_id: False})

    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.service(service_id).suspended and env.trunk_state() == {"dis": "true"}
    assert len(env.subjects()) == 1
    check_invariants(env.store, smtp=env.sink, provider_suspended={service_id: True})


def test_lesnet_manual_lever_records_and_tells_the_operator_once(cli, env_vodia):
    env = env_vodia
    env.client(42, credit="-1")
    service_id = env.lesnet_service(42)
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    assert "manual action required" in r.stdout
    service = env.service(service_id)
    assert service.suspended and service.manual_action_required
    assert sorted(env.subjects()) == [
        ("client42@example.com", ZERO_SUBJECT),
        ("noc@example.net", f"Manual suspend needed: service {service_id} of client 42 on lesnet"),
    ]
    operator = next(m for m in env.sink.messages if m["To"] == "noc@example.net")
    assert "disable peer D4E3CD2BFC791" in operator.get_payload(decode=True).decode()
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert len(env.sink.messages) == 2

    # Restored after a top-up: recorded active, and the operator is told to enable the peer.
    with env.store.transaction() as s:
        from tests.support.billing_data import topup

        topup(s, 42, "5.00", "t2")
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert not env.service(service_id).suspended
    assert env.subjects()[-1][1] == (
        f"Manual unsuspend needed: service {service_id} of client 42 on lesnet"
    )
    check_invariants(env.store, smtp=env.sink)


def test_dry_run_says_what_it_would_do_and_touches_nothing(cli, env_vodia):
    env = env_vodia
    env.client(42, credit="0")
    service_id = env.vodia_service(42)
    r = cli("autosuspend", "--dry-run", config=env.config)
    assert r.exit_code == 0
    assert (
        f"would suspend service {service_id} of client 42 on vodia1: "
        "credit 0.00 at or below 0.00 (credit limit 0.00)" in r.stdout
    )
    assert env.vodia_puts() == [] and env.events() == [] and env.subjects() == []
    assert not env.service(service_id).suspended


def test_unbilled_calls_count_against_the_credit(cli, env_vodia):
    from tests.support.billing_data import add_calls

    env = env_vodia
    env.client(42, credit="1.00")
    service_id = env.vodia_service(42)
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert not env.service(service_id).suspended
    add_calls(env.store, env.service(service_id), [Decimal("1.00")])  # rated, not yet billed
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.service(service_id).suspended


def test_a_broken_template_stops_the_run_before_any_pbx_is_touched(cli, env_vodia, tmp_path):
    env = env_vodia
    env.client(42, credit="0")
    service_id = env.vodia_service(42)
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "voip_zero_balance.txt").write_text("{{ ''.__class__ }}\n")
    env.config.write_text(
        env.config.read_text().replace("[email]\n", f'[email]\ntemplates_dir = "{templates}"\n')
    )
    r = cli("autosuspend", config=env.config)
    assert r.exit_code == 1
    assert "voip_zero_balance.txt:1: refused" in r.stderr and "Traceback" not in r.stderr
    assert env.vodia_puts() == [] and env.events() == []
    assert not env.service(service_id).suspended


def test_a_second_run_while_one_holds_the_lock_exits_75_and_does_nothing(cli, env_vodia):
    from voipctl.store.locks import job_lock

    env = env_vodia
    env.client(42, credit="0")
    env.vodia_service(42)
    with job_lock(env.store, "autosuspend"):
        r = cli("autosuspend", config=env.config)
    assert r.exit_code == 75
    assert r.stderr.count("\n") == 1 and "autosuspend: another run holds the" in r.stderr
    assert env.vodia_puts() == [] and env.events() == []


# -- FusionPBX: the full cycle, with FreeSWITCH's real texts (tests/fakes/esl_server.py) --


def _fusion_client(env: SuspendEnv, credit: str = "0") -> tuple[int, str]:
    env.client(42, credit=credit, first_name="Grace")
    return env.fusion_service(42)


def _spend(env: SuspendEnv, amount: str, ref: str) -> None:
    with env.store.transaction() as s:
        from tests.support.billing_data import topup

        topup(s, 42, amount, ref)


def test_fusion_gateway_run_down_top_up_run_down(cli, env_full):
    env = env_full
    service_id, gateway = _fusion_client(env)
    sofia = env.esl.sofia

    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    assert f"service {service_id} of client 42 on fusion1: suspended (gateway client42 " in (
        r.stdout
    )
    assert env.service(service_id).suspended
    assert env.fusion.gateway_enabled(gateway) is False and gateway not in sofia.running

    _spend(env, "10.00", "t1")
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    # "Reload XML [Success]\n+OK scan complete\n" is a success, and FreeSWITCH runs it.
    assert (
        f"service {service_id} of client 42 on fusion1: unsuspended (gateway client42 "
        f"({gateway}) enabled; FreeSWITCH: +OK scan complete; FreeSWITCH runs it "
        "(State REGED, Status UP); memcache cleared: pbx01:configuration:sofia.conf): "
        "credit 10.00 above 0.00 and nothing owing"
    ) in r.stdout
    assert not env.service(service_id).suspended
    assert env.fusion.gateway_enabled(gateway) is True and sofia.running[gateway] == "external"

    _spend(env, "-10.00", "t2")
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.service(service_id).suspended
    assert env.fusion.gateway_enabled(gateway) is False and gateway not in sofia.running
    assert env.lever_commands() == [
        f"api sofia profile external killgw {gateway}",
        "api sofia profile external rescan",
        f"api sofia profile external killgw {gateway}",
    ]
    assert [e[1:] for e in env.events(service_id)] == [
        ("suspend", "autosuspend", True),
        ("unsuspend", "autosuspend", True),
        ("suspend", "autosuspend", True),
    ]
    assert env.subjects() == [("client42@example.com", ZERO_SUBJECT)] * 2
    check_invariants(env.store, smtp=env.sink, provider_suspended={service_id: True})


def test_fusion_refused_rescan_ends_in_a_state_the_next_run_repairs(cli, env_full):
    env = env_full
    service_id, gateway = _fusion_client(env)
    sofia = env.esl.sofia
    assert cli("autosuspend", config=env.config).exit_code == 0
    _spend(env, "10.00", "t1")

    sofia.refuse_rescan = True
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 1
    assert r.stderr == (
        f"voipctl: error: service {service_id} of client 42 on fusion1: unsuspend FAILED: "
        f"fusion1: gateway client42 ({gateway}): v_gateways.enabled set true, but after "
        "`-ERR cannot find config for profile external` FreeSWITCH runs no such gateway; "
        "recorded as before, the next run acts again\n"
    )
    # Recorded as it is: the row is enabled, FreeSWITCH carries no calls, voipctl
    # still holds it suspended and will act again.
    assert env.service(service_id).suspended
    assert env.fusion.gateway_enabled(gateway) is True and gateway not in sofia.running
    assert env.events(service_id)[-1] == (service_id, "unsuspend", "autosuspend", False)

    # The client runs out again before the repair: the enabled row is seen and cut.
    _spend(env, "-10.00", "t2")
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    assert (
        "found active on fusion1 while held suspended by autosuspend (v_gateways.enabled = "
        "true, FreeSWITCH runs no such gateway); suspending again"
    ) in r.stdout
    assert env.fusion.gateway_enabled(gateway) is False and env.service(service_id).suspended
    # A correction of a suspension the client was told of: no second email.
    assert env.subjects() == [("client42@example.com", ZERO_SUBJECT)]

    # Topped up again with FreeSWITCH fixed: the unsuspend goes through.
    sofia.refuse_rescan = False
    _spend(env, "10.00", "t3")
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert not env.service(service_id).suspended
    assert env.fusion.gateway_enabled(gateway) is True and gateway in sofia.running
    check_invariants(env.store, smtp=env.sink, provider_suspended={service_id: False})


def test_refused_rescan_then_a_working_one_unsuspends(cli, env_full):
    env = env_full
    service_id, gateway = _fusion_client(env)
    assert cli("autosuspend", config=env.config).exit_code == 0
    _spend(env, "10.00", "t1")
    env.esl.sofia.refuse_rescan = True
    assert cli("autosuspend", config=env.config).exit_code == 1
    env.esl.sofia.refuse_rescan = False
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    assert f"service {service_id} of client 42 on fusion1: unsuspended (" in r.stdout
    assert not env.service(service_id).suspended and gateway in env.esl.sofia.running


@pytest.mark.parametrize("holder", ["autosuspend", "operator"])
def test_gateway_re_enabled_behind_voipctls_back_is_suspended_again(cli, env_full, holder):
    env = env_full
    service_id, gateway = _fusion_client(env, credit="0" if holder == "autosuspend" else "50")
    if holder == "operator":
        assert cli("suspend", "--service", str(service_id), config=env.config).exit_code == 0
    else:
        assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.fusion.gateway_enabled(gateway) is False

    env.enable_gateway_by_hand(gateway)  # FusionPBX's gateway page: Enabled = true
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    correction = [line for line in lines if "found active" in line]
    assert correction == [
        f"service {service_id} of client 42 on fusion1: suspended (gateway client42 ({gateway})"
        " disabled; FreeSWITCH: +OK gateway marked for deletion.; FreeSWITCH runs no such "
        "gateway; memcache cleared: pbx01:configuration:sofia.conf): found active on "
        f"fusion1 while held suspended by {holder} "
        "(v_gateways.enabled = true, FreeSWITCH runs it (State REGED, Status UP)); "
        "suspending again"
    ]
    service = env.service(service_id)
    assert service.suspended and service.suspended_by == holder
    assert env.fusion.gateway_enabled(gateway) is False
    assert gateway not in env.esl.sofia.running
    # Reconciled: the next run finds nothing to correct and asks nothing.
    before = env.lever_commands()
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0 and "found active" not in r.stdout
    assert env.lever_commands() == before


def test_state_lost_in_a_restore_is_corrected(cli, env_full):
    env = env_full
    service_id, gateway = _fusion_client(env)
    # voipctl's database restored from before the suspension: recorded active, PBX cut.
    env.disable_gateway(gateway)
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    assert env.service(service_id).suspended  # recorded as the PBX has it
    assert env.lever_commands() == [f"api sofia profile external killgw {gateway}"]

    # Recorded active while the PBX has it cut and the client is in credit: reported.
    with env.store.transaction() as s:
        from voipctl.store.models import Service

        row = s.get(Service, service_id)
        row.suspended, row.suspended_by, row.suspend_reason, row.suspended_at = (
            False,
            None,
            None,
            None,
        )
    _spend(env, "10.00", "t1")
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[:-1] == [
        f"service {service_id} of client 42 on fusion1: recorded active but found suspended "
        "(v_gateways.enabled = false, FreeSWITCH runs no such gateway); left as it is "
        f"(voipctl unsuspend --service {service_id} restores it)"
    ]
