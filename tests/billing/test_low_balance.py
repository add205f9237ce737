"""low-balance against a real SMTP server on localhost (aiosmtpd): once per crossing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.support.billing_data import add_calls, add_client, add_product, add_service, topup
from tests.support.invariants import check_invariants
from tests.support.smtp_sink import SmtpSink
from voipctl.store.models import Client, OutboxEmail


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


@pytest.fixture
def config(tmp_path, sink):
    path = tmp_path / "voipctl.toml"
    path.write_text(
        "[email]\n"
        'from = "billing@example.net"\n'
        f'smtp_host = "{sink.host}"\nsmtp_port = {sink.port}\ntimeout_s = 5\n'
        'bcc = "noc@example.net"\n'
    )
    return path


@pytest.fixture
def client42(store):
    with store.transaction() as s:
        add_client(s, 42, first_name="Grace", low_balance_threshold=Decimal("5.00"))
        product = add_product(s)
        service = add_service(s, 42, product.id)
        topup(s, 42, "10.00", "t1")
    return service


def _latched(store, client_id=42) -> bool:
    with store.transaction() as s:
        return s.get(Client, client_id).low_balance_alerted


def test_alert_once_per_crossing_rearmed_by_a_top_up(store, cli, config, sink, client42):
    # Unbilled rated calls count: available credit 10.00 - 6.50 = 3.50 <= 5.00.
    add_calls(store, client42, [Decimal("6.50")])
    r = cli("low-balance", "-v", config=config)
    assert r.exit_code == 0, r.output
    assert "low-balance: 1 alerts, 0 re-armed, 1 emails sent" in r.stdout
    assert sink.received == 1
    msg = sink.messages[0]
    assert msg["To"] == "client42@example.com"
    assert msg["From"] == "billing@example.net"
    assert msg["Subject"] == "Low balance alert: your VoIP credit is 3.50 CAD"
    body = msg.get_payload(decode=True).decode()
    assert body.startswith("Dear Grace,")
    assert "fallen to 3.50 CAD" in body and "threshold of 5.00 CAD" in body
    assert sink.handler.envelopes[0][1] == ["client42@example.com", "noc@example.net"]
    assert _latched(store)

    # The next day, still below: no second email.
    assert cli("low-balance", config=config).exit_code == 0
    assert sink.received == 1

    # A top-up above the threshold re-arms; a new fall alerts again.
    with store.transaction() as s:
        topup(s, 42, "20.00", "t2")
    r = cli("low-balance", "-v", config=config)
    assert "0 alerts, 1 re-armed" in r.stdout
    assert not _latched(store) and sink.received == 1
    add_calls(store, client42, [Decimal("20.00")], prefix="fall2")
    assert cli("low-balance", config=config).exit_code == 0
    assert sink.received == 2
    assert "fallen to 3.50 CAD" in sink.messages[1].get_payload(decode=True).decode()
    with store.transaction() as s:
        rows = s.execute(select(OutboxEmail.dedupe_key, OutboxEmail.credit)).all()
    assert rows == [
        ("low_balance_alert:42:1", Decimal("3.50")),
        ("low_balance_alert:42:2", Decimal("3.50")),
    ]
    check_invariants(store, smtp=sink)


def test_at_the_threshold_exactly_alerts_and_above_it_does_not(store, cli, config, sink):
    with store.transaction() as s:
        add_client(s, 1, low_balance_threshold=Decimal("5.00"))
        add_client(s, 2, low_balance_threshold=Decimal("5.00"))
        topup(s, 1, "5.00", "a")
        topup(s, 2, "5.000000001", "b")
    assert cli("low-balance", config=config).exit_code == 0
    assert [m["To"] for m in sink.messages] == ["client1@example.com"]


def test_an_empty_threshold_never_alerts_and_clears_the_latch(store, cli, config, sink):
    with store.transaction() as s:
        add_client(s, 7, low_balance_threshold=None, low_balance_alerted=True)
        topup(s, 7, "-50.00", "debt")
    r = cli("low-balance", "-v", config=config)
    assert r.exit_code == 0
    assert sink.received == 0 and not _latched(store, 7)
    # A threshold set later alerts the client already below it, once.
    with store.transaction() as s:
        s.get(Client, 7).low_balance_threshold = Decimal("1.00")
    cli("low-balance", config=config)
    cli("low-balance", config=config)
    assert sink.received == 1


def test_an_smtp_outage_delays_the_alert_but_never_loses_or_repeats_it(
    store, cli, config, sink, client42
):
    add_calls(store, client42, [Decimal("9.00")])
    sink.stop()
    r = cli("low-balance", config=config)
    assert r.exit_code == 1
    assert "voipctl: error: email 1 (low_balance_alert) to client42@example.com" in r.stderr
    assert "will retry next run" in r.stderr and "Traceback" not in r.stderr
    assert _latched(store)  # decided: the email waits in the outbox
    check_invariants(store, smtp=sink, allow_unsent=True)

    r = cli("low-balance", config=config)  # still down: still waiting, still once
    assert r.exit_code == 1
    sink.start()
    r = cli("low-balance", "-v", config=config)
    assert r.exit_code == 0, r.output
    assert "1 emails sent" in r.stdout
    cli("low-balance", config=config)
    assert sink.received == 1
    with store.transaction() as s:
        row = s.scalar(select(OutboxEmail))
        assert row.attempts == 3 and row.sent_at is not None
    check_invariants(store, smtp=sink)


def test_dry_run_says_who_would_be_alerted_and_writes_nothing(store, cli, config, sink, client42):
    add_calls(store, client42, [Decimal("9.00")])
    r = cli("low-balance", "--dry-run", config=config)
    assert r.exit_code == 0
    assert "would: client 42: low balance alert (credit 1.00 <= threshold 5.00)" in r.stdout
    assert sink.received == 0 and not _latched(store)
    with store.transaction() as s:
        assert s.scalar(select(OutboxEmail)) is None


def test_a_broken_template_sets_no_latch_and_queues_nothing(store, cli, tmp_path, sink, client42):
    add_calls(store, client42, [Decimal("9.00")])
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "low_balance_alert.txt").write_text("Dear {{ client_nickname }}\n")
    config = tmp_path / "broken.toml"
    config.write_text(
        f'[email]\nsmtp_host = "{sink.host}"\nsmtp_port = {sink.port}\n'
        f'templates_dir = "{templates}"\n'
    )
    r = cli("low-balance", config=config)
    assert r.exit_code == 1
    assert "low_balance_alert.txt: 'client_nickname' is undefined" in r.stderr
    assert "Traceback" not in r.stderr
    assert not _latched(store)
    with store.transaction() as s:
        assert s.scalar(select(OutboxEmail)) is None
