"""WhmcsBackend against the fake WHMCS: credit, owing, exactly-once usage postings, emails,
and the suspension write-back."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import select

from tests.fakes.whmcs_env import write_config
from voipctl import catalog
from voipctl.billing import ledger
from voipctl.billing.whmcs import WhmcsBackend
from voipctl.config import load_config
from voipctl.notify import outbox
from voipctl.store.models import ExternalPosting, OutboxEmail

_refs = itertools.count()


def _backend(tmp_path, whmcs, **kw) -> WhmcsBackend:
    return WhmcsBackend(load_config(str(write_config(tmp_path / "voipctl.toml", whmcs, **kw))))


@pytest.fixture
def backend(tmp_path, whmcs):
    return _backend(tmp_path, whmcs)


def _client(store, whmcs, client_id: int, credit: str = "10.00") -> None:
    whmcs.add_client(client_id, credit=credit)
    with store.transaction() as session:
        catalog.add_client(
            session, client_id, first_name="A", last_name="B", email="a@example.com", currency="CAD"
        )


def _charge(store, client_id: int, amount: str) -> None:
    with store.transaction() as session:
        ledger.post(
            session,
            client_id=client_id,
            kind="charge",
            amount=-Decimal(amount),
            reference=f"test-charge-{next(_refs)}",
        )


def _queue(store, template: str, client_id: int) -> None:
    with store.transaction() as session:
        outbox.queue(
            session,
            template=template,
            dedupe_key=f"{template}:{client_id}:1",
            recipient="a@example.com",
            subject="s",
            body_text="b",
            client_id=client_id,
        )


def _removed(whmcs, client_id: int) -> list[Decimal]:
    return [-e.amount for e in whmcs.removals(client_id)]


def _states(store) -> list[str]:
    with store.transaction() as session:
        return list(session.scalars(select(ExternalPosting.state).order_by(ExternalPosting.id)))


def test_credit_is_whmcs_credit_less_usage_not_yet_posted(store, whmcs, backend):
    _client(store, whmcs, 42, credit="10.00")
    _charge(store, 42, "1.2345")
    with store.transaction() as session:
        assert backend.credit(session, 42) == Decimal("8.7655")
    assert backend.push_charges(store) == []
    assert _removed(whmcs, 42) == [Decimal("1.23")]
    with store.transaction() as session:
        # WHMCS has 8.77; the half cent not posted yet still counts against the client.
        assert backend.credit(session, 42) == Decimal("8.7655")


def test_owing_is_unpaid_invoices_due_today_or_earlier(store, whmcs, backend):
    whmcs.add_client(7)
    today = date.today()
    whmcs.add_invoice(7, "12.50", today.isoformat())
    whmcs.add_invoice(7, "3.00", "0000-00-00")  # no due date: due at once
    whmcs.add_invoice(7, "99.00", (today + timedelta(days=1)).isoformat())
    whmcs.add_invoice(7, "40.00", today.isoformat(), status="Paid")
    whmcs.add_invoice(8, "5.00", today.isoformat())
    with store.transaction() as session:
        assert backend.owing(session, 7) == Decimal("15.50")


def test_owing_counts_what_is_left_to_pay_on_a_partly_paid_invoice(store, whmcs, backend):
    whmcs.add_client(7)
    today = date.today().isoformat()
    partly = whmcs.add_invoice(7, "40.00", today)
    whmcs.pay(partly.id, "30.00")
    whmcs.add_invoice(7, "2.50", today)
    whmcs.add_invoice(7, "0.00", today)  # nothing to pay: its balance is not asked for
    with store.transaction() as session:
        assert backend.owing(session, 7) == Decimal("12.50")
    asked = [p["invoiceid"] for a, p in whmcs.requests if a == "GetInvoice"]
    assert asked == [str(partly.id), str(partly.id + 1)]
    whmcs.pay(partly.id, "10.00")  # paid in full: no longer Unpaid
    assert whmcs.invoices[partly.id].status == "Paid"
    with store.transaction() as session:
        assert backend.owing(session, 7) == Decimal("2.50")


@pytest.mark.parametrize("shape", ["flat", "nested"])
def test_a_lost_removal_is_found_in_either_getcredits_shape(store, whmcs, backend, shape):
    whmcs.credits_shape = shape
    _client(store, whmcs, 42, credit="5.00")
    _charge(store, 42, "1.00")
    whmcs.inject("AddCredit", "drop_after_commit")
    assert backend.push_charges(store) == []
    assert _removed(whmcs, 42) == [Decimal("1.00")]
    assert _states(store) == ["posted"]
    assert backend.push_charges(store) == []
    assert _removed(whmcs, 42) == [Decimal("1.00")]


@pytest.mark.parametrize(
    ("charge", "expected"),
    [
        ("0.0110", ["0.01", "0.01", "0.01"]),
        ("0.0150", ["0.02", "0.01", "0.02"]),
        ("0.0049", [None, "0.01", None]),
    ],
)
def test_credit_mode_carries_the_sub_cent_remainder(store, whmcs, backend, charge, expected):
    _client(store, whmcs, 42)
    per_run = []
    for _ in range(3):
        _charge(store, 42, charge)
        before = len(whmcs.removals(42))
        assert backend.push_charges(store) == []
        new = [str(a) for a in _removed(whmcs, 42)[before:]]
        per_run.append(new[0] if new else None)
    assert per_run == expected
    total = Decimal(charge) * 3
    assert sum(_removed(whmcs, 42)) == total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert all(e.description.startswith("VoIP usage [voipctl-usage-42-") for e in whmcs.removals())


def test_a_second_push_posts_nothing(store, whmcs, backend):
    _client(store, whmcs, 42)
    _charge(store, 42, "2.50")
    backend.push_charges(store)
    backend.push_charges(store)
    assert _removed(whmcs, 42) == [Decimal("2.50")]
    assert _states(store) == ["posted"]


def test_response_lost_after_commit_is_found_and_not_posted_again(store, whmcs, backend):
    _client(store, whmcs, 42)
    _charge(store, 42, "1.00")
    whmcs.inject("AddCredit", "drop_after_commit")
    assert backend.push_charges(store) == []  # looked up at once: found
    backend.push_charges(store)
    assert _removed(whmcs, 42) == [Decimal("1.00")]
    assert [a for a, _ in whmcs.requests].count("AddCredit") == 1
    assert _states(store) == ["posted"]


def test_crash_after_whmcs_committed_is_resolved_by_lookup_on_the_next_run(
    store, whmcs, tmp_path, monkeypatch
):
    _client(store, whmcs, 42)
    _charge(store, 42, "1.00")
    backend = _backend(tmp_path, whmcs)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies before marking the intent posted

    monkeypatch.setattr(WhmcsBackend, "_mark_posted", staticmethod(crash))
    with pytest.raises(KeyboardInterrupt):
        backend.push_charges(store)
    assert _states(store) == ["intent"]
    monkeypatch.undo()
    monkeypatch.setenv("WHMCS_TEST_IDENTIFIER", whmcs.identifier)
    monkeypatch.setenv("WHMCS_TEST_SECRET", whmcs.secret)
    _charge(store, 42, "0.50")
    assert _backend(tmp_path, whmcs).push_charges(store) == []
    assert _removed(whmcs, 42) == [Decimal("1.00"), Decimal("0.50")]
    assert _states(store) == ["posted", "posted"]


def test_request_lost_before_whmcs_saw_it_is_sent_on_the_next_run(store, whmcs, backend):
    _client(store, whmcs, 42)
    _charge(store, 42, "1.00")
    whmcs.inject("AddCredit", "drop")
    failures = backend.push_charges(store)
    assert len(failures) == 1
    assert "AddCredit for client 42" in failures[0] and "next run" in failures[0]
    assert whmcs.secret not in failures[0]
    assert _removed(whmcs, 42) == []
    assert backend.push_charges(store) == []
    assert _removed(whmcs, 42) == [Decimal("1.00")]


def test_whmcs_refusing_a_removal_keeps_the_intent_until_it_can_be_posted(store, whmcs, backend):
    _client(store, whmcs, 42, credit="0.50")
    _charge(store, 42, "1.00")
    failures = backend.push_charges(store)
    assert "AddCredit for client 42: Insufficient Credit Balance" in failures[0]
    with store.transaction() as session:
        assert backend.credit(session, 42) == Decimal("-0.50")
    whmcs.clients[42].credit += Decimal("5.00")  # a top-up in WHMCS
    assert backend.push_charges(store) == []
    assert _removed(whmcs, 42) == [Decimal("1.00")]
    with store.transaction() as session:
        assert backend.credit(session, 42) == Decimal("4.50")


def test_invoice_mode_creates_an_invoice_paid_from_credit_once(store, whmcs, tmp_path):
    backend = _backend(tmp_path, whmcs, post_usage="invoice")
    _client(store, whmcs, 42, credit="1.00")
    _charge(store, 42, "0.3049")
    whmcs.inject("CreateInvoice", "drop_after_commit")
    assert backend.push_charges(store) == []
    backend.push_charges(store)
    invoices = [i for i in whmcs.invoices.values() if i.userid == 42]
    assert len(invoices) == 1
    assert invoices[0].total == Decimal("0.30") and invoices[0].status == "Paid"
    assert "[voipctl-usage-42-1]" in invoices[0].notes
    assert whmcs.clients[42].credit == Decimal("0.70")
    _charge(store, 42, "1.00")  # more than the credit left: an unpaid remainder is owing
    backend.push_charges(store)
    with store.transaction() as session:
        assert backend.owing(session, 42) == Decimal("0.30")
        assert backend.credit(session, 42) == Decimal("-0.0049")


def test_alert_emails_go_through_whmcs_sendemail(store, whmcs, backend):
    _client(store, whmcs, 42)
    _queue(store, "low_balance_alert", 42)
    delivery = backend.deliver_alerts(store, backend.config)
    assert delivery.sent == 1 and not delivery.errors
    assert whmcs.emails == [
        {"messagename": "Low Balance Alert", "id": 42, "email": "client42@example.com"}
    ]
    again = backend.deliver_alerts(store, backend.config)
    assert again.sent == 0 and len(whmcs.emails) == 1
    with store.transaction() as session:
        assert session.scalar(select(OutboxEmail.sent_at)) is not None


def test_sendemail_failure_is_reported_and_retried(store, whmcs, backend):
    _client(store, whmcs, 42)
    whmcs.templates.discard("VoIP Zero Balance")
    _queue(store, "voip_zero_balance", 42)
    delivery = backend.deliver_alerts(store, backend.config)
    assert delivery.failed == 1
    assert "SendEmail for client 42: Email Template not found" in delivery.errors[0]
    whmcs.templates.add("VoIP Zero Balance")
    assert backend.deliver_alerts(store, backend.config).sent == 1
    assert [e["messagename"] for e in whmcs.emails] == ["VoIP Zero Balance"]


def test_suspension_state_is_written_to_the_custom_field(store, whmcs, backend):
    _client(store, whmcs, 42)
    with store.transaction() as session:
        backend.suspension_changed(session, 42, True)
    assert whmcs.custom(42, "VoIP Suspended") == "yes"
    update = [p for a, p in whmcs.requests if a == "UpdateClient"][-1]
    assert update["clientid"] == "42"
    with store.transaction() as session:
        backend.suspension_changed(session, 42, False)
    assert whmcs.custom(42, "VoIP Suspended") == "none"
    # An operator's override is theirs: not overwritten.
    with store.transaction() as session:
        catalog.update_client(session, 42, voip_suspended="no")
        backend.suspension_changed(session, 42, True)
    assert whmcs.custom(42, "VoIP Suspended") == "none"


def test_whmcs_down_while_writing_the_state_back_does_not_raise(store, whmcs, backend, caplog):
    _client(store, whmcs, 42)
    whmcs.inject("UpdateClient", "500", times=2)  # both attempts (retries = 1)
    with store.transaction() as session:
        backend.suspension_changed(session, 42, True)  # the provider's change stands
    assert "UpdateClient for client 42: HTTP 500" in caplog.text
    assert whmcs.custom(42, "VoIP Suspended") == ""
    with store.transaction() as session:
        backend.suspension_changed(session, 42, True)  # the next change writes it
    assert whmcs.custom(42, "VoIP Suspended") == "yes"


def test_a_reversed_charge_is_given_back_as_credit(store, whmcs, backend):
    _client(store, whmcs, 42, credit="10.00")
    with store.transaction() as session:
        charge = ledger.post(
            session, client_id=42, kind="charge", amount=Decimal("-1.00"), reference="c1"
        ).entry.id
    backend.push_charges(store)
    with store.transaction() as session:
        ledger.post(
            session,
            client_id=42,
            kind="reversal",
            amount=Decimal("0.4049"),
            reference="r1",
            reverses_id=charge,
        )
    assert backend.push_charges(store) == []
    assert [(e.amount, e.description[:12]) for e in whmcs.credit_log] == [
        (Decimal("-1.00"), "VoIP usage ["),
        (Decimal("0.40"), "VoIP usage ["),
    ]
    assert [p for a, p in whmcs.requests if a == "AddCredit"][-1]["type"] == "add"
    assert whmcs.clients[42].credit == Decimal("9.40")


def test_whmcs_post_command_dry_run_then_post(store, whmcs, tmp_path, cli):
    path = write_config(tmp_path / "voipctl.toml", whmcs)
    _client(store, whmcs, 42)
    _charge(store, 42, "0.125")
    r = cli("whmcs", "post", "--dry-run", config=path)
    assert r.exit_code == 0
    assert r.stdout == "would post: client 42: remove credit 0.13 (voipctl-usage-42-1)\n"
    assert whmcs.credit_log == [] and _states(store) == []
    r = cli("-v", "whmcs", "post", config=path)
    assert r.exit_code == 0, r.output
    assert "whmcs post: 1 postings" in r.stdout
    assert _removed(whmcs, 42) == [Decimal("0.13")]


def test_autobill_names_the_client_whmcs_does_not_know_and_keeps_the_charge(
    store, whmcs, tmp_path, cli
):
    path = write_config(tmp_path / "voipctl.toml", whmcs)
    with store.transaction() as session:
        catalog.add_client(
            session, 5, first_name="A", last_name="B", email="a@example.com", currency="CAD"
        )
    _charge(store, 5, "2.00")
    r = cli("-vv", "autobill", config=path)
    assert r.exit_code == 1
    assert "WHMCS AddCredit for client 5: Client ID Not Found" in r.stderr
    assert whmcs.secret not in r.output
    assert _states(store) == ["intent"]  # kept, looked up again on the next run
