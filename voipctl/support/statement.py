"""`voipctl statement`: a client's ledger over a period, and the calls behind it.

The opening balance is the sum of every ledger row before the period; each
row of the period follows with the running balance; the closing balance is the
opening plus the period's rows. Usage is the period's rated calls (by call
start) summed per destination. Both read a client's range on an index:
`ix_ledger_entries_client_created` and `ix_cdrs_client_start`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing import ledger
from voipctl.errors import UsageError
from voipctl.store.models import Cdr, Client, LedgerEntry
from voipctl.support.common import client_zone, local_time

# Statements show money with the 4 decimals that per-call costs are rounded to.
PLACES = 4


@dataclass
class UsageLine:
    """Rated calls to one destination in the period."""

    prefix: str | None
    description: str | None
    calls: int
    billable_seconds: int
    cost: Decimal

    @property
    def minutes(self) -> str:
        return f"{money.quantize(Decimal(self.billable_seconds) / 60, 2):f}"


@dataclass
class Statement:
    """A client's statement: start inclusive, end exclusive, both aware UTC."""

    client: Client
    zone: ZoneInfo
    start: datetime
    end: datetime
    opening: Decimal
    entries: list[tuple[LedgerEntry, Decimal]] = field(default_factory=list)  # (row, balance)
    usage: list[UsageLine] = field(default_factory=list)

    @property
    def closing(self) -> Decimal:
        return self.entries[-1][1] if self.entries else self.opening

    @property
    def usage_total(self) -> UsageLine:
        return UsageLine(
            prefix=None,
            description="total",
            calls=sum(u.calls for u in self.usage),
            billable_seconds=sum(u.billable_seconds for u in self.usage),
            cost=sum((u.cost for u in self.usage), Decimal(0)),
        )

    def period_label(self) -> str:
        """`2026-11-01 to 2026-11-30` for whole days in the client's zone, else the times."""
        first, after = self.start.astimezone(self.zone), self.end.astimezone(self.zone)
        if first.time() == time() and after.time() == time():
            last = after.date() - timedelta(days=1)
            return f"{first.date()} to {last} ({self.zone.key})"
        return f"{local_time(self.start, self.zone)} to {local_time(self.end, self.zone)} (excl.)"

    def to_json(self) -> dict[str, Any]:
        """The statement as `--format json` prints it: money as strings, times ISO UTC."""
        return {
            "client_id": self.client.id,
            "currency": self.client.currency,
            "timezone": self.zone.key,
            "from": self.start,
            "to": self.end,
            "opening_balance": money.fmt(self.opening, PLACES),
            "entries": [entry_row(entry, bal) for entry, bal in self.entries],
            "closing_balance": money.fmt(self.closing, PLACES),
            "usage": [usage_row(u) for u in self.usage],
            "usage_total": usage_row(self.usage_total),
        }


def entry_row(entry: LedgerEntry, balance: Decimal, zone: ZoneInfo | None = None) -> dict:
    """One ledger row of a statement; `created_at` stays UTC unless a zone is given."""
    return {
        "id": entry.id,
        "created_at": local_time(entry.created_at, zone) if zone else entry.created_at,
        "kind": entry.kind,
        "amount": money.fmt(entry.amount, PLACES),
        "balance": money.fmt(balance, PLACES),
        "reference": entry.reference,
        "note": entry.note,
        "service_id": entry.service_id,
        "cdr_count": entry.cdr_count,
    }


def usage_row(line: UsageLine) -> dict:
    return {
        "prefix": line.prefix,
        "description": line.description,
        "calls": line.calls,
        "billable_seconds": line.billable_seconds,
        "minutes": line.minutes,
        "cost": money.fmt(line.cost, PLACES),
    }


def default_period(zone: ZoneInfo, today: date | None = None) -> tuple[datetime, datetime]:
    """This month so far in the client's zone: the 1st to today, inclusive."""
    today = today or datetime.now(UTC).astimezone(zone).date()
    first = today.replace(day=1)
    start = datetime.combine(first, time(), zone).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(), zone).astimezone(UTC)
    return start, end


def build_statement(
    session: Session, client: Client, start: datetime | None, end: datetime | None
) -> Statement:
    """The client's statement for [start, end); a missing end is now, a missing start the 1st."""
    zone = client_zone(client)
    default_start, default_end = default_period(zone)
    start = start or (default_start if end is None else _first_of_month(end, zone))
    end = end or default_end
    if end <= start:
        raise UsageError("--to is before --from")
    opening = ledger.balance(session, client.id, before=start)
    statement = Statement(client=client, zone=zone, start=start, end=end, opening=opening)
    running = opening
    rows = session.scalars(
        select(LedgerEntry)
        .where(
            LedgerEntry.client_id == client.id,
            LedgerEntry.created_at >= start,
            LedgerEntry.created_at < end,
        )
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
    )
    for entry in rows:
        running += entry.amount
        statement.entries.append((entry, running))
    statement.usage = usage_by_destination(session, client.id, start, end)
    return statement


def _first_of_month(end: datetime, zone: ZoneInfo) -> datetime:
    last_day = (end - timedelta(seconds=1)).astimezone(zone).date()
    return datetime.combine(last_day.replace(day=1), time(), zone).astimezone(UTC)


def usage_by_destination(
    session: Session, client_id: int, start: datetime, end: datetime
) -> list[UsageLine]:
    """Rated calls that started in [start, end), per (prefix, description), costliest first."""
    cost = func.sum(Cdr.cost)
    query = (
        select(
            Cdr.prefix,
            Cdr.description,
            func.count(),
            func.coalesce(func.sum(Cdr.billable_seconds), 0),
            cost,
        )
        .where(
            Cdr.client_id == client_id,
            Cdr.start >= start,
            Cdr.start < end,
            Cdr.status == "rated",
        )
        .group_by(Cdr.prefix, Cdr.description)
    )
    lines = [
        UsageLine(prefix, description, calls, int(seconds), total or Decimal(0))
        for prefix, description, calls, seconds, total in session.execute(query)
    ]
    lines.sort(key=lambda u: (-u.cost, u.prefix or "", u.description or ""))
    return lines
