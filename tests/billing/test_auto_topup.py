"""auto-topup with the local backend: a real charge program, on the database under test."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tests.support.autobill_runs import VOIPCTL, child_env
from tests.support.topup_support import (
    ChargeProgram,
    add_topup_client,
    attempts,
    emails,
    latched,
    spend,
    topups,
    write_local_config,
)
from voipctl.store.models import Cdr, Client, TopupAttempt


@pytest.fixture
def program(tmp_path) -> ChargeProgram:
    return ChargeProgram(tmp_path / "gateway")


@pytest.fixture
def config(tmp_path, program):
    return write_local_config(tmp_path / "voipctl.toml", program)


SUMMARY_ONE = (
    "auto-topup: 1 topped up, 0 declined, 0 unknown, 0 at the daily cap, "
    "0 authorisations expired, 0 re-armed, 1 emails sent"
)


def test_one_top_up_per_crossing_rearmed_after_the_credit_rises(store, cli, config, program):
    add_topup_client(store)  # available 3.50 <= threshold 5.00
    first = cli("auto-topup", "-v", config=config)
    assert first.exit_code == 0, first.output
    assert "client 42: topped up 25.00 (auto-topup-42-1)" in first.stdout
    assert SUMMARY_ONE in first.stdout
    assert program.calls == [["call", "auto-topup-42-1", "25.00", "42"]]
    assert topups(store) == [("auto-topup-42-1", Decimal("25.00"))]
    assert attempts(store) == [("auto-topup-42-1", "paid", "approved txn-auto-topup-42-1")]
    assert emails(store) == [
        (
            "auto_topup_done",
            "client42@example.com",
            "Your VoIP credit was topped up by 25.00 CAD",
        )
    ]
    # Credit 28.50 is above the threshold: the latch is lifted, nothing charged.
    second = cli("auto-topup", "-v", config=config)
    assert "client 42: re-armed (credit 28.50 > 5.00)" in second.stdout
    assert not latched(store)
    assert len(program.calls) == 1
    # The next crossing takes the next top-up, under the next reference.
    spend(store, 42, "25.00", "spent-1")
    third = cli("auto-topup", "-v", config=config)
    assert "client 42: topped up 25.00 (auto-topup-42-2)" in third.stdout
    assert [r for r, _ in topups(store)] == ["auto-topup-42-1", "auto-topup-42-2"]


def test_a_top_up_that_leaves_the_credit_low_is_not_repeated(store, cli, config, program):
    add_topup_client(store, amount="1.00")  # 3.50 + 1.00 = 4.50: still at or below 5.00
    assert cli("auto-topup", config=config).exit_code == 0
    for _ in range(3):
        again = cli("auto-topup", "-v", config=config)
        assert again.exit_code == 0, again.output
    assert program.calls == [["call", "auto-topup-42-1", "1.00", "42"]]
    assert latched(store)


def test_no_threshold_means_at_or_below_zero(store, cli, config, program):
    add_topup_client(store, low_balance_threshold=None, credit="0.50")
    assert cli("auto-topup", config=config).exit_code == 0
    assert program.calls == []
    spend(store, 42, "0.50", "spent-1")  # exactly zero
    assert cli("auto-topup", config=config).exit_code == 0
    assert [c[1] for c in program.calls] == ["auto-topup-42-1"]


def test_clients_without_authorisation_or_amount_are_not_charged(store, cli, config, program):
    add_topup_client(store, 41, cc_auth_on_file=False)
    add_topup_client(store, 43, auto_topup_amount=None)
    result = cli("auto-topup", config=config)
    assert result.exit_code == 0
    assert program.calls == []


def test_the_daily_cap_stops_the_card_and_tells_the_operator_once(store, cli, tmp_path, program):
    config = write_local_config(tmp_path / "capped.toml", program, "max_per_day = 2")
    add_topup_client(store)
    for n in (1, 2):
        assert cli("auto-topup", config=config).exit_code == 0
        cli("auto-topup", config=config)  # re-armed by the credit
        spend(store, 42, "25.00", f"runaway-{n}")
    capped = cli("auto-topup", "-v", config=config)
    assert capped.exit_code == 0, capped.output
    assert "client 42: not topped up: 2 today already" in capped.stdout
    assert cli("auto-topup", config=config).exit_code == 0  # still capped: no second notice
    assert [c[1] for c in program.calls] == ["auto-topup-42-1", "auto-topup-42-2"]
    operator = [e for e in emails(store) if e[1] == "noc@example.net"]
    assert operator == [
        (
            "auto_topup_operator",
            "noc@example.net",
            "Auto top-up stopped by the daily cap: client 42",
        )
    ]


def test_the_day_of_the_cap_is_the_clients_own(store, cli, config, program):
    zone = ZoneInfo("Pacific/Kiritimati")  # UTC+14: often a day ahead of UTC
    add_topup_client(store, timezone=zone.key)
    assert cli("auto-topup", config=config).exit_code == 0
    with store.transaction() as s:
        day = s.scalar(select(TopupAttempt.day))
    assert day == datetime.now(UTC).astimezone(zone).date().isoformat()


def test_an_aged_authorisation_is_not_charged_and_renewal_is_asked_once(
    store, cli, config, program
):
    add_topup_client(store, cc_auth_date=date.today() - timedelta(days=366))
    first = cli("auto-topup", "-v", config=config)
    assert first.exit_code == 0, first.output
    assert "client 42: card authorisation expired: renewal asked" in first.stdout
    assert cli("auto-topup", config=config).exit_code == 0
    assert program.calls == []
    assert emails(store) == [
        (
            "auto_topup_renew_auth",
            "client42@example.com",
            "Please renew the card authorisation for your automatic VoIP top-ups",
        )
    ]
    # 365 days old is still valid.
    with store.transaction() as s:
        s.get(Client, 42).cc_auth_date = date.today() - timedelta(days=365)
    assert cli("auto-topup", config=config).exit_code == 0
    assert [c[1] for c in program.calls] == ["auto-topup-42-1"]


def test_a_declined_charge_is_told_once_and_waits_for_retry(store, cli, config, program):
    add_topup_client(store)
    program.mode("decline")
    declined = cli("auto-topup", "-v", config=config)
    assert declined.exit_code == 0, declined.output
    assert (
        "client 42: top-up of 25.00 declined (auto-topup-42-1): "
        "card declined: insufficient funds" in declined.stdout
    )
    assert attempts(store) == [("auto-topup-42-1", "declined", "card declined: insufficient funds")]
    assert topups(store) == []
    assert [(t, r) for t, r, _ in emails(store)] == [
        ("auto_topup_failed", "client42@example.com"),
        ("auto_topup_operator", "noc@example.net"),
    ]
    program.mode("ok")
    assert cli("auto-topup", config=config).exit_code == 0  # latched: no loop of charges
    assert len(program.calls) == 1
    retried = cli("auto-topup", "--retry", "42", config=config)
    assert retried.exit_code == 0, retried.output
    assert "client 42: topped up 25.00 (auto-topup-42-2)" in retried.stdout
    assert topups(store) == [("auto-topup-42-2", Decimal("25.00"))]
    assert len(emails(store)) == 3


def test_retry_of_an_unknown_client_is_one_line(cli, config):
    result = cli("auto-topup", "--retry", "999", config=config)
    assert result.exit_code == 2
    assert result.stderr.strip() == "voipctl: error: no client 999"


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        ("exit3", "the charge command exited 3: gateway unreachable"),
        ("hang", "the charge command timed out after 1 s"),
    ],
)
def test_an_unknown_outcome_is_retried_under_the_same_reference_only(
    store, cli, tmp_path, program, mode, detail
):
    config = write_local_config(tmp_path / "t.toml", program)
    config.write_text(config.read_text().replace("timeout_s = 5", "timeout_s = 1"))
    add_topup_client(store)
    program.mode(mode)
    unknown = cli("auto-topup", config=config)
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == (
        f"voipctl: error: client 42: top-up auto-topup-42-1 of 25.00: outcome unknown: "
        f"{detail}; the next run tries it again under the same reference"
    )
    assert attempts(store) == [("auto-topup-42-1", "unknown", detail)]
    assert [(t, r) for t, r, _ in emails(store)] == [("auto_topup_operator", "noc@example.net")]
    program.mode("ok")
    again = cli("auto-topup", config=config)
    assert again.exit_code == 0, again.output
    assert [c[1] for c in program.calls] == ["auto-topup-42-1", "auto-topup-42-1"]
    assert topups(store) == [("auto-topup-42-1", Decimal("25.00"))]
    assert attempts(store)[0][:2] == ("auto-topup-42-1", "paid")


def test_a_missing_command_is_a_configuration_error(store, cli, tmp_path):
    add_topup_client(store)
    path = tmp_path / "none.toml"
    path.write_text("")
    result = cli("auto-topup", config=path)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(
        f"voipctl: error: {path}: topup.command: required to take top-ups with [billing] "
        'backend = "local"'
    )
    assert attempts(store) == []


def test_without_top_up_clients_no_command_is_needed(store, cli, tmp_path):
    add_topup_client(store, cc_auth_on_file=False)
    path = tmp_path / "none.toml"
    path.write_text("")
    result = cli("auto-topup", config=path)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_a_command_without_the_reference_is_refused(cli, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[topup]\ncommand = ["/bin/true", "{client_id}", "{amont}"]\n')
    result = cli("auto-topup", config=path)
    assert result.exit_code == 2
    assert "topup.command: value error, unknown placeholder {amont}" in result.stderr
    path.write_text('[topup]\ncommand = ["/bin/true", "{client_id}"]\n')
    result = cli("auto-topup", config=path)
    assert result.exit_code == 2
    assert "{reference} is required" in result.stderr


def test_a_dry_run_charges_and_writes_nothing(store, cli, config, program):
    add_topup_client(store)
    result = cli("auto-topup", "--dry-run", config=config)
    assert result.exit_code == 0, result.output
    assert "client 42: would top up 25.00 (auto-topup-42-1, credit 3.50 <= 5.00)" in result.stdout
    assert program.calls == [] and attempts(store) == [] and not latched(store)


def test_statement_client_show_and_explain_name_the_top_up(store, cli, config, program):
    from tests.support.billing_data import add_calls

    service = add_topup_client(store)
    assert cli("auto-topup", config=config).exit_code == 0
    add_calls(store, service, [Decimal("0.10")])
    statement = cli("statement", "42", "--format", "json")
    assert statement.exit_code == 0, statement.output
    rows = json.loads(statement.stdout)["entries"]
    assert [(r["kind"], r["amount"], r["reference"]) for r in rows][-1] == (
        "topup",
        "25.0000",
        "auto-topup-42-1",
    )
    shown = cli("client", "show", "42", "--format", "json")
    view = json.loads(shown.stdout)
    assert view["auto_topups"][0]["reference"] == "auto-topup-42-1"
    assert view["auto_topups"][0]["status"] == "paid"
    text = cli("client", "show", "42")
    assert "  - reference=auto-topup-42-1, status=paid, amount=25.00, day=" in text.stdout
    # The call started before the top-up: explain's ledger chain lists it after the call.
    with store.transaction() as s:
        cdr_id = s.scalar(select(Cdr.id))
    doc = json.loads(cli("explain", str(cdr_id), "--format", "json").stdout)
    assert [(e["kind"], e["amount"], e["reference"]) for e in doc["billing"]["auto_topups"]] == [
        ("topup", "25.0000", "auto-topup-42-1")
    ]
    out = cli("explain", str(cdr_id)).stdout
    assert "  topped up    entry " in out
    assert "reference auto-topup-42-1 (automatic top-up (approved txn-auto-topup-42-1))" in out


def _wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_killed_between_the_charge_and_the_credit_charges_and_credits_once(
    store, db_url, tmp_path, config, program
):
    add_topup_client(store)
    program.mode("slow")  # charges, then takes 30 s to answer
    proc = subprocess.Popen(
        [VOIPCTL, "--config", str(config), "--db", db_url, "auto-topup", "-q"],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for(lambda: program.charges)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # The intent is visible: charged, not credited.
    assert attempts(store) == [("auto-topup-42-1", "pending", "")]
    assert topups(store) == []
    assert program.charges == [["charge", "auto-topup-42-1", "25.00"]]
    program.mode("ok")
    for _ in range(50):  # PostgreSQL may hold the dead session's lock a moment
        rerun = subprocess.run(
            [VOIPCTL, "--config", str(config), "--db", db_url, "auto-topup", "-q"],
            cwd=tmp_path,
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if rerun.returncode != 75:
            break
        time.sleep(0.1)
    assert rerun.returncode == 0, rerun.stderr
    assert program.charges == [["charge", "auto-topup-42-1", "25.00"]]
    assert [c[1] for c in program.calls] == ["auto-topup-42-1", "auto-topup-42-1"]
    assert topups(store) == [("auto-topup-42-1", Decimal("25.00"))]
    assert attempts(store) == [("auto-topup-42-1", "paid", "already charged auto-topup-42-1")]


def test_whmcs_templates_of_top_ups_may_use_the_top_up_variables(cli, tmp_path):
    source = tmp_path / "done.tpl"
    source.write_text("Dear {$client_first_name}, {$topup_amount} added ({$topup_reference}).\n")
    dest = tmp_path / "templates"
    ok = cli("template", "import", str(source), "auto_topup_done", "--dir", str(dest))
    assert ok.exit_code == 0, ok.output
    assert (dest / "auto_topup_done.txt").read_text() == (
        "Dear {{ client_first_name }}, {{ topup_amount }} added ({{ topup_reference }}).\n"
    )
    refused = cli("template", "import", str(source), "low_balance_alert", "--dir", str(dest))
    assert refused.exit_code == 1
    assert f"{source}:1: unknown variable $topup_amount" in refused.stderr
