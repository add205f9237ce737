"""autobill: rated, unbilled calls of metered services become ledger charges.

One charge per service and run (per chunk of CHUNK calls when a service has
more). The charge and the marking of its CDRs (`billed_entry_id`) are one
database transaction, so a run killed at any instant has either done both or
neither, and the next run bills exactly what is left.

The charge's reference is made from the CDRs it bills (service, first and last
id, count, and a digest of every id and cost), not from the run: a replay of
the same work can only find the same reference, which the ledger takes once.

Race-proofing: the CDRs of a chunk are read with FOR UPDATE on PostgreSQL (rows
locked until commit, so a concurrent re-rate waits) and inside BEGIN IMMEDIATE
on SQLite; the UPDATE that marks them still requires `billed_entry_id IS NULL`
and must touch exactly the rows that were summed, or the chunk is rolled back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import BigInteger, select, type_coerce, update
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing.backend import BillingBackend
from voipctl.errors import VoipctlError
from voipctl.jobs.runner import RunState
from voipctl.store.engine import Store
from voipctl.store.models import Cdr, Product, Service

log = logging.getLogger(__name__)

# CDRs per charge: one charge per service and run for any normal day's traffic.
CHUNK = 50_000
# Ids per `IN (...)` of the marking UPDATE: under SQLite's old bound-parameter limit
# (999), and under PostgreSQL's (65535) with room to spare.
IN_BATCH = {"sqlite": 900, "postgresql": 20_000}


class BillingRace(VoipctlError):
    """The CDRs of a chunk changed between summing and marking them; nothing was written."""


@dataclass(frozen=True)
class Charge:
    """One charge: what it bills and how much (a negative amount)."""

    client_id: int
    service_id: int
    cdr_count: int
    amount: Decimal
    reference: str
    first_id: int
    last_id: int


def _unbilled(service_id: int):
    return (
        Cdr.service_id == service_id,
        Cdr.status == "rated",
        Cdr.billed_entry_id.is_(None),
        Cdr.cost.is_not(None),
    )


def services_to_bill(session: Session, client_id: int | None = None) -> list[tuple[int, int]]:
    """(service id, client id) of metered services with rated, unbilled CDRs."""
    has_unbilled = (
        select(Cdr.id)
        .where(
            Cdr.service_id == Service.id,
            Cdr.status == "rated",
            Cdr.billed_entry_id.is_(None),
            Cdr.cost.is_not(None),
        )
        .exists()
    )
    query = (
        select(Service.id, Service.client_id)
        .join(Product, Product.id == Service.product_id)
        .where(Product.metered.is_(True), has_unbilled)
        .order_by(Service.client_id, Service.id)
    )
    if client_id is not None:
        query = query.where(Service.client_id == client_id)
    return [(row[0], row[1]) for row in session.execute(query)]


def reference_for(service_id: int, rows: list[tuple[int, int]]) -> str:
    """The charge's idempotency key, from the (id, cost units) of the CDRs it bills."""
    digest = hashlib.sha256()
    for cdr_id, units in rows:
        digest.update(f"{cdr_id}:{units};".encode())
    return (
        f"autobill:s{service_id}:{rows[0][0]}-{rows[-1][0]}:n{len(rows)}:{digest.hexdigest()[:16]}"
    )


def _chunk(session: Session, service_id: int, *, lock: bool) -> list[tuple[int, int]]:
    # Costs are read as the stored integer units: summed exactly, converted once.
    query = (
        select(Cdr.id, type_coerce(Cdr.cost, BigInteger))
        .where(*_unbilled(service_id))
        .order_by(Cdr.id)
        .limit(CHUNK)
    )
    if lock:
        query = query.with_for_update()
    return [(row[0], row[1]) for row in session.execute(query)]


def _charge_of(client_id: int, service_id: int, rows: list[tuple[int, int]]) -> Charge:
    total = sum(units for _, units in rows)
    return Charge(
        client_id=client_id,
        service_id=service_id,
        cdr_count=len(rows),
        amount=-money.from_units(total),
        reference=reference_for(service_id, rows),
        first_id=rows[0][0],
        last_id=rows[-1][0],
    )


def _batches(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def bill_service(
    store: Store, backend: BillingBackend, service_id: int, client_id: int
) -> list[Charge]:
    """Bill every rated, unbilled CDR of one service: one transaction per chunk."""
    charges = []
    while True:
        with store.session() as session:
            rows = _chunk(session, service_id, lock=True)
            if not rows:
                break
            charge = _charge_of(client_id, service_id, rows)
            entry_id = backend.post_charge(
                session,
                client_id=client_id,
                service_id=service_id,
                amount=charge.amount,
                reference=charge.reference,
                note=f"usage: {charge.cdr_count} calls (CDR {charge.first_id}..{charge.last_id})",
                cdr_count=charge.cdr_count,
            )
            marked = 0
            size = IN_BATCH.get(store.dialect, 900)
            for batch in _batches([cdr_id for cdr_id, _ in rows], size):
                result = session.execute(
                    update(Cdr)
                    .where(Cdr.id.in_(batch), Cdr.billed_entry_id.is_(None))
                    .values(billed_entry_id=entry_id)
                    .execution_options(synchronize_session=False)
                )
                marked += result.rowcount
            if marked != len(rows):
                # Raising rolls back the charge together with the marks.
                raise BillingRace(
                    f"service {service_id}: {len(rows)} CDRs summed but {marked} marked; "
                    "nothing was written, run autobill again"
                )
        charges.append(charge)
        if len(rows) < CHUNK:
            break
    return charges


def plan_service(store: Store, service_id: int, client_id: int) -> list[Charge]:
    """What `bill_service` would charge, read only (the dry run)."""
    charges = []
    with store.sessions() as session:
        last = 0
        while True:
            query = (
                select(Cdr.id, type_coerce(Cdr.cost, BigInteger))
                .where(*_unbilled(service_id), Cdr.id > last)
                .order_by(Cdr.id)
                .limit(CHUNK)
            )
            rows = [(row[0], row[1]) for row in session.execute(query)]
            if not rows:
                break
            charges.append(_charge_of(client_id, service_id, rows))
            last = rows[-1][0]
            if len(rows) < CHUNK:
                break
        session.rollback()
    return charges


def run_autobill(
    store: Store,
    backend: BillingBackend,
    run: RunState,
    *,
    client_id: int | None = None,
    dry_run: bool = False,
) -> list[Charge]:
    """Bill every metered service's rated, unbilled CDRs (or plan it, on a dry run).

    A service that fails is reported through `run.fail` and the others still run.
    """
    with store.sessions() as session:
        services = services_to_bill(session, client_id)
        session.rollback()
    charges: list[Charge] = []
    for service_id, owner in services:
        try:
            if dry_run:
                charges += plan_service(store, service_id, owner)
            else:
                charges += bill_service(store, backend, service_id, owner)
        except VoipctlError as exc:
            run.fail(f"service {service_id} of client {owner}: {exc}")
    if not dry_run:
        for failure in backend.push_charges(store):
            run.fail(failure)
    run.summary.update(
        {
            "charges": len(charges),
            "cdrs": sum(c.cdr_count for c in charges),
            "amount": money.fmt(-sum((c.amount for c in charges), Decimal(0))),
        }
    )
    return charges
