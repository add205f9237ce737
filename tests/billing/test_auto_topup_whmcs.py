"""auto-topup with the WHMCS backend, against the fake WHMCS server (tests/fakes/whmcs_server.py).

The flow of docs/topup.md: CreateInvoice for the amount (the reference in its
notes), CapturePayment on the client's stored card, AddCredit of the amount;
each step recorded before it is taken and looked up in WHMCS before it is
taken again.
"""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.fakes.whmcs_env import write_config
from tests.support.autobill_runs import VOIPCTL, child_env
from tests.support.billing_data import add_client
from tests.support.topup_support import attempts, emails, latched, topups
from voipctl.store.models import TopupAttempt

TOPUP = '\n[topup]\nwhmcs_payment_method = "stripe"\n'


@pytest.fixture
def config(tmp_path, whmcs):
    return write_config(tmp_path / "voipctl.toml", whmcs, emails="smtp", extra=TOPUP)


@pytest.fixture
def client42(store, whmcs):
    with store.transaction() as s:
        add_client(
            s,
            42,
            first_name="Grace",
            low_balance_threshold=Decimal("5.00"),
            auto_topup_amount=Decimal("25.00"),
            cc_auth_on_file=True,
            cc_auth_date=date.today() - timedelta(days=10),
        )
    return whmcs.add_client(42, credit="3.50")


def _actions(whmcs) -> list[str]:
    return [a for a, _ in whmcs.requests if a not in ("GetClientsDetails", "GetInvoices")]


def _topup_credits(whmcs, client_id: int = 42):
    return [e for e in whmcs.credit_log if e.clientid == client_id and e.amount > 0]


def test_invoice_capture_and_credit_once_per_crossing(store, cli, config, whmcs, client42):
    result = cli("auto-topup", "-v", config=config)
    assert result.exit_code == 0, result.output
    assert "client 42: topped up 25.00 (auto-topup-42-1)" in result.stdout
    assert _actions(whmcs) == [
        "CreateInvoice",
        "GetInvoice",
        "CapturePayment",
        "GetInvoice",
        "GetCredits",
        "AddCredit",
    ]
    created = next(p for a, p in whmcs.requests if a == "CreateInvoice")
    assert created["notes"] == "VoIP credit top-up [auto-topup-42-1]"
    assert created["itemamount1"] == "25.00"
    assert created["paymentmethod"] == "stripe"
    assert created["autoapplycredit"] == "0"
    invoice = whmcs.invoices[int(whmcs.captures[0])]
    assert whmcs.captures == [invoice.id] and invoice.status == "Paid"
    assert client42.credit == Decimal("28.50")
    assert [(e.amount, e.description) for e in _topup_credits(whmcs)] == [
        (Decimal("25.00"), f"VoIP automatic top-up [auto-topup-42-1], invoice {invoice.id}")
    ]
    assert attempts(store) == [("auto-topup-42-1", "paid", f"WHMCS invoice {invoice.id}")]
    assert topups(store) == [("auto-topup-42-1", Decimal("25.00"))]
    # Credit 28.50 in WHMCS: re-armed, nothing charged.
    again = cli("auto-topup", "-v", config=config)
    assert "client 42: re-armed (credit 28.50 > 5.00)" in again.stdout
    assert len(whmcs.captures) == 1 and not latched(store)


def test_a_declined_card_cancels_the_invoice_and_waits(store, cli, config, whmcs, client42):
    client42.card = "decline"
    result = cli("auto-topup", "-v", config=config)
    invoice = max(whmcs.invoices.values(), key=lambda i: i.id)
    detail = (
        f"WHMCS CapturePayment for client 42: Payment Attempt Failed "
        f"(invoice {invoice.id} cancelled)"
    )
    # No [email] operator in this configuration: the operator is told on stderr (exit 1).
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"voipctl: error: client 42: auto top-up declined: {detail} "
        "([email] operator is not set, so no email)"
    )
    assert attempts(store) == [("auto-topup-42-1", "declined", detail)]
    assert invoice.status == "Cancelled"  # never owing
    assert whmcs.captures == [] and _topup_credits(whmcs) == [] and topups(store) == []
    assert [t for t, _, _ in emails(store)] == ["auto_topup_failed"]
    assert cli("auto-topup", config=config).exit_code == 0  # latched: no second capture
    assert [a for a in _actions(whmcs) if a == "CapturePayment"] == ["CapturePayment"]


def test_a_lost_create_invoice_answer_is_found_not_sent_again(store, cli, config, whmcs, client42):
    whmcs.inject("CreateInvoice", "drop_after_commit")
    result = cli("auto-topup", config=config)
    assert result.exit_code == 0, result.output
    assert len(whmcs.invoices) == 1
    assert len(whmcs.captures) == 1 and len(_topup_credits(whmcs)) == 1
    assert attempts(store)[0][1] == "paid"


def test_a_lost_add_credit_answer_is_found_not_sent_again(store, cli, config, whmcs, client42):
    whmcs.inject("AddCredit", "drop_after_commit")
    result = cli("auto-topup", config=config)
    assert result.exit_code == 0, result.output
    assert len(_topup_credits(whmcs)) == 1 and client42.credit == Decimal("28.50")
    assert topups(store) == [("auto-topup-42-1", Decimal("25.00"))]


def test_a_lost_capture_answer_is_unknown_then_settled_by_the_invoice(
    store, cli, config, whmcs, client42
):
    # The capture's answer is lost and the invoice does not show Paid yet: unknown.
    whmcs.inject("CapturePayment", "drop")
    first = cli("auto-topup", config=config)
    assert first.exit_code == 1
    assert "outcome unknown" in first.stderr
    assert "looked at again on the next run" in first.stderr
    assert attempts(store)[0][:2] == ("auto-topup-42-1", "unknown")
    second = cli("auto-topup", config=config)
    assert second.exit_code == 0, second.output
    assert len(whmcs.invoices) == 1 and len(whmcs.captures) == 1
    assert len(_topup_credits(whmcs)) == 1 and attempts(store)[0][1] == "paid"


def _wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_killed_between_the_capture_and_the_credit_charges_and_credits_once(
    store, db_url, tmp_path, config, whmcs, client42
):
    whmcs.delay_after_s["CapturePayment"] = 10  # captured; the answer takes its time
    proc = subprocess.Popen(
        [VOIPCTL, "--config", str(config), "--db", db_url, "auto-topup", "-q"],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for(lambda: whmcs.captures)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with store.transaction() as s:
        row = s.scalar(select(TopupAttempt))
        assert (row.status, row.step) == ("pending", "capture")
    assert _topup_credits(whmcs) == []
    whmcs.delay_after_s.clear()
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
    assert len(whmcs.invoices) == 1
    assert len(whmcs.captures) == 1  # charged once
    assert [e.amount for e in _topup_credits(whmcs)] == [Decimal("25.00")]  # credited once
    assert client42.credit == Decimal("28.50")
    assert topups(store) == [("auto-topup-42-1", Decimal("25.00"))]
    assert [a for a, _ in whmcs.requests].count("CapturePayment") == 1


def test_whmcs_sync_reads_the_top_up_fields_when_mapped(store, tmp_path, whmcs, monkeypatch):
    from voipctl.billing.whmcs import WhmcsBackend
    from voipctl.billing.whmcs_sync import client_columns
    from voipctl.config import load_config

    path = write_config(tmp_path / "voipctl.toml", whmcs)
    text = path.read_text().replace(
        'suspension_state = "id:13"',
        'suspension_state = "id:13"\nauto_topup_amount = "id:21"\n'
        'cc_auth_on_file = "id:22"\ncc_auth_date = "id:23"',
    )
    path.write_text(text)
    backend = WhmcsBackend(load_config(str(path)))
    details = {
        "id": 42,
        "firstname": "Grace",
        "email": "g@example.com",
        "currency_code": "CAD",
        "customfields": [
            {"id": 21, "value": "25.00"},
            {"id": 22, "value": "on"},
            {"id": 23, "value": "2026-01-31"},
        ],
    }
    with store.transaction() as s:
        cols = client_columns(s, backend, details)
    assert cols["auto_topup_amount"] == Decimal("25.00")
    assert cols["cc_auth_on_file"] is True
    assert cols["cc_auth_date"] == date(2026, 1, 31)
    details["customfields"][2]["value"] = "31/01/2026"
    with store.transaction() as s, pytest.raises(Exception) as err:
        client_columns(s, backend, details)
    assert str(err.value) == (
        "client 42: custom field \"id:23\": '31/01/2026' is not a date (YYYY-MM-DD)"
    )


def test_whmcs_credit_none_ends_at_the_paid_invoice(store, cli, tmp_path, whmcs, client42):
    extra = TOPUP + 'whmcs_credit = "none"\n'
    config = write_config(tmp_path / "none.toml", whmcs, emails="smtp", extra=extra)
    result = cli("auto-topup", config=config)
    assert result.exit_code == 0, result.output
    assert len(whmcs.captures) == 1
    assert "AddCredit" not in _actions(whmcs) and _topup_credits(whmcs) == []
    invoice_id = whmcs.captures[0]
    assert attempts(store) == [("auto-topup-42-1", "paid", f"WHMCS invoice {invoice_id}")]
