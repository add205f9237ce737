"""`voipctl rate`: rate what is unrated, or re-rate a period, under the job's lock.

`rate_cdrs(store, ...)` reads unrated CDRs (status NULL, and `no_rate` /
`invalid_number` again) in chunks (in start order per service where free
minutes need it, in table order otherwise), rates them with a `Rater`, and
writes the results back with one executemany UPDATE per chunk, one transaction
per chunk. With `rerate=(since, until)` it rates every CDR that started in the
range again; for CDRs already billed it posts a per-CDR reversal of the old cost
and a charge of the new one in the same transaction
(`voipctl.billing.rerate.correct_charge`), with references
`rerate:<cdr_id>:<n>:reversal|charge`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing.rerate import correct_charge
from voipctl.errors import NotFound
from voipctl.jobs.runner import job_run
from voipctl.rating.load import SessionSource
from voipctl.rating.rater import (
    FAILED_STATUSES,
    RATING_COLUMNS,
    STATUSES,
    Rater,
    epoch_seconds,
)
from voipctl.store.engine import Store, cdrs_through, driver_sql
from voipctl.store.models import PENDING_CDR, Client

CHUNK = 50_000

_PENDING = f"({PENDING_CDR})"


@dataclass
class RateReport:
    """What one run of `voipctl rate` did."""

    counts: Counter = field(default_factory=Counter)  # status -> CDRs looked at
    entered: Counter = field(default_factory=Counter)  # no_rate / invalid_number entered now
    changed: int = 0  # CDRs whose stored rating changed
    adjusted: int = 0  # billed CDRs whose charge was corrected on the ledger
    difference: int = 0  # units: what the corrections added to the clients' charges
    rerate: bool = False
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failures(self) -> int:
        return sum(self.entered.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "cdrs": self.total,
            "counts": {s: self.counts[s] for s in STATUSES if self.counts[s]},
            "entered": {s: self.entered[s] for s in FAILED_STATUSES if self.entered[s]},
            "changed": self.changed,
            "rerate": self.rerate,
            "ledger_adjusted": self.adjusted,
            "ledger_difference": money.fmt(self.difference, 2, units=True),
            "dry_run": self.dry_run,
        }

    def line(self) -> str:
        parts = [f"{s} {self.counts[s]}" for s in STATUSES if self.counts[s]]
        what = "re-rated" if self.rerate else "rated"
        line = f"rate: {self.total} CDRs {what}" + (": " + ", ".join(parts) if parts else "")
        if self.adjusted:
            line += (
                f"; {self.adjusted} billed CDRs corrected on the ledger, charges changed by "
                f"{money.fmt(self.difference, 2, units=True)}"
            )
        if self.dry_run:
            line += " (dry run: nothing written)"
        return line


@dataclass(frozen=True)
class _Span:
    """A service with calls to rate: how many, and the first and last start among them."""

    service_id: int
    first: int
    last: int
    count: int


def _services_to_rate(
    session: Session, client_id: int | None, rerate: tuple[int, int] | None
) -> list[_Span]:
    """Every service with CDRs to rate (pending ones, or those of the re-rate window)."""
    params: dict[str, Any] = {}
    table = "cdrs"
    if rerate is None:
        where = _PENDING
        table = cdrs_through(session, "ix_cdrs_pending")
    else:
        where = "start >= :lo AND start < :hi"
        params["lo"], params["hi"] = rerate
    if client_id is not None:
        where += " AND client_id = :c"
        params["c"] = client_id
    sql = (
        f"SELECT service_id, MIN(start), MAX(start), COUNT(*) FROM {table} WHERE {where} "
        "GROUP BY service_id"
    )
    return sorted(
        (
            _Span(int(s), int(lo), int(hi), int(n))
            for s, lo, hi, n in session.execute(text(sql), params)
        ),
        key=lambda span: span.service_id,
    )


def rate_cdrs(
    store: Store,
    *,
    client_id: int | None = None,
    rerate: tuple[datetime, datetime] | None = None,
    dry_run: bool = False,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> RateReport:
    """Rate every unrated CDR (or, with `rerate=(since, until)`, every CDR started in it).

    Calls of services with free minutes are read per service in start order
    (free minutes go to calls in the order they were made); all other calls are
    read in id order, which is the order they lie in the table, so a chunk's
    UPDATE rewrites few pages. A transaction holds up to `chunk` calls: they are
    read (locked FOR UPDATE on PostgreSQL), rated in memory and written back with
    one executemany UPDATE, together with the ledger corrections of billed CDRs.
    With `dry_run` each transaction is rolled back. The caller holds the job lock.
    """
    window = None if rerate is None else (epoch_seconds(rerate[0]), epoch_seconds(rerate[1]))
    report = RateReport(rerate=window is not None, dry_run=dry_run)
    # One connection for the whole run, so its page cache outlives each commit.
    # (Every SQLite connection has a large page cache, voipctl.store.engine: calls of
    # one service lie scattered through the table, and each page is written once.)
    conn = store.engine.connect()
    session = Session(bind=conn, expire_on_commit=False)
    try:
        services = _services_to_rate(session, client_id, window)
        rater = Rater(SessionSource(session, free_exclude=window))
        ordered = [
            span
            for span in services
            if window is not None or rater.service(span.service_id).product.free_seconds
        ]
        session.commit()
        batch = _Batch(session, rater, report, chunk, dry_run, progress)
        if len(ordered) < len(services):
            batch.by_id(client_id, skip={span.service_id for span in ordered})
        if ordered:
            batch.by_time(ordered, window)
        batch.finish()
    finally:
        session.rollback()
        session.close()
        conn.rollback()
        conn.close()
    return report


class CdrRow(NamedTuple):
    """A CDR as the job reads it: the call, how it was billed, and its stored rating."""

    id: int
    direction: str
    number: str | None
    billsec: int | None
    start: int
    answer: int | None
    billed_entry_id: int | None
    rerate_count: int | None
    client_id: int
    service_id: int
    # The stored rating, in RATING_COLUMNS order (see CdrRow.rating).
    status: str | None
    normalized: str | None
    prefix: str | None
    description: str | None
    rate: int | None
    connect_fee: int | None
    increment: str | None
    deck_version_id: int | None
    rate_source: str | None
    billable_seconds: int | None
    free_seconds: int | None
    cost: int | None

    @property
    def rating(self) -> tuple:
        """The stored rating columns, comparable with a new `Rating`."""
        return self[_OLD:]


# The SELECT list that fills a CdrRow, column for field.
ROW_COLUMNS = ", ".join(CdrRow._fields)
_OLD = CdrRow._fields.index(RATING_COLUMNS[0])  # where the stored rating starts
assert CdrRow._fields[_OLD:] == RATING_COLUMNS


class _Batch:
    """Reads, rates and writes CDRs, committing every `chunk` calls."""

    def __init__(self, session, rater, report, chunk, dry_run, progress):
        self.session = session
        self.rater = rater
        self.report = report
        self.chunk = chunk
        self.dry_run = dry_run
        self.progress = progress
        self.pending = 0  # calls rated in the open transaction
        lock = " FOR UPDATE" if session.get_bind().dialect.name == "postgresql" else ""
        self.lock = lock
        self.update_sql = driver_sql(
            session,
            f"UPDATE cdrs SET {', '.join(c + ' = ?' for c in RATING_COLUMNS)}, rated_at = ? "
            "WHERE id = ?",
        )

    def _cursor(self):
        return self.session.connection().connection.driver_connection.cursor()

    def _rated(self, count: int) -> None:
        self.pending += count
        if self.progress is not None and count:
            self.progress(count)
        if self.pending >= self.chunk:
            self.finish()

    def finish(self) -> None:
        if self.dry_run:
            self.session.rollback()
        else:
            self.session.commit()
        self.pending = 0

    def by_id(self, client_id: int | None, skip: set[int]) -> None:
        """Pending calls in id order, read through ix_cdrs_pending.

        A call that becomes no_rate in this run lies behind the read position, so
        it is not read a second time.
        """
        table = cdrs_through(self.session, "ix_cdrs_pending")
        sql = f"SELECT {ROW_COLUMNS} FROM {table} WHERE {_PENDING} AND id > ?"
        if client_id is not None:
            sql += f" AND client_id = {int(client_id)}"
        sql = driver_sql(self.session, sql + " ORDER BY id LIMIT ?" + self.lock)
        last = 0
        while True:
            cursor = self._cursor()
            cursor.execute(sql, (last, self.chunk))
            rows = list(map(CdrRow._make, cursor.fetchall()))
            if not rows:
                break
            last = rows[-1].id
            if skip:
                rows = [row for row in rows if row.service_id not in skip]
            self._rate(rows, cursor)
            self._rated(len(rows))

    def by_time(self, spans: list[_Span], window: tuple[int, int] | None) -> None:
        """Calls in start order per service, for free minutes and re-rating.

        Time is cut into slices of about `chunk` calls, and each slice is read
        service by service: the calls of a slice lie close together in the
        table (they were stored in time order), so a transaction rewrites few
        pages, while each service still sees its calls in start order.
        """
        lo = window[0] if window else min(span.first for span in spans)
        hi = window[1] if window else max(span.last for span in spans) + 1
        total = sum(span.count for span in spans)
        step = max(3600, (hi - lo) * self.chunk // max(total, 1))
        cursors = {span.service_id: (lo, -1) for span in spans}
        sql = driver_sql(
            self.session,
            f"SELECT {ROW_COLUMNS} FROM cdrs "
            "WHERE service_id = ? AND (start, id) > (?, ?) AND start < ?"
            + ("" if window else f" AND {_PENDING}")
            + " ORDER BY start, id LIMIT ?"
            + self.lock,
        )
        start = lo
        while start < hi:
            until = min(start + step, hi)
            for span in spans:
                if span.first < until and span.last >= start:
                    cursors[span.service_id] = self._service_slice(
                        sql, span.service_id, cursors[span.service_id], until
                    )
            start = until

    def _service_slice(
        self, sql: str, service_id: int, last: tuple[int, int], until: int
    ) -> tuple[int, int]:
        """Rate one service's calls after `last` (start, id) and before `until`."""
        while True:
            # Services with few calls share a transaction: commits cost more than rows.
            limit = self.chunk - self.pending
            cursor = self._cursor()
            cursor.execute(sql, (service_id, last[0], last[1], until, limit))
            rows = list(map(CdrRow._make, cursor.fetchall()))
            if rows:
                last = (rows[-1].start, rows[-1].id)
                self._rate(rows, cursor)
            self._rated(len(rows))
            if len(rows) < limit:
                return last

    def _rate(self, rows: list[CdrRow], cursor: Any) -> None:
        rated_at = int(datetime.now(UTC).timestamp())
        rater = self.rater
        rate = rater.rate
        contexts = rater.contexts
        service = rater.service
        report = self.report
        counts = report.counts
        updates = []
        corrections = []
        for row in rows:
            service_id = row.service_id
            ctx = contexts.get(service_id) or service(service_id)
            new = rate(
                ctx.product,
                row.direction,
                row.number,
                row.billsec or 0,
                row.start,
                row.answer is not None,
                ctx,
                service_id,
            )
            counts[new.status] += 1
            if row.status is None and row.billed_entry_id is None:
                old_status = None  # never rated nor billed: nothing to compare
            else:
                if new == row.rating:
                    continue
                old_status = row.status
            if new.status in FAILED_STATUSES and old_status != new.status:
                report.entered[new.status] += 1
            updates.append((*new, rated_at, row.id))
            if row.billed_entry_id is not None:
                old_cost = row.cost or 0
                new_cost = new.cost or 0
                if old_cost != new_cost:
                    corrections.append((row, old_cost, new_cost))
        if updates:
            cursor.executemany(self.update_sql, updates)
            report.changed += len(updates)
        for row, old_cost, new_cost in corrections:
            correct_charge(
                self.session,
                cursor,
                cdr_id=row.id,
                client_id=row.client_id,
                service_id=row.service_id,
                billed_entry_id=row.billed_entry_id,
                rerate_count=row.rerate_count or 0,
                old_cost=old_cost,
                new_cost=new_cost,
            )
            report.adjusted += 1
            report.difference += new_cost - old_cost


def client_zone(store: Store, client_id: int) -> ZoneInfo:
    """The client's time zone, for --from/--to days; NotFound for an unknown client."""
    with store.transaction() as session:
        client = session.get(Client, client_id)
        if client is None:
            raise NotFound(f"no client {client_id}")
        return ZoneInfo(client.timezone or "UTC")


def run(
    store: Store,
    *,
    client_id: int | None = None,
    rerate: tuple[datetime, datetime] | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    locked: bool = False,
) -> RateReport:
    """Hold the `rate` lock (exit 75 when another run has it) and rate, or re-rate.

    The run is recorded in job_runs with the report as its summary; calls that
    entered no_rate or invalid_number make it a run with failures. `locked`: the
    caller holds the lock already (the CLI's job runner).
    """
    with job_run(store, "rate", dry_run=dry_run, lock=not locked) as state:
        report = rate_cdrs(
            store, client_id=client_id, rerate=rerate, dry_run=dry_run, progress=progress
        )
        state.summary.update(report.as_dict())
        for status, count in sorted(report.entered.items()):
            state.fail(f"{count} CDRs entered {status}")
    return report
