"""autobill: rated, unbilled calls of metered services become ledger charges.

One charge per service and run. The charge and the marking of its CDRs
(`billed_entry_id`, one set-based UPDATE over the service's id range) are in
one database transaction, so a run killed at any instant has done both or
neither, and the next run bills exactly what is left. The charges of several
services share a transaction, up to BATCH calls, so a run commits a few times
rather than once per service; each charge has its own savepoint, so one
service's failure does not undo the others. A run of more than CHUNK calls (a
backlog) is cut into windows of consecutive ids of at most CHUNK calls, each
one transaction with one charge per service in it (see `_batches`).

Sums and counts come from GROUP BY queries on `ix_cdrs_unbilled`, a partial
index holding only rated, unbilled calls (by service, id, with the cost): the
work is proportional to what is left to bill, never to the table.

The charge's reference is made from the CDRs it bills (service, first and last
id, count, and a digest of the cost and id sums), not from the run: a replay of
the same work can only find the same reference, which the ledger takes once.
A CDR once billed stays billed (re-rating corrects its charge, never clears the
mark), so two different sets of calls never share a first id and a reference.

Race-proofing: on SQLite a charge's sums are read inside BEGIN IMMEDIATE (no
other writer until commit). On PostgreSQL the marking UPDATE returns the count
and cost sum of exactly the rows it marked; if a concurrent re-rate changed
them since they were summed, the charge is rolled back (BillingRace).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing.backend import BillingBackend
from voipctl.errors import VoipctlError
from voipctl.jobs.runner import RunState
from voipctl.pause import pause_point
from voipctl.store.engine import Store, cdrs_through
from voipctl.store.models import UNBILLED_CDR, Product, Service

log = logging.getLogger(__name__)

# Most CDRs in one charge: one charge per service and run for any normal day's traffic.
CHUNK = 50_000
# Most CDRs per transaction: the charges of small services go together up to this, so
# a run over thousands of services commits a few hundred times, not once per service,
# and a commit stays small (a service with more calls is a transaction of its own).
BATCH = 2_000

# The terms of ix_cdrs_unbilled, written literally so both planners can use it.
_UNBILLED = f"{UNBILLED_CDR} AND cost IS NOT NULL"


class BillingRace(VoipctlError):
    """The CDRs of a charge changed between summing and marking them; nothing was written."""


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


@dataclass(frozen=True)
class _Sums:
    """The unbilled calls of one charge, as the database summed them."""

    service_id: int
    count: int
    units: int
    first_id: int
    last_id: int
    id_sum: int


def reference_for(sums: _Sums) -> str:
    """The charge's idempotency key, from the CDRs it bills."""
    digest = hashlib.sha256(
        f"{sums.service_id}:{sums.first_id}:{sums.last_id}:{sums.count}:"
        f"{sums.units}:{sums.id_sum}".encode()
    ).hexdigest()[:16]
    return f"autobill:s{sums.service_id}:{sums.first_id}-{sums.last_id}:n{sums.count}:{digest}"


def _metered(session: Session, client_id: int | None, service_id: int | None) -> dict[int, int]:
    """service id -> client id of the metered services to bill."""
    query = (
        select(Service.id, Service.client_id)
        .join(Product, Product.id == Service.product_id)
        .where(Product.metered.is_(True))
    )
    if client_id is not None:
        query = query.where(Service.client_id == client_id)
    if service_id is not None:
        query = query.where(Service.id == service_id)
    return {row[0]: row[1] for row in session.execute(query)}


def _in_list(services: dict[int, int]) -> str:
    # Integers from the database, written inline: one statement text per run and no
    # bound-parameter limit, however many services there are.
    return ",".join(str(int(s)) for s in sorted(services))


@dataclass(frozen=True)
class _Task:
    """One charge to make: the service's unbilled calls with low < id <= high."""

    service_id: int
    client_id: int
    low: int
    high: int
    count: int  # as planned; the transaction sums again


def _batches(session: Session, services: dict[int, int]) -> list[list[_Task]]:
    """The run's charges, grouped in transactions, in id and (client, service) order.

    One GROUP BY over the partial index counts each service's calls per bucket of
    ids (an eighth of CHUNK ids), up to the newest id now: calls stored while the
    run goes wait for the next run. Up to CHUNK calls in all: one charge per
    service, small services sharing a transaction up to BATCH calls. More (a
    backlog): windows of consecutive ids holding at most CHUNK calls, each one
    transaction with one charge per service in it, so that a transaction rewrites
    one stretch of the table rather than a page here and there across all of it.
    """
    high = session.scalar(text("SELECT max(id) FROM cdrs"))
    if high is None:
        return []
    size = max(1, CHUNK // 8)
    table = cdrs_through(session, "ix_cdrs_unbilled")
    rows = session.execute(
        text(
            f"SELECT service_id, id / {size}, count(*) FROM {table} "
            f"WHERE service_id IN ({_in_list(services)}) AND {_UNBILLED} AND id <= :high "
            "GROUP BY 1, 2"
        ),
        {"high": high},
    ).all()
    if sum(r[2] for r in rows) <= CHUNK:
        counts: dict[int, int] = {}
        for service_id, _, count in rows:
            counts[service_id] = counts.get(service_id, 0) + count
        tasks = [_Task(sid, services[sid], 0, high, n) for sid, n in counts.items()]
        return list(_grouped(sorted(tasks, key=lambda t: (t.client_id, t.service_id)), BATCH))
    buckets: dict[int, dict[int, int]] = {}
    for service_id, bucket, count in rows:
        held = buckets.setdefault(int(bucket), {})
        held[service_id] = held.get(service_id, 0) + count
    batches = []
    window: dict[int, int] = {}
    first = last = 0
    for bucket in sorted(buckets):
        if window and sum(window.values()) + sum(buckets[bucket].values()) > CHUNK:
            batches.append(_window(services, window, first * size - 1, (last + 1) * size - 1))
            window = {}
        if not window:
            first = bucket
        last = bucket
        for service_id, count in buckets[bucket].items():
            window[service_id] = window.get(service_id, 0) + count
    if window:
        batches.append(
            _window(services, window, first * size - 1, min(high, (last + 1) * size - 1))
        )
    return batches


def _window(services: dict[int, int], counts: dict[int, int], low: int, high: int) -> list[_Task]:
    tasks = [_Task(sid, services[sid], low, high, n) for sid, n in counts.items()]
    return sorted(tasks, key=lambda t: (t.client_id, t.service_id))


def _grouped(tasks: list[_Task], limit: int) -> Iterator[list[_Task]]:
    """Consecutive tasks of at most `limit` calls together (a bigger task alone)."""
    batch: list[_Task] = []
    held = 0
    for task in tasks:
        if batch and held + task.count > limit:
            yield batch
            batch, held = [], 0
        batch.append(task)
        held += task.count
    if batch:
        yield batch


def _sums(session: Session, task: _Task) -> _Sums | None:
    """The task's unbilled calls as they are now (None if none is left)."""
    table = cdrs_through(session, "ix_cdrs_unbilled")
    row = session.execute(
        text(
            "SELECT count(*), sum(cost), min(id), max(id), sum(id) "
            f"FROM {table} WHERE service_id = :s AND {_UNBILLED} "
            "AND id > :low AND id <= :high"
        ),
        {"s": task.service_id, "low": task.low, "high": task.high},
    ).one()
    if not row[0]:
        return None
    return _Sums(task.service_id, *(int(v) for v in row))


def _charge_of(client_id: int, sums: _Sums) -> Charge:
    return Charge(
        client_id=client_id,
        service_id=sums.service_id,
        cdr_count=sums.count,
        amount=-money.from_units(sums.units),
        reference=reference_for(sums),
        first_id=sums.first_id,
        last_id=sums.last_id,
    )


_MARK = (
    "UPDATE {cdrs} SET billed_entry_id = :entry "
    f"WHERE service_id = :service AND {_UNBILLED} AND id BETWEEN :first AND :last"
)


def _mark(session: Session, sums: _Sums, entry_id: int) -> None:
    """Mark the summed CDRs billed by `entry_id`; BillingRace if they are not what was summed."""
    mark = _MARK.format(cdrs=cdrs_through(session, "ix_cdrs_unbilled"))
    params = {
        "entry": entry_id,
        "service": sums.service_id,
        "first": sums.first_id,
        "last": sums.last_id,
    }
    if session.get_bind().dialect.name == "postgresql":
        # READ COMMITTED: a re-rate may have committed since the sums were read. The
        # rows the UPDATE marked are the truth; they must add up to the charge.
        row = session.execute(
            text(
                f"WITH marked AS ({mark} RETURNING cost) "
                "SELECT count(*), coalesce(sum(cost), 0) FROM marked"
            ),
            params,
        ).one()
        marked, units = int(row[0]), int(row[1])
    else:
        # Under BEGIN IMMEDIATE nothing else has written since the sums were read.
        marked, units = session.execute(text(mark), params).rowcount, sums.units
    if (marked, units) != (sums.count, sums.units):
        raise BillingRace(
            f"{sums.count} CDRs summed to {money.fmt(sums.units, units=True)} but "
            f"{marked} marked, summing to {money.fmt(units, units=True)}; "
            "nothing was written, run autobill again"
        )


def _bill_batch(
    store: Store, backend: BillingBackend, batch: list[_Task], failures: list[str]
) -> list[Charge]:
    """One transaction: the charges of a batch of tasks, each with its CDRs marked."""
    charges = []
    with store.transaction() as session:
        for task in batch:
            sums = _sums(session, task)
            if sums is None:
                continue
            charge = _charge_of(task.client_id, sums)
            try:
                # A savepoint per charge: a service that fails is left for the next
                # run without undoing the others of the batch.
                with session.begin_nested():
                    entry_id = backend.post_charge(
                        session,
                        client_id=task.client_id,
                        service_id=task.service_id,
                        amount=charge.amount,
                        reference=charge.reference,
                        note=(
                            f"usage: {charge.cdr_count} calls "
                            f"(CDR {charge.first_id}..{charge.last_id})"
                        ),
                        cdr_count=charge.cdr_count,
                    )
                    _mark(session, sums, entry_id)
            except VoipctlError as exc:
                failures.append(f"service {task.service_id} of client {task.client_id}: {exc}")
                continue
            charges.append(charge)
    return charges


def _plan(store: Store, client_id: int | None, service_id: int | None) -> list[list[_Task]]:
    with store.session_factory() as session:
        services = _metered(session, client_id, service_id)
        batches = _batches(session, services) if services else []
        session.rollback()
    return batches


def bill(
    store: Store,
    backend: BillingBackend,
    *,
    client_id: int | None = None,
    service_id: int | None = None,
    failures: list[str] | None = None,
) -> list[Charge]:
    """Bill the rated, unbilled CDRs of metered services: one transaction per batch.

    A charge that fails is appended to `failures` (raised when none is given).
    """
    found: list[str] = [] if failures is None else failures
    charges: list[Charge] = []
    for batch in _plan(store, client_id, service_id):
        charges += _bill_batch(store, backend, batch, found)
        pause_point("autobill:batch")  # test-only: the kill tests land here for certain
    if failures is None and found:
        raise VoipctlError(found[0])
    return charges


def plan(
    store: Store, *, client_id: int | None = None, service_id: int | None = None
) -> list[Charge]:
    """What `bill` would charge, read only (the dry run)."""
    tasks = [task for batch in _plan(store, client_id, service_id) for task in batch]
    with store.session_factory() as session:
        found = [_sums(session, task) for task in tasks]
        session.rollback()
    return [_charge_of(t.client_id, s) for t, s in zip(tasks, found, strict=True) if s]


def bill_service(
    store: Store, backend: BillingBackend, service_id: int, client_id: int
) -> list[Charge]:
    """Bill every rated, unbilled CDR of one service (of client `client_id`)."""
    return bill(store, backend, client_id=client_id, service_id=service_id)


def plan_service(store: Store, service_id: int, client_id: int) -> list[Charge]:
    """What `bill_service` would charge, read only."""
    return plan(store, client_id=client_id, service_id=service_id)


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
    if dry_run:
        charges = plan(store, client_id=client_id)
    else:
        failures: list[str] = []
        charges = bill(store, backend, client_id=client_id, failures=failures)
        for failure in failures:
            run.fail(failure)
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
