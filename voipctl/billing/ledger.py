"""The ledger: every movement of credit is a row with a unique reference.

A reference posted again with the same amount is a no-op; with a different
amount it is refused (DuplicateReference) and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.errors import DuplicateReference
from voipctl.store.engine import cdrs_through
from voipctl.store.models import UNBILLED_CDR, Invoice, LedgerEntry

KINDS = ("topup", "charge", "adjustment", "reversal")


@dataclass(frozen=True)
class Posted:
    entry: LedgerEntry
    created: bool  # False: the reference was already recorded with this amount


def now() -> datetime:
    return datetime.now(UTC)


def post(
    session: Session,
    *,
    client_id: int,
    kind: str,
    amount: Decimal,
    reference: str,
    note: str = "",
    service_id: int | None = None,
    cdr_count: int = 0,
    reverses_id: int | None = None,
    at: datetime | None = None,
) -> Posted:
    """Post one ledger row in the caller's transaction, idempotent by reference."""
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind!r}")
    existing = session.scalar(select(LedgerEntry).where(LedgerEntry.reference == reference))
    if existing is None:
        entry = LedgerEntry(
            client_id=client_id,
            kind=kind,
            amount=amount,
            reference=reference,
            note=note,
            service_id=service_id,
            cdr_count=cdr_count,
            reverses_id=reverses_id,
            created_at=at or now(),
        )
        try:
            with session.begin_nested():
                session.add(entry)
                session.flush()
            return Posted(entry, True)
        except IntegrityError:
            # A concurrent run posted the same reference between our look and our insert.
            existing = session.scalar(select(LedgerEntry).where(LedgerEntry.reference == reference))
            if existing is None:
                raise
    if existing.client_id != client_id or existing.amount != amount:
        raise DuplicateReference(
            f"reference {reference!r} is already recorded for client {existing.client_id} "
            f"with amount {existing.amount}; nothing was written"
        )
    return Posted(existing, False)


def balance(session: Session, client_id: int, *, before: datetime | None = None) -> Decimal:
    """The sum of the client's ledger rows (optionally of those before a time)."""
    query = select(func.coalesce(func.sum(LedgerEntry.amount), Decimal(0))).where(
        LedgerEntry.client_id == client_id
    )
    if before is not None:
        query = query.where(LedgerEntry.created_at < before)
    return session.scalar(query) or Decimal(0)


def owing(session: Session, client_id: int, today: date | None = None) -> Decimal:
    """Unpaid invoices due today or earlier; an invoice without a due date is due at once."""
    today = today or now().date()
    query = select(func.coalesce(func.sum(Invoice.amount), Decimal(0))).where(
        Invoice.client_id == client_id,
        Invoice.status == "unpaid",
        or_(Invoice.due_date.is_(None), Invoice.due_date <= today),
    )
    return session.scalar(query) or Decimal(0)


def unbilled_costs(session: Session, client_ids: Iterable[int]) -> dict[int, Decimal]:
    """Cost of each client's rated calls that autobill has not charged yet (absent: none).

    Read through ix_cdrs_unbilled (by service), so the work is what is left to
    bill, never the client's history.
    """
    # Integers from the database, written inline: no bound-parameter limit.
    ids = ",".join(str(int(c)) for c in client_ids)
    if not ids:
        return {}
    table = cdrs_through(session, "ix_cdrs_unbilled")
    rows = session.execute(
        text(
            f"SELECT client_id, sum(cost) FROM {table} "
            f"WHERE service_id IN (SELECT id FROM services WHERE client_id IN ({ids})) "
            f"AND client_id IN ({ids}) AND {UNBILLED_CDR} AND cost IS NOT NULL "
            "GROUP BY client_id"
        )
    )
    return {int(cid): money.from_units(int(units)) for cid, units in rows if units is not None}


def unbilled_cost(session: Session, client_id: int) -> Decimal:
    """Cost of the client's rated calls that autobill has not charged yet."""
    return unbilled_costs(session, [client_id]).get(client_id, Decimal(0))
