"""A client's money as the operator handles it: top-ups, adjustments, invoices, balances.

Credit moves only through `ledger.post` (idempotent by reference); invoices are
recorded beside the ledger and never touch it (docs/billing.md, The ledger).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing import ledger
from voipctl.billing.backend import BillingBackend, LocalBackend
from voipctl.catalog import check_amount, client_view, get_client, product_names, service_view
from voipctl.errors import DuplicateReference, NotFound, UsageError
from voipctl.store.models import Client, Invoice, LedgerEntry, Service, TopupAttempt

_MAX_REFERENCE = 200


def _reference(reference: str | None, prefix: str) -> str:
    if reference is None:
        # Unique without the operator's help; a retried command with no reference is a
        # second top-up, which is why scripts should pass --reference.
        return f"{prefix}:{uuid.uuid4().hex}"
    reference = reference.strip()
    if not reference or len(reference) > _MAX_REFERENCE:
        raise UsageError(f"reference must be 1 to {_MAX_REFERENCE} characters")
    return reference


def _post(
    session: Session, client_id: int, kind: str, amount: Decimal, reference: str, note: str
) -> ledger.Posted:
    try:
        return ledger.post(
            session,
            client_id=client_id,
            kind=kind,
            amount=amount,
            reference=reference,
            note=note.strip(),
        )
    except DuplicateReference:
        existing = session.scalar(select(LedgerEntry).where(LedgerEntry.reference == reference))
        if existing is None:
            raise
        raise DuplicateReference(
            f"reference {reference!r} is already recorded for client {existing.client_id} "
            f"with amount {money.fmt(existing.amount)}, not {money.fmt(amount)}; "
            "nothing was written"
        ) from None


def add_credit(
    session: Session,
    client_id: int,
    amount: Decimal,
    *,
    reference: str | None = None,
    note: str = "",
) -> ledger.Posted:
    """Record a top-up. The same reference again: a no-op if the amount is the same
    (`Posted.created` is False), DuplicateReference (exit 1) if not."""
    get_client(session, client_id)
    amount = check_amount(amount, "amount", positive=True)
    return _post(session, client_id, "topup", amount, _reference(reference, "topup"), note)


def adjust_credit(
    session: Session,
    client_id: int,
    amount: Decimal,
    *,
    note: str,
    reference: str | None = None,
) -> ledger.Posted:
    """Record a signed adjustment (a correction, a goodwill credit); a note is required."""
    get_client(session, client_id)
    amount = check_amount(amount, "amount")
    if amount == 0:
        raise UsageError("amount: an adjustment of 0 changes nothing")
    if not note.strip():
        raise UsageError("--note: say why the credit is adjusted")
    return _post(session, client_id, "adjustment", amount, _reference(reference, "adjust"), note)


def entry_view(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "client_id": entry.client_id,
        "kind": entry.kind,
        "amount": money.fmt(entry.amount, 2),
        "reference": entry.reference,
        "note": entry.note,
        "created_at": entry.created_at,
    }


# --- invoices --------------------------------------------------------------------------------


def add_invoice(
    session: Session,
    client_id: int,
    amount: Decimal,
    *,
    number: str | None = None,
    due: date | None = None,
) -> tuple[Invoice, bool]:
    """Record an unpaid invoice from the billing system. Returns (invoice, created).

    Like a ledger reference, a number recorded again with the same client,
    amount and due date is a no-op; with anything else it is refused (exit 1).
    """
    get_client(session, client_id)
    amount = check_amount(amount, "amount", positive=True)
    if number is None:
        number = f"{client_id}-{uuid.uuid4().hex[:10]}"
    number = number.strip()
    if not number or len(number) > 64:
        raise UsageError("invoice number must be 1 to 64 characters")
    existing = session.scalar(select(Invoice).where(Invoice.number == number))
    if existing is not None:
        if (existing.client_id, existing.amount, existing.due_date) != (client_id, amount, due):
            raise DuplicateReference(
                f"invoice {number} is already recorded for client {existing.client_id} "
                f"with amount {money.fmt(existing.amount)} due "
                f"{existing.due_date or 'at once'}; nothing was written"
            )
        return existing, False
    invoice = Invoice(
        client_id=client_id,
        number=number,
        amount=amount,
        due_date=due,
        status="unpaid",
        created_at=ledger.now(),
    )
    session.add(invoice)
    session.flush()
    return invoice, True


def pay_invoice(session: Session, number: str) -> tuple[Invoice, bool]:
    """Mark an invoice paid (an outside payment; the ledger is not touched).

    Returns (invoice, changed); paying a paid invoice changes nothing.
    """
    invoice = session.scalar(select(Invoice).where(Invoice.number == number))
    if invoice is None:
        raise NotFound(f"no invoice {number!r}")
    if invoice.status == "paid":
        return invoice, False
    invoice.status = "paid"
    invoice.paid_at = ledger.now()
    session.flush()
    return invoice, True


def list_invoices(
    session: Session, client_id: int | None = None, *, unpaid: bool = False
) -> list[Invoice]:
    query = select(Invoice).order_by(Invoice.client_id, Invoice.created_at, Invoice.id)
    if client_id is not None:
        get_client(session, client_id)
        query = query.where(Invoice.client_id == client_id)
    if unpaid:
        query = query.where(Invoice.status == "unpaid")
    return list(session.scalars(query))


def invoice_view(invoice: Invoice, today: date | None = None) -> dict[str, Any]:
    today = today or ledger.now().date()
    return {
        "id": invoice.id,
        "number": invoice.number,
        "client_id": invoice.client_id,
        "amount": money.fmt(invoice.amount, 2),
        "due": invoice.due_date,
        "status": invoice.status,
        # Counts toward "owing": unpaid and due today or earlier (no due date: at once).
        "owing": invoice.status == "unpaid"
        and (invoice.due_date is None or invoice.due_date <= today),
        "created_at": invoice.created_at,
        "paid_at": invoice.paid_at,
    }


# --- balances --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """A client's money at one moment."""

    credit: Decimal  # the ledger balance (or the billing system's credit)
    unbilled: Decimal  # rated calls autobill has not charged yet
    owing: Decimal  # unpaid invoices due today or earlier

    @property
    def available(self) -> Decimal:
        """What the jobs decide on: credit minus unbilled calls."""
        return self.credit - self.unbilled


def figures(
    session: Session, backend: BillingBackend, client_ids: Sequence[int]
) -> dict[int, Figures]:
    """Credit, unbilled cost and owing of many clients, in three grouped queries locally."""
    ids = list(client_ids)
    if not ids:
        return {}
    if not isinstance(backend, LocalBackend):
        return {
            cid: Figures(
                backend.credit(session, cid),
                ledger.unbilled_cost(session, cid),
                backend.owing(session, cid),
            )
            for cid in ids
        }
    today = ledger.now().date()
    zero = Decimal(0)
    credit = dict(
        session.execute(
            select(LedgerEntry.client_id, func.sum(LedgerEntry.amount))
            .where(LedgerEntry.client_id.in_(ids))
            .group_by(LedgerEntry.client_id)
        ).all()
    )
    unbilled = ledger.unbilled_costs(session, ids)
    owing = dict(
        session.execute(
            select(Invoice.client_id, func.sum(Invoice.amount))
            .where(
                Invoice.client_id.in_(ids),
                Invoice.status == "unpaid",
                or_(Invoice.due_date.is_(None), Invoice.due_date <= today),
            )
            .group_by(Invoice.client_id)
        ).all()
    )
    return {
        cid: Figures(credit.get(cid) or zero, unbilled.get(cid) or zero, owing.get(cid) or zero)
        for cid in ids
    }


def balance_view(session: Session, backend: BillingBackend, client_id: int) -> dict[str, Any]:
    """`voipctl balance`: credit at least 4 decimals, owing at least 2, as exact strings."""
    client = get_client(session, client_id)
    fig = figures(session, backend, [client.id])[client.id]
    return {
        "client_id": client.id,
        "credit": money.fmt(fig.credit, 4),
        "owing": money.fmt(fig.owing, 2),
        "currency": client.currency,
        "unbilled": money.fmt(fig.unbilled, 4),
        "available": money.fmt(fig.available, 4),
    }


def _with_figures(client: Client, fig: Figures) -> dict[str, Any]:
    view = client_view(client)
    view.update(
        credit=money.fmt(fig.credit, 4),
        unbilled=money.fmt(fig.unbilled, 4),
        available=money.fmt(fig.available, 4),
        owing=money.fmt(fig.owing, 2),
    )
    return view


def client_detail(session: Session, backend: BillingBackend, client_id: int) -> dict[str, Any]:
    """`voipctl client show`: the client's fields, money and active services."""
    client = get_client(session, client_id)
    view = _with_figures(client, figures(session, backend, [client.id])[client.id])
    services = list(
        session.scalars(
            select(Service)
            .where(Service.client_id == client.id, Service.active.is_(True))
            .order_by(Service.id)
        )
    )
    names = product_names(session, (s.product_id for s in services))
    view["services"] = [service_view(s, names.get(s.product_id, "?")) for s in services]
    view["auto_topups"] = recent_topups(session, client.id)
    return view


# How many of a client's automatic top-ups `client show` lists, newest first.
TOPUPS_SHOWN = 5


def recent_topups(session: Session, client_id: int) -> list[dict[str, Any]]:
    """The client's latest automatic top-up attempts (docs/topup.md), newest first."""
    rows = session.scalars(
        select(TopupAttempt)
        .where(TopupAttempt.client_id == client_id)
        .order_by(TopupAttempt.id.desc())
        .limit(TOPUPS_SHOWN)
    )
    return [
        {
            "reference": a.reference,
            "status": a.status,
            "amount": money.fmt(a.amount, 2),
            "day": a.day,
            "detail": a.detail,
        }
        for a in rows
    ]


def client_summaries(
    session: Session,
    backend: BillingBackend,
    *,
    suspended: bool = False,
    below_threshold: bool = False,
    owing: bool = False,
) -> list[dict[str, Any]]:
    """`voipctl client list`, with its filters (each narrows the list).

    suspended: some active service is suspended; below_threshold: available credit
    at or below the Low Balance Threshold (as low-balance decides); owing: owing > 0.
    """
    clients = list(session.scalars(select(Client).order_by(Client.id)))
    counts: dict[int, tuple[int, int]] = {}
    for cid, total, down in session.execute(
        select(
            Service.client_id,
            func.count(Service.id),
            func.sum(case((Service.suspended.is_(True), 1), else_=0)),
        )
        .where(Service.active.is_(True))
        .group_by(Service.client_id)
    ):
        counts[cid] = (int(total), int(down or 0))
    figs = figures(session, backend, [c.id for c in clients])
    rows = []
    for client in clients:
        fig = figs[client.id]
        total, down = counts.get(client.id, (0, 0))
        if suspended and not down:
            continue
        threshold = client.low_balance_threshold
        if below_threshold and (threshold is None or fig.available > threshold):
            continue
        if owing and fig.owing <= 0:
            continue
        row = _with_figures(client, fig)
        row.update(
            name=f"{client.first_name} {client.last_name}",
            services=total,
            suspended_services=down,
        )
        rows.append(row)
    return rows
