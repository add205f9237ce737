"""`voipctl cdrs`: one client's calls, newest first, streamed from the cursor.

The query always names `client_id` and a `start` range, so it runs on the
index `ix_cdrs_client_start` (client_id, start): a month of one client's calls
is an index range scan, whatever the size of the table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.catalog import get_service
from voipctl.errors import UsageError
from voipctl.rating.rater import STATUSES
from voipctl.store.models import Cdr
from voipctl.support.common import local_time

# Selects the calls not rated yet (status NULL) for --status.
UNRATED = "unrated"
DIRECTIONS = ("outbound", "inbound", "local")

# Per-call costs are shown with the 4 decimals products round to by default.
COST_PLACES = 4

_COLUMNS = (
    Cdr.id,
    Cdr.service_id,
    Cdr.direction,
    Cdr.extension,
    Cdr.caller,
    Cdr.number,
    Cdr.normalized,
    Cdr.start,
    Cdr.billsec,
    Cdr.billable_seconds,
    Cdr.free_seconds,
    Cdr.status,
    Cdr.prefix,
    Cdr.description,
    Cdr.rate,
    Cdr.cost,
    Cdr.billed_entry_id,
)

# Table and CSV columns; JSON carries every key of the row.
TABLE_COLUMNS = (
    ("id", "id"),
    ("start_local", "start"),
    ("service_id", "service"),
    ("direction", "direction"),
    ("caller", "caller"),
    ("number", "number"),
    ("normalized", "normalized"),
    ("billsec", "billsec"),
    ("billable_seconds", "billable"),
    ("status", "status"),
    ("prefix", "prefix"),
    ("description", "destination"),
    ("cost", "cost"),
    ("billed", "billed"),
)
# The table also offers billable time as support reads it (CSV keeps seconds).
TIME_COLUMN = ("billable_time", "time")

# What support reads first (docs/support.md): the table's columns unless --wide or
# --columns. `id` stays: it is what `voipctl explain` takes.
DEFAULT_TABLE_COLUMNS = (
    "id",
    "start",
    "direction",
    "number",
    "destination",
    "time",
    "cost",
    "status",
)
# Columns cut (with "~") to fit the terminal, narrowest allowed width.
SHRINKABLE = {"description": 8, "number": 10}


def table_columns(names: list[str] | None, wide: bool) -> list[tuple[str, str]]:
    """The (key, header) pairs of the table, named by their headers; raises UsageError."""
    by_header = {header: key for key, header in (*TABLE_COLUMNS, TIME_COLUMN)}
    if names is None:
        names = [h for _, h in TABLE_COLUMNS] if wide else list(DEFAULT_TABLE_COLUMNS)
    unknown = [name for name in names if name not in by_header]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], list(by_header), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(
            f"cdrs: --columns: unknown column {unknown[0]!r}{hint} "
            f"(columns: {', '.join(by_header)})"
        )
    return [(by_header[name], name) for name in names]


def minutes_seconds(seconds: int | None) -> str:
    """Billable time as support reads it: `1:06`, `1:02:03` past the hour."""
    if seconds is None:
        return ""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class CdrQuery:
    """What `voipctl cdrs` asks for; times are aware UTC, `end` exclusive."""

    client_id: int
    service_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    direction: str | None = None
    number: str | None = None
    status: str | None = None
    show_all: bool = False
    limit: int | None = None


@dataclass
class Totals:
    """The totals line: calls, billable minutes and cost of the rows listed."""

    calls: int = 0
    billable_seconds: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal(0))

    def add(self, row: dict[str, Any]) -> None:
        self.calls += 1
        self.billable_seconds += row["billable_seconds"] or 0
        if row["cost"] is not None:
            self.cost += row["cost"]

    @property
    def billable_minutes(self) -> str:
        # Minutes are not money, but the same exact half-up rounding reads well here.
        return f"{money.quantize(Decimal(self.billable_seconds) / 60, 2):f}"

    def line(self) -> str:
        return (
            f"{self.calls} calls, {self.billable_minutes} billable minutes, "
            f"cost {money.fmt(self.cost, COST_PLACES)}"
        )


def number_like(pattern: str) -> str:
    """A `--number` pattern as SQL LIKE (escape `\\`): `*` -> `%`, LIKE's own `%_\\` escaped."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("%")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def number_regex(pattern: str) -> re.Pattern[str]:
    """The exact meaning of a `--number` pattern: `*` is any run of digits, the rest literal.

    SQL LIKE's `%` matches any characters; this checks the rows LIKE let through.
    """
    parts = [re.escape(part) for part in pattern.split("*")]
    return re.compile(r"\d*".join(parts))


def _statement(query: CdrQuery):
    stmt = select(*_COLUMNS).where(Cdr.client_id == query.client_id)
    if query.service_id is not None:
        stmt = stmt.where(Cdr.service_id == query.service_id)
    if query.start is not None:
        stmt = stmt.where(Cdr.start >= query.start)
    if query.end is not None:
        stmt = stmt.where(Cdr.start < query.end)
    if query.direction:
        stmt = stmt.where(Cdr.direction == query.direction)
    if query.status == UNRATED:
        stmt = stmt.where(Cdr.status.is_(None))
    elif query.status:
        stmt = stmt.where(Cdr.status == query.status)
    elif not query.show_all:
        stmt = stmt.where(or_(Cdr.status.is_(None), Cdr.status != "suppressed"))
    if query.number:
        like = number_like(query.number)
        stmt = stmt.where(
            or_(Cdr.number.like(like, escape="\\"), Cdr.normalized.like(like, escape="\\"))
        )
    elif query.limit is not None:
        # Without a --number pattern every row the database returns is shown.
        stmt = stmt.limit(query.limit)
    return stmt.order_by(Cdr.start.desc(), Cdr.id.desc())


def check_query(session: Session, query: CdrQuery) -> None:
    """Refuse options that cannot work, with a one-line reason (exit 2)."""
    if query.service_id is not None:
        owner = get_service(session, query.service_id).client_id
        if owner != query.client_id:
            raise UsageError(
                f"service {query.service_id} belongs to client {owner}, not {query.client_id}"
            )
    if query.start is not None and query.end is not None and query.end <= query.start:
        raise UsageError("--to is before --from")
    if query.status and query.status not in (*STATUSES, UNRATED):
        raise UsageError(f"unknown status {query.status!r}")
    if query.direction and query.direction not in DIRECTIONS:
        raise UsageError(f"unknown direction {query.direction!r}")


def iter_cdrs(session: Session, query: CdrQuery, *, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """Yield the matching calls newest first, as plain dicts, streamed in chunks.

    Keys: id, service_id, direction, extension, caller, number, normalized,
    start (aware UTC), billsec, billable_seconds, free_seconds, status, prefix,
    description, rate, cost (Decimal or None), billed_entry_id, billed (bool).
    """
    check_query(session, query)
    exact = number_regex(query.number) if query.number else None
    shown = 0
    result = session.execute(_statement(query).execution_options(yield_per=chunk))
    for rec in result:
        row = rec._asdict()
        if exact is not None and not any(
            value is not None and exact.fullmatch(value)
            for value in (row["number"], row["normalized"])
        ):
            continue
        row["billed"] = row["billed_entry_id"] is not None
        yield row
        shown += 1
        if query.limit is not None and shown >= query.limit:
            break
    result.close()


def json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as `cdrs --format json` shows it: money as strings, times ISO UTC."""
    return {
        "id": row["id"],
        "service_id": row["service_id"],
        "direction": row["direction"],
        "extension": row["extension"],
        "caller": row["caller"],
        "number": row["number"],
        "normalized": row["normalized"],
        "start": row["start"],
        "billsec": row["billsec"],
        "billable_seconds": row["billable_seconds"],
        "free_seconds": row["free_seconds"],
        "status": row["status"],
        "prefix": row["prefix"],
        "description": row["description"],
        "rate": money.fmt(row["rate"], 2),
        "cost": money.fmt(row["cost"], COST_PLACES),
        "billed": row["billed"],
        "billed_entry_id": row["billed_entry_id"],
    }


def display_row(row: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """A row for the table and CSV: start in `zone` with its offset, cost formatted."""
    shown = dict(row)
    shown["start_local"] = local_time(row["start"], zone)
    shown["cost"] = money.fmt(row["cost"], COST_PLACES)
    shown["billable_time"] = minutes_seconds(row.get("billable_seconds"))
    return shown
