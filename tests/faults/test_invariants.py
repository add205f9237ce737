"""The shared invariant checker finds each planted violation, and passes a consistent database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage

import pytest
from sqlalchemy import text, update

from tests.support.invariants import InvariantViolation, check_invariants
from voipctl.store.models import (
    Cdr,
    Client,
    LedgerEntry,
    OutboxEmail,
    Product,
    Service,
    SuspensionEvent,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
COSTS = [Decimal("0.0110"), Decimal("0.2500"), Decimal("1.000000001")]


def _now():
    return datetime.now(UTC)


@pytest.fixture
def world(store):
    """Two clients: client 1 billed for three calls and alerted; client 2 suspended."""
    with store.transaction() as s:
        s.add(Product(id=1, name="std", created_at=_now()))
        for cid in (1, 2):
            s.add(
                Client(
                    id=cid,
                    first_name=f"F{cid}",
                    last_name="L",
                    email=f"c{cid}@example.com",
                    currency="CAD",
                    created_at=_now(),
                    updated_at=_now(),
                )
            )
        s.flush()
        for sid in (1, 2):
            s.add(
                Service(
                    id=sid,
                    client_id=sid,
                    product_id=1,
                    server="vodia1",
                    server_type="vodia",
                    domain_field="t | 5195550100",
                    created_at=_now(),
                )
            )
        s.flush()
        charge = LedgerEntry(
            client_id=1,
            kind="charge",
            amount=-sum(COSTS),
            reference="autobill:1:1",
            cdr_count=len(COSTS),
            service_id=1,
            created_at=_now(),
        )
        s.add(charge)
        s.flush()
        for i, cost in enumerate(COSTS):
            s.add(_cdr(i, cost, billed_entry_id=charge.id))
        s.add(_cdr(99, Decimal("0.5")))  # rated, not billed yet: allowed
        s.add(
            OutboxEmail(
                client_id=1,
                template="low_balance_alert",
                dedupe_key="low_balance_alert:1:1",
                recipient="c1@example.com",
                subject="Low balance",
                body_text="Hi",
                created_at=_now(),
                sent_at=_now(),
            )
        )
        s.add(
            SuspensionEvent(
                service_id=2,
                client_id=2,
                action="suspend",
                actor="autosuspend",
                ok=True,
                provider_response="200",
                created_at=_now(),
            )
        )
        s.execute(update(Service).where(Service.id == 2).values(suspended=True))
    return store


def _cdr(i: int, cost: Decimal, *, billed_entry_id=None, **over) -> Cdr:
    values = dict(
        server="vodia1",
        provider_id=f"call-{i}",
        service_id=1,
        client_id=1,
        direction="outbound",
        caller="5195550100",
        number=f"1519555{i:04d}",
        start=T0 + timedelta(minutes=i),
        billsec=60,
        pulled_at=_now(),
        status="rated",
        cost=cost,
        billed_entry_id=billed_entry_id,
    )
    values.update(over)
    return Cdr(**values)


def sent(to: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["To"] = to
    msg["Subject"] = subject
    return msg


def broken(store, **kwargs) -> str:
    with pytest.raises(InvariantViolation) as caught:
        check_invariants(store, **kwargs)
    return str(caught.value)


def test_a_consistent_database_passes_and_is_counted(world):
    report = check_invariants(
        world, smtp=[sent("F1 <c1@example.com>", "Low balance")], provider_suspended={2: True}
    )
    assert (report.cdrs, report.billed_cdrs, report.charges) == (4, 3, 1)
    assert report.charged_units == 1_261_000_001
    assert report.emails == 1 and report.emails_received == 1
    assert report.suspended_services == 1


def test_the_same_call_under_two_provider_ids_is_found(world):
    with world.transaction() as s:
        s.add(_cdr(0, COSTS[0], provider_id="call-0-again"))
    assert "the same call stored 2 times" in broken(world)
    check_invariants(world, allow_identical_calls=True)  # a LES.NET feed may really repeat
    check_invariants(world, allow_identical_calls=1)  # the feed holds one such pair
    with world.transaction() as s:
        s.add(_cdr(0, COSTS[0], provider_id="call-0-thrice"))
    assert "2 rows repeat another call's content" in broken(world, allow_identical_calls=1)


def test_the_same_provider_id_twice_is_found(world):
    # The unique key forbids it; drop the key to prove the checker does not rely on it.
    with world.engine.begin() as conn:
        if world.is_sqlite:
            conn.exec_driver_sql("CREATE TABLE cdrs_copy AS SELECT * FROM cdrs")
            conn.exec_driver_sql("DROP TABLE cdrs")
            conn.exec_driver_sql("ALTER TABLE cdrs_copy RENAME TO cdrs")
        else:
            conn.exec_driver_sql("ALTER TABLE cdrs DROP CONSTRAINT uq_cdrs_server_provider_id")
        conn.execute(
            text(
                "INSERT INTO cdrs (id, server, provider_id, service_id, client_id, direction, "
                "start, billsec, pulled_at, rerate_count) VALUES (1000, 'vodia1', 'call-1', 1, "
                "1, 'inbound', 1, 0, 1, 0)"
            )
        )
    assert "CDR stored twice: server vodia1 provider_id 'call-1' x2" in broken(world)


def test_a_charge_that_differs_from_the_costs_by_one_unit_is_found(world):
    with world.transaction() as s:
        s.execute(
            update(LedgerEntry)
            .where(LedgerEntry.kind == "charge")
            .values(amount=-sum(COSTS) - Decimal("0.000000001"))
        )
    message = broken(world)
    assert "difference -1" in message
    assert "client 1: charges and billed costs differ by -1 units" in message


def test_a_billed_cdr_without_its_charge_is_found(world):
    with world.transaction() as s:
        s.add(_cdr(7, Decimal("0.10"), billed_entry_id=424242))
    message = broken(world)
    assert "is billed by ledger entry 424242, which is missing" in message
    assert "ledger charges total" in message


def test_a_cdr_billed_by_two_charges_is_found(world):
    # The second charge took the CDR over: the first now bills fewer CDRs than it says.
    with world.transaction() as s:
        second = LedgerEntry(
            client_id=1,
            kind="charge",
            amount=-COSTS[0],
            reference="autobill:1:2",
            cdr_count=1,
            created_at=_now(),
        )
        s.add(second)
        s.flush()
        s.execute(update(Cdr).where(Cdr.provider_id == "call-0").values(billed_entry_id=second.id))
    message = broken(world)
    assert "says it billed 3 CDR(s) but 2 point at it" in message
    assert "ledger charges total" in message


def test_a_billed_cdr_with_no_cost_is_found(world):
    with world.transaction() as s:
        s.execute(update(Cdr).where(Cdr.provider_id == "call-1").values(cost=None))
    assert "1 billed CDR(s) have no rated cost" in broken(world)


def test_an_email_never_sent_is_found_unless_allowed(world):
    with world.transaction() as s:
        s.add(
            OutboxEmail(
                client_id=2,
                template="voip_zero_balance",
                dedupe_key="voip_zero_balance:2:1",
                recipient="c2@example.com",
                subject="Suspended",
                body_text="x",
                created_at=_now(),
            )
        )
    assert "1 decided email(s) never sent: voip_zero_balance:2:1" in broken(world)
    check_invariants(world, allow_unsent=True)


def test_an_email_received_twice_is_found(world):
    twice = [sent("c1@example.com", "Low balance")] * 2
    message = broken(world, smtp=twice)
    assert "received 2 email(s) but the outbox marks 1 as sent" in message
    assert "received 2 time(s), outbox says 1" in message
    assert "received 2 email(s)" in broken(world, smtp=2)


def test_the_same_message_id_twice_is_one_email_counted_as_resent(world):
    first, again = sent("c1@example.com", "Low balance"), sent("c1@example.com", "Low balance")
    first["Message-ID"] = again["Message-ID"] = "<low_balance_alert.1.1@voipctl>"
    report = check_invariants(world, smtp=[first, again])
    assert (report.emails_received, report.emails_resent) == (1, 1)
    other = sent("c1@example.com", "Low balance")
    other["Message-ID"] = "<another@voipctl>"
    assert "received 2 email(s)" in broken(world, smtp=[first, other])


def test_an_email_lost_is_found(world):
    assert "received 0 email(s)" in broken(world, smtp=[])


def test_the_wrong_email_received_is_found_even_when_the_count_matches(world):
    message = broken(world, smtp=[sent("c2@example.com", "Low balance")])
    assert "email to c2@example.com" in message and "email to c1@example.com" in message


def test_a_suspension_without_a_confirmed_audit_row_is_found(world):
    with world.transaction() as s:
        s.execute(update(Service).where(Service.id == 1).values(suspended=True))
        # A failed attempt is not a confirmation.
        s.add(
            SuspensionEvent(
                service_id=1,
                client_id=1,
                action="suspend",
                actor="autosuspend",
                ok=False,
                provider_response="503",
                created_at=_now(),
            )
        )
    assert "service 1 is recorded suspended without a provider-confirmed suspend" in broken(world)


def test_an_unrecorded_confirmed_suspension_is_found(world):
    with world.transaction() as s:
        s.execute(update(Service).where(Service.id == 2).values(suspended=False))
    assert "service 2 is recorded active but its last confirmed action is a suspend" in broken(
        world
    )


def test_a_later_confirmed_unsuspend_clears_the_suspension(world):
    with world.transaction() as s:
        s.add(
            SuspensionEvent(
                service_id=2,
                client_id=2,
                action="unsuspend",
                actor="operator",
                ok=True,
                created_at=_now(),
            )
        )
    assert "service 2 is recorded active" not in broken(world)  # still suspended in the row
    assert "service 2 is recorded suspended without a provider-confirmed suspend" in broken(world)


def test_manual_action_required_is_the_one_exception(world):
    with world.transaction() as s:
        s.execute(
            update(Service)
            .where(Service.id == 1)
            .values(suspended=True, manual_action_required=True)
        )
    check_invariants(world)


def test_the_provider_disagreeing_with_the_database_is_found(world):
    message = broken(world, provider_suspended={2: False})
    assert "service 2: the provider says suspended=False, the database says True" in message


def test_every_violation_is_listed_not_only_the_first(world):
    with world.transaction() as s:
        s.execute(update(Service).where(Service.id == 2).values(suspended=False))
        s.execute(update(LedgerEntry).values(amount=Decimal("-1")))
    with pytest.raises(InvariantViolation) as caught:
        check_invariants(world, smtp=0)
    assert len(caught.value.violations) >= 3
