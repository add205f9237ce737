"""`voipctl suspend` / `unsuspend`: the operator's hand, through the real Vodia simulator."""

from __future__ import annotations

import pytest

from tests.support.invariants import check_invariants
from tests.support.smtp_sink import SmtpSink
from tests.support.suspend_env import TRUNK_PATH, SuspendEnv
from voipctl.sim.server import SimConfig, Simulator


@pytest.fixture
def env(tmp_path, store, monkeypatch):
    with Simulator(SimConfig(days=1, calls_per_day=1)) as sim, SmtpSink() as sink:
        yield SuspendEnv(tmp_path, store, monkeypatch, sim=sim, sink=sink)


def test_suspend_holds_until_unsuspend_whatever_the_credit(cli, env):
    env.client(42, credit="100")
    sid = env.vodia_service(42)
    r = cli("suspend", "--service", sid, "--reason", "fraud check", config=env.config)
    assert r.exit_code == 0, r.output
    assert f"service {sid} of client 42 on vodia1: suspended (trunk 106 disabled" in r.stdout
    assert env.vodia_puts() == [TRUNK_PATH] and env.trunk_state() == {"dis": "true"}
    service = env.service(sid)
    assert (service.suspended, service.suspended_by, service.suspend_reason) == (
        True, "operator", "fraud check",
    )  # fmt: skip
    assert env.events() == [(sid, "suspend", "operator", True)]

    # Again: a no-op that says so, and the PBX is not asked.
    r = cli("suspend", "--service", sid, config=env.config)
    assert r.exit_code == 0
    assert "is already suspended (held by the operator): no-op" in r.stdout
    assert env.vodia_puts() == [TRUNK_PATH]

    # Plenty of credit: autosuspend never lifts an operator's hold.
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.service(sid).suspended and env.vodia_puts() == [TRUNK_PATH]

    r = cli("unsuspend", "--service", sid, "--reason", "cleared", config=env.config)
    assert r.exit_code == 0, r.output
    assert f"service {sid} of client 42 on vodia1: unsuspended" in r.stdout
    assert env.vodia_puts() == [TRUNK_PATH, TRUNK_PATH] and env.trunk_state() == {"dis": "false"}
    service = env.service(sid)
    assert (service.suspended, service.suspended_by) == (False, None)
    r = cli("unsuspend", "--service", sid, config=env.config)
    assert "is already active: no-op" in r.stdout
    assert env.events() == [
        (sid, "suspend", "operator", True),
        (sid, "unsuspend", "operator", True),
    ]
    check_invariants(env.store, provider_suspended={sid: False})


def test_suspend_a_client_acts_on_each_of_its_services(cli, env):
    env.client(42, credit="100")
    first, second = env.vodia_service(42), env.lesnet_service(42)
    r = cli("suspend", "--client", 42, config=env.config)
    assert r.exit_code == 0, r.output
    assert f"service {first} of client 42 on vodia1: suspended" in r.stdout
    # LES.NET's manual lever: recorded, and the operator at the terminal is told what to do.
    assert (
        f"service {second} of client 42 on lesnet: recorded suspended; manual action required: "
        "disable peer D4E3CD2BFC791" in r.stdout
    )
    assert env.service(second).manual_action_required
    assert [e[:3] for e in env.events()] == [
        (first, "suspend", "operator"),
        (second, "suspend", "operator"),
    ]


def test_suspending_what_autosuspend_cut_makes_it_an_operator_hold(cli, env):
    env.client(42, credit="0")
    sid = env.vodia_service(42)
    assert cli("autosuspend", config=env.config).exit_code == 0
    r = cli("suspend", "--service", sid, "--reason", "keep it off", config=env.config)
    assert r.exit_code == 0
    assert "already suspended (by autosuspend); now held by the operator" in r.stdout
    assert env.vodia_puts() == [TRUNK_PATH]  # no second call to the PBX
    with env.store.transaction() as s:
        from tests.support.billing_data import topup

        topup(s, 42, "50.00", "t2")
    assert cli("autosuspend", config=env.config).exit_code == 0
    assert env.service(sid).suspended_by == "operator"
    check_invariants(env.store, smtp=env.sink, provider_suspended={sid: True})


def test_a_failing_pbx_is_reported_and_nothing_is_recorded_as_done(cli, env):
    env.client(42, credit="100")
    sid = env.vodia_service(42)
    env.sim.fail("/rest/domain/", times=1, status=503)
    r = cli("suspend", "--service", sid, config=env.config)
    assert r.exit_code == 1
    assert f"voipctl: error: service {sid} of client 42 on vodia1: suspend FAILED" in r.stderr
    assert not env.service(sid).suspended
    assert env.events() == [(sid, "suspend", "operator", False)]


def test_dry_run_and_usage_errors(cli, env):
    env.client(42, credit="100")
    sid = env.vodia_service(42)
    r = cli("suspend", "--service", sid, "--dry-run", config=env.config)
    assert r.exit_code == 0
    assert f"would suspend service {sid} of client 42 on vodia1" in r.stdout
    assert env.vodia_puts() == [] and env.events() == []

    r = cli("suspend", config=env.config)
    assert r.exit_code == 2 and "exactly one of --service ID or --client ID" in r.stderr
    r = cli("unsuspend", "--service", 999, config=env.config)
    assert r.exit_code == 2 and "no service 999" in r.stderr
    r = cli("suspend", "--client", 7, config=env.config)
    assert r.exit_code == 2 and "no client 7" in r.stderr
