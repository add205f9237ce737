"""`voipctl pull-cdrs`: bring every new call in from every server, incrementally, never twice.

For each server, its active services are grouped into scopes: one per service,
or one per shared feed (a LES.NET CDR link several peers share, read once). A
scope is read from its watermark minus the server's `overlap_minutes` (providers
write CDRs late) up to now, and stored in chunks with
`INSERT ... ON CONFLICT (server, provider_id) DO NOTHING`: the database's unique
key is what makes a re-run or an overlap store nothing twice. Each chunk is one
transaction; the watermark moves, to the newest start seen, only in the
transaction of the last chunk, so a run that dies halfway is read again next time.

A scope with no watermark yet starts at the service's `created_at` (a service is
billed from when it was added); `--since` reaches further back.

A server that fails (unreachable, credentials refused, a payload that does not
parse) is reported and the others still run; the job then exits 1.

Rate-as-you-store hook: `before_insert(rows)` is called with each chunk of row
dicts (the `cdrs` columns) before it is inserted, and may fill the rating columns
in place or return a new list. A hook with `columns` and `rater_for(keys)` (like
`voipctl.rating.pull.PullRater`, which `rate=True` uses) instead gives, per row
tuple, driver-ready values for those columns, and the chunk goes to the driver as
tuples: rows are tuples of ROW_KEYS until a plain hook needs dicts.
"""

from __future__ import annotations

import functools
import json
import logging
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from voipctl.config import MAX_CALL_SECONDS, Config
from voipctl.errors import (
    LockHeld,
    NotFound,
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    ProviderUnavailable,
)
from voipctl.jobs.common import service_info
from voipctl.jobs.runner import job_run
from voipctl.pause import pause_point
from voipctl.providers import ProviderAdapter, adapter_for
from voipctl.providers.base import (
    CallRecord,
    RawRecord,
    Rejected,
    ServiceInfo,
    digest,
    reason_of,
)
from voipctl.providers.rejected import RAW_MAX, escape, unescape, was_cut
from voipctl.rating.pull import PullRater
from voipctl.redact import redact_url
from voipctl.store.engine import Store
from voipctl.store.locks import job_lock, pull_lock
from voipctl.store.models import Cdr, PullWatermark, RejectedRecord, ServerPullState, Service

log = logging.getLogger(__name__)

CHUNK_SIZE = 10_000
PROVIDER_ID_MAX = 200  # cdrs.provider_id
JOB = "pull-cdrs"
UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE

# The cdrs columns a pull writes: the order of a row's tuple, the keys of its dict.
ROW_KEYS = (
    "server",
    "provider_id",
    "service_id",
    "client_id",
    "direction",
    "extension",
    "caller",
    "number",
    "start",
    "answer",
    "end",
    "billsec",
    "hangup_cause",
    "raw",
    "pulled_at",
    "status",
    "rerate_count",
)

_START = ROW_KEYS.index("start")
_PROVIDER_ID = ROW_KEYS.index("provider_id")

RowHook = Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]
ProgressHook = Callable[[str, int], None]


@dataclass
class ServerPull:
    """What one server's pull did."""

    server: str
    services: int = 0
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)  # one line per record set aside anew

    def as_dict(self) -> dict[str, Any]:
        doc = {"services": self.services, "stored": self.stored, "duplicates": self.duplicates}
        if self.set_aside:
            doc["set_aside"] = len(self.set_aside)
        if self.errors:
            doc["errors"] = self.errors
        return doc


@dataclass
class PullReport:
    """The whole run: one ServerPull per server, and the exit status."""

    dry_run: bool
    servers: list[ServerPull] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per server another run held

    @property
    def set_aside(self) -> list[str]:
        return [line for s in self.servers for line in s.set_aside]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures or self.set_aside else 0

    @property
    def stored(self) -> int:
        return sum(s.stored for s in self.servers)

    def summary_line(self) -> str:
        verb = "would store" if self.dry_run else "stored"
        if not self.servers and not self.skipped:
            return "pull-cdrs: no active services to pull"
        parts = []
        for s in self.servers:
            if s.errors:
                parts.append(f"{s.server}: FAILED")
            else:
                parts.append(f"{s.server}: {verb} {s.stored}, {s.duplicates} duplicates")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (held by another run)")
        return "pull-cdrs: " + "; ".join(parts)


@dataclass
class _Scope:
    key: str  # the watermark scope: "service:ID" or the adapter's feed key
    services: list[Service]
    feed: bool


def pull_cdrs(
    store: Store,
    config: Config,
    *,
    server: str | None = None,
    client_id: int | None = None,
    service_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    dry_run: bool = False,
    chunk_size: int = CHUNK_SIZE,
    before_insert: RowHook | None = None,
    progress: ProgressHook | None = None,
    adapter_factory: Callable[[str, Any], ProviderAdapter] = adapter_for,
    rate: bool = False,
) -> PullReport:
    """Pull new CDRs of the selected active services; see the module docstring.

    With `rate` (what `voipctl pull-cdrs` does), calls are rated in the pass that
    stores them by a `PullRater` (docs/rating.md §5: one pass is much faster than two);
    what it leaves unrated is for `voipctl rate`. `before_insert` then must be None.

    Each selected server is pulled under its own lock (`pull_lock`), taken before
    the run is recorded and let go as soon as that server is done: a server
    another run holds is skipped with one line, and LockHeld (exit 75) is raised
    only when every selected server is held. ConfigError for an unknown
    --server, NotFound for an unknown --service. Provider failures do not raise:
    they are in the report (and make its exit_code 1).
    """
    if server is not None:
        config.server(server)  # ConfigError naming the known servers
    if rate and before_insert is not None:
        raise ValueError("pull_cdrs: rate and before_insert exclude each other")
    until = until or datetime.now(UTC)
    partial = client_id is not None or service_id is not None
    by_server = _services(store, server, client_id, service_id)
    report = PullReport(dry_run=dry_run)
    with ExitStack() as held:
        selected = _selected_servers(config, by_server, server, partial)
        locks = {} if dry_run else _server_locks(store, selected)
        for name, lock in locks.items():
            held.enter_context(lock)
            if lock.refused is not None:
                report.skipped.append(f"pull-cdrs: {name} skipped: {lock.refused}")
        if rate and not dry_run:
            rater = PullRater(store)
            held.callback(rater.close)
            before_insert = rater
        with job_run(store, JOB, dry_run=dry_run, lock=False) as run:
            for name in sorted(by_server):
                if name in locks and locks[name].refused is not None:
                    continue
                pull = ServerPull(server=name, services=len(by_server[name]))
                report.servers.append(pull)
                try:
                    _pull_one(
                        store,
                        config,
                        adapter_factory,
                        by_server[name],
                        pull,
                        since=since,
                        until=until,
                        dry_run=dry_run,
                        chunk_size=chunk_size,
                        before_insert=before_insert,
                        progress=progress,
                        partial=partial,
                    )
                finally:
                    if name in locks:
                        locks[name].release()  # the next run may pull it while others go on
                for line in pull.set_aside:
                    log.info("%s", line)
                    run.fail(line)
                for error in pull.errors:
                    log.info("%s", error)
                    run.fail(error)
                    report.failures.append(error)
                run.summary[name] = pull.as_dict()
            if report.skipped:
                run.summary["skipped"] = list(report.skipped)
    return report


def _pull_one(
    store: Store,
    config: Config,
    adapter_factory: Callable[[str, Any], ProviderAdapter],
    services: list[Service],
    pull: ServerPull,
    **options: Any,
) -> None:
    """One server's pull, its failure in `pull`, and when it was last read (not on a dry run)."""
    name = pull.server
    if name not in config.servers:
        pull.errors.append(
            f"{name}: not in the configuration ({config.source}); services "
            + ", ".join(str(s.id) for s in services)
            + " were not pulled"
        )
    else:
        try:
            with adapter_factory(name, config.server(name)) as adapter:
                _pull_server(
                    store,
                    adapter,
                    config.server(name),
                    services,
                    pull,
                    max_seconds=config.pull.max_call_seconds,
                    **options,
                )
        except ProviderError as exc:
            pull.errors.append(str(exc))
    if not options["dry_run"]:
        _record_server(store, pull)


class _ServerLock:
    """One server's pull lock, taken at once: `refused` says why when another run holds it."""

    def __init__(self, store: Store, server: str) -> None:
        self.held = ExitStack()
        self.refused: str | None = None
        try:
            self.held.enter_context(job_lock(store, pull_lock(server)))
        except LockHeld as exc:
            self.refused = str(exc)

    def release(self) -> None:
        self.held.close()

    def __enter__(self) -> _ServerLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _selected_servers(
    config: Config, by_server: dict[str, list[Service]], server: str | None, partial: bool
) -> list[str]:
    """The servers a run pulls: --server alone; else the servers of the selected
    services, and with no --client or --service every configured server too (so
    a run over all of them meets another run's lock even before any service exists)."""
    if server is not None:
        return [server]
    return sorted(set(by_server) | (set() if partial else set(config.servers)))


def _server_locks(store: Store, names: Iterable[str]) -> dict[str, _ServerLock]:
    """The pull locks of `names`, all tried before any server is pulled.

    LockHeld when every one of them is held: the run then records nothing.
    """
    locks: dict[str, _ServerLock] = {}
    try:
        for name in sorted(set(names)):
            locks[name] = _ServerLock(store, name)
    except BaseException:
        for lock in locks.values():
            lock.release()
        raise
    refused = [lock.refused for lock in locks.values() if lock.refused is not None]
    if locks and len(refused) == len(locks):
        for lock in locks.values():
            lock.release()
        more = f" (and {len(refused) - 1} more servers)" if len(refused) > 1 else ""
        raise LockHeld(f"{refused[0]}{more}")
    return locks


def _upsert_server_state(store: Store):
    dialect = postgresql if store.dialect == "postgresql" else sqlite
    return dialect.insert(ServerPullState.__table__)


def _record_server(store: Store, pull: ServerPull) -> None:
    """When this server was last read, and without an error (`voipctl status`)."""
    now = int(datetime.now(UTC).timestamp())
    values: dict[str, Any] = {"last_run_at": now, "last_error": None}
    if pull.errors:
        values["last_error"] = pull.errors[0][:1000]
    else:
        # Set-aside records do not make the pull a failed one: the server answered.
        values["last_success_at"] = now
    stmt = _upsert_server_state(store)
    stmt = stmt.on_conflict_do_update(index_elements=["server"], set_=values)
    with store.engine.begin() as conn:
        conn.execute(stmt, {"server": pull.server, "cdrs_stored_total": 0, **values})


def _services(
    store: Store, server: str | None, client_id: int | None, service_id: int | None
) -> dict[str, list[Service]]:
    query = select(Service).where(Service.active.is_(True)).order_by(Service.id)
    if server is not None:
        query = query.where(Service.server == server)
    if client_id is not None:
        query = query.where(Service.client_id == client_id)
    if service_id is not None:
        with store.transaction() as session:
            found = session.get(Service, service_id)
        if found is None:
            raise NotFound(f"no service {service_id}")
        query = query.where(Service.id == service_id)
    with store.transaction() as session:
        rows = list(session.scalars(query))
    grouped: dict[str, list[Service]] = defaultdict(list)
    for row in rows:
        grouped[row.server].append(row)
    return dict(grouped)


def shown_scope(key: str) -> str:
    """A scope fit for the log: a CDR link's user-info and query string masked."""
    if key.startswith("link:"):
        return "link:" + (redact_url(key[len("link:") :]) or "")
    return key


def _scopes(adapter: ProviderAdapter, services: list[Service]) -> list[_Scope]:
    feeds: dict[str, list[Service]] = defaultdict(list)
    scopes = []
    for service in services:
        key = adapter.feed_key(service_info(service))
        if key is None:
            scopes.append(_Scope(f"service:{service.id}", [service], feed=False))
        else:
            feeds[key].append(service)
    scopes += [_Scope(key, members, feed=True) for key, members in feeds.items()]
    return scopes


def _pull_server(
    store: Store,
    adapter: ProviderAdapter,
    server_config: Any,
    services: list[Service],
    pull: ServerPull,
    *,
    since: datetime | None,
    until: datetime,
    dry_run: bool,
    chunk_size: int,
    before_insert: RowHook | None,
    progress: ProgressHook | None,
    max_seconds: int = MAX_CALL_SECONDS,
    partial: bool = False,
) -> None:
    refused = _check_dedupe_key(store, adapter, pull.server, dry_run=dry_run)
    if refused is not None:
        pull.errors.append(refused)
        return
    overlap = timedelta(minutes=server_config.overlap_minutes)
    writer = _Writer(store, pull.server, dry_run=dry_run, before_insert=before_insert)
    for scope in _scopes(adapter, services):
        watermark = writer.watermark(scope.key)
        if since is not None:
            start = since
        elif watermark is not None:
            start = watermark - overlap
        else:
            start = min(s.created_at for s in scope.services)
        if start >= until:
            continue
        infos = [service_info(s) for s in scope.services]
        clients = {s.id: s.client_id for s in scope.services}
        cursor = None
        if scope.feed and adapter.uses_cursor(scope.key):
            adapter.resume(scope.key, writer.cursor(scope.key))
            if not partial:
                # A pull of some services only reads the feed without moving its
                # position: the rows of the others are still to be read.
                cursor = functools.partial(adapter.cursor, scope.key)
        log.info("%s: %s from %s to %s", pull.server, shown_scope(scope.key), start, until)
        try:
            if scope.feed:
                records = adapter.fetch_feed(infos, start, until)
            else:
                records = adapter.fetch_cdrs(infos[0], start, until)
            writer.scope = scope.key
            rows = _rows(
                records, pull.server, infos[0], clients, writer.reject, adapter, max_seconds
            )
            newest = writer.store_all(
                rows, scope.key, watermark, chunk_size, pull, progress, cursor=cursor
            )
        except (ProviderAuthError, ProviderUnavailable):
            raise  # the whole server is out of reach: its other services would fail alike
        except ProviderError as exc:
            # One service's bad payload or missing setting: its neighbours still run.
            pull.errors.append(str(exc))
            continue
        log.info("%s: %s read up to %s", pull.server, shown_scope(scope.key), newest)


DEDUPE_SCOPE = "dedupe-key:"


def _check_dedupe_key(
    store: Store, adapter: ProviderAdapter, server: str, *, dry_run: bool
) -> str | None:
    """The error line when the adapter's configured dedupe key is not the server's recorded one.

    The key's name is kept as a `pull_watermarks` row of scope `dedupe-key:NAME`
    (its time: when it was recorded), written at the server's first pull. A
    server with calls stored before that has the adapter's `legacy_dedupe_key`.
    """
    wanted = adapter.dedupe_key
    if wanted is None:
        return None
    with store.transaction() as session:
        scopes = session.scalars(
            select(PullWatermark.scope).where(
                PullWatermark.server == server, PullWatermark.scope.startswith(DEDUPE_SCOPE)
            )
        ).all()
        recorded = scopes[0][len(DEDUPE_SCOPE) :] if scopes else None
        if recorded is None:
            stored = session.scalar(select(Cdr.id).where(Cdr.server == server).limit(1))
            recorded = adapter.legacy_dedupe_key if stored is not None else None
            if recorded is None:
                recorded = wanted
            if not dry_run:
                now = datetime.now(UTC)
                session.add(
                    PullWatermark(
                        server=server,
                        scope=DEDUPE_SCOPE + recorded,
                        watermark=now,
                        updated_at=now,
                    )
                )
                session.commit()
    if recorded != wanted:
        return (
            f"{server}: servers.{server}.cdr_format.columns.id is {wanted!r} but this "
            f"server's calls are stored by {recorded!r}; a new dedupe key would store "
            f"the overlap window again: set it back to {recorded!r}"
        )
    return None


def _inert(value: str | None) -> str | None:
    """Text as both databases can hold it: PostgreSQL refuses NUL in text, so it
    becomes U+FFFD (on SQLite too, so the same call reads the same everywhere)."""
    if value is not None and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _rows(
    records: Iterable[CallRecord | Rejected],
    server: str,
    only: ServiceInfo,
    clients: dict[int, int],
    reject: Callable[[Rejected], None],
    adapter: ProviderAdapter | None = None,
    max_seconds: int = MAX_CALL_SECONDS,
) -> Iterator[tuple]:
    """Each record as a tuple of ROW_KEYS (a tuple costs half what a dict of them does).

    A `Rejected` the adapter gave, and a record that cannot be made a row (any
    exception here concerns that record alone), go to `reject`, not into the rows.
    """
    pulled_at = int(datetime.now(UTC).timestamp())
    dumps = json.JSONEncoder(separators=(",", ":"), default=_json_value, ensure_ascii=False).encode
    for rec in records:
        if rec.__class__ is Rejected:
            reject(rec)
            continue
        try:
            row = _row(rec, server, only, clients, pulled_at, dumps, max_seconds)
        except Exception as exc:  # noqa: BLE001 - one record's failure, set aside
            reject(_rejected_call(rec, exc, adapter, dumps))
            continue
        yield row


def _rejected_call(
    rec: CallRecord, exc: Exception, adapter: ProviderAdapter | None, dumps: Callable
) -> Rejected:
    """A call that could not be stored, as a set-aside record named by its provider id."""
    reason = reason_of(exc) if isinstance(exc, ProviderError) else _why(exc)
    try:
        raw = adapter.kept_text(rec) if adapter is not None else dumps(rec.raw)
    except Exception:  # noqa: BLE001 - the reason matters more than the text
        raw = repr(rec.raw)
    ident = rec.provider_id if isinstance(rec.provider_id, str) else repr(rec.provider_id)
    locator = ident if len(ident) <= PROVIDER_ID_MAX and ident.isprintable() else digest(raw)
    return Rejected(locator, reason, raw)


def _why(exc: BaseException) -> str:
    """An unexpected exception as one line of a set-aside record's reason."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _storable(text: str | None) -> str | None:
    """The text as both databases take it: NUL replaced, no lone surrogate (raises)."""
    if text is None:
        return None
    if not text.isascii():
        text.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
    return _inert(text)


def _row(
    rec: CallRecord,
    server: str,
    only: ServiceInfo,
    clients: dict[int, int],
    pulled_at: int,
    dumps: Callable,
    max_seconds: int = MAX_CALL_SECONDS,
) -> tuple:
    """One call as a row. Every record of every provider passes here: the one place
    the call-length limit is checked (docs/rating.md, "Numbers, limits and decks")."""
    if len(rec.provider_id) > PROVIDER_ID_MAX:
        raise ProviderDataError(
            server,
            f"call id {rec.provider_id[:40]!r}... is longer than {PROVIDER_ID_MAX} characters",
        )
    if rec.billsec > max_seconds:
        raise ProviderDataError(
            server,
            f"CDR {_shown_id(rec.provider_id)}: call of {rec.billsec} s is longer than "
            f"the limit of {max_seconds} s ([pull] max_call_seconds)",
        )
    service_id = rec.service_id if rec.service_id is not None else only.id
    raw_json = raw.json if (raw := rec.raw).__class__ is RawRecord else dumps(raw)
    if not raw_json.isascii():
        raw_json.encode("utf-8")
    billsec = rec.billsec
    if not -(2**31) <= billsec < 2**31:
        raise ValueError(f"billsec {billsec} does not fit a 32-bit column")
    return (
        server,
        _storable(rec.provider_id),
        service_id,
        clients[service_id],
        rec.direction,
        _storable(rec.extension),
        _storable(rec.caller),
        _storable(rec.number),
        int(rec.start.timestamp()),
        int(rec.answer.timestamp()) if rec.answer is not None else None,
        int(rec.end.timestamp()) if rec.end is not None else None,
        billsec,
        _storable(rec.hangup_cause),
        raw_json,
        pulled_at,
        None,  # status
        0,  # rerate_count
    )


def _chunks(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    while chunk := list(islice(rows, size)):
        yield chunk


class _Writer:
    """Chunked inserts and the watermark, on either database.

    Rows go to the database through the driver, as tuples of the row's values
    (times are epoch seconds already), plus the values a driver-level hook (one
    with `columns` and `rater_for`, like `PullRater`) computed for its columns:
    SQLite by one `executemany` of a statement built once, PostgreSQL by `COPY`
    into a temporary table and one `INSERT ... SELECT ... ON CONFLICT DO NOTHING`.
    Per-row parameter processing in SQLAlchemy cost a third of a pull. A plain
    `before_insert` hook, which may put any value in the row dicts (Decimal
    money too), takes the Core path, where the column types convert them.
    """

    def __init__(self, store: Store, server: str, *, dry_run: bool, before_insert: RowHook | None):
        self.store = store
        self.server = server
        self.dry_run = dry_run
        self.before_insert = before_insert
        dialect = postgresql if store.dialect == "postgresql" else sqlite
        insert_cdrs = dialect.insert(Cdr.__table__).on_conflict_do_nothing(
            index_elements=["server", "provider_id"]
        )
        # PostgreSQL: RETURNING lists the rows the database took (the rowcount of
        # SQLAlchemy's batched executemany is -1 there).
        self.insert_cdrs = insert_cdrs.returning(Cdr.__table__.c.id)
        self.rate_rows = None
        extra: tuple[str, ...] = ()
        if before_insert is not None and hasattr(before_insert, "rater_for"):
            self.rate_rows = before_insert.rater_for(ROW_KEYS)
            extra = tuple(before_insert.columns)
        self.row_keys = tuple(key for key in ROW_KEYS if key not in extra)
        self.row_values = operator.itemgetter(*(ROW_KEYS.index(key) for key in self.row_keys))
        self.driver_sql: str | None = None
        if before_insert is None or self.rate_rows is not None:
            columns = (*self.row_keys, *extra)
            compiled = insert_cdrs.compile(dialect=store.engine.dialect, column_keys=columns)
            # Only when every column Core would fill in (Python-side defaults too) is
            # in the row; a schema that grew one more takes the Core path.
            if set(compiled.params) == set(columns) and len(set(columns)) == len(columns):
                self.driver_sql = self._driver_sql(columns)
        # The server's count of stored calls grows in the transaction that stores them.
        counted = dialect.insert(ServerPullState.__table__)
        self.count_stored = counted.on_conflict_do_update(
            index_elements=["server"],
            set_={
                "cdrs_stored_total": ServerPullState.__table__.c.cdrs_stored_total
                + counted.excluded.cdrs_stored_total
            },
        )
        wm = dialect.insert(PullWatermark.__table__)
        self.upsert_watermark = wm.on_conflict_do_update(
            index_elements=["server", "scope"],
            set_={"watermark": wm.excluded.watermark, "updated_at": wm.excluded.updated_at},
        )
        self.upsert_cursor = wm.on_conflict_do_update(
            index_elements=["server", "scope"],
            set_={
                "watermark": wm.excluded.watermark,
                "updated_at": wm.excluded.updated_at,
                "cursor": wm.excluded.cursor,
            },
        )
        self._dry_seen: set[str] = set()
        self.scope = ""
        self.rejects: list[Rejected] = []
        reject_insert = dialect.insert(RejectedRecord.__table__).on_conflict_do_nothing(
            index_elements=["server", "scope", "locator"]
        )
        self.insert_reject = reject_insert.returning(RejectedRecord.__table__.c.id)
        self.pull: ServerPull | None = None
        # --retry-rejected: records that fail again are kept here, not written.
        self.keep_rejects: list[Rejected] | None = None

    def reject(self, record: Rejected) -> None:
        """Set a record aside: written with the chunk being written (or after the last)."""
        self.rejects.append(record)

    def _write_rejects(self, conn: Connection | None) -> None:
        """The pending set-aside records; a line for each one not set aside before."""
        pending, self.rejects = self.rejects, []
        if self.keep_rejects is not None:
            self.keep_rejects.extend(pending)
            return
        now = int(datetime.now(UTC).timestamp())
        seen = set()
        for record in pending:
            locator = record.locator[:PROVIDER_ID_MAX]
            if locator in seen:
                continue
            seen.add(locator)
            new = True
            if conn is not None:
                values = {
                    "server": self.server,
                    "scope": self.scope,
                    "locator": locator,
                    "reason": escape(record.reason),
                    "raw": escape(record.raw),
                    "first_seen": now,
                    "resolved_at": None,
                }
                new = conn.execute(self.insert_reject, values).first() is not None
            if new and self.pull is not None:
                verb = "would set aside" if self.dry_run else "set aside"
                self.pull.set_aside.append(
                    f"pull-cdrs: {self.server}: {verb} {escape(self.scope)} {escape(locator)}: "
                    f"{escape(record.reason)} (voipctl pull-cdrs --retry-rejected after a fix)"
                )

    def _driver_sql(self, columns: tuple[str, ...]) -> str:
        quote = self.store.engine.dialect.identifier_preparer.quote
        table = quote(Cdr.__table__.name)
        names = ", ".join(quote(c) for c in columns)
        if self.store.dialect == "postgresql":
            # The fast path: the chunk's new rows COPY'd straight into cdrs.
            self.pg_copy_direct = f"COPY {table} ({names}) FROM STDIN"
            self.pg_id_at = columns.index("provider_id")
            # The safe path, for a chunk whose COPY met the unique key: one temporary
            # table per transaction, gone at its commit or rollback.
            self.pg_create = (
                f"CREATE TEMP TABLE pull_cdrs_in ON COMMIT DROP AS "
                f"SELECT {names} FROM {table} WITH NO DATA"
            )
            self.pg_copy = f"COPY pull_cdrs_in ({names}) FROM STDIN"
            return (
                f"INSERT INTO {table} ({names}) SELECT {names} FROM pull_cdrs_in "
                "ON CONFLICT (server, provider_id) DO NOTHING"
            )
        marks = ", ".join("?" * len(columns))
        return (
            f"INSERT INTO {table} ({names}) VALUES ({marks}) "
            "ON CONFLICT (server, provider_id) DO NOTHING"
        )

    def watermark(self, scope: str) -> datetime | None:
        with self.store.transaction() as session:
            row = session.get(PullWatermark, (self.server, scope))
            return row.watermark if row is not None else None

    def cursor(self, scope: str) -> str | None:
        with self.store.transaction() as session:
            row = session.get(PullWatermark, (self.server, scope))
            return row.cursor if row is not None else None

    def _mark(self, conn: Connection, scope: str, newest: int, cursor: Callable | None) -> None:
        now = int(datetime.now(UTC).timestamp())
        params = {"server": self.server, "scope": scope, "watermark": newest, "updated_at": now}
        if cursor is None:
            conn.execute(self.upsert_watermark, params)
        else:
            conn.execute(self.upsert_cursor, {**params, "cursor": cursor()})

    def store_all(
        self,
        rows: Iterator[tuple],
        scope: str,
        watermark: datetime | None,
        chunk_size: int,
        pull: ServerPull,
        progress: ProgressHook | None,
        cursor: Callable[[], str | None] | None = None,
    ) -> datetime | None:
        """Store every chunk; the watermark moves with the last one. Returns the newest start.

        `cursor` gives the feed's read position once the records are all read; it
        is stored with the watermark, also when the read gave no call to store.
        """
        newest = int(watermark.timestamp()) if watermark is not None else None
        self.pull = pull
        fetched_before = pull.fetched
        chunks = _chunks(rows, chunk_size)
        pending = next(chunks, None)
        while pending is not None:
            # One chunk of look-ahead: the last chunk is known before it is written,
            # so the watermark goes into that chunk's transaction.
            following = next(chunks, None)
            chunk_newest = max(row[_START] for row in pending)
            newest = chunk_newest if newest is None else max(newest, chunk_newest)
            last = following is None
            stored = self._write(pending, scope if last else None, newest, cursor=cursor)
            pull.fetched += len(pending)
            pull.stored += stored
            pull.duplicates += len(pending) - stored
            if progress is not None:
                progress(self.server, len(pending))
            if not last:
                pause_point("pull-cdrs:chunk")  # test-only: a kill between two chunks
            pending = following
        if cursor is not None and not self.dry_run and pull.fetched == fetched_before:
            # Nothing stored, the position moved all the same (rows skipped or set
            # aside): kept with the records set aside.
            mark = newest if newest is not None else int(datetime.now(UTC).timestamp())
            with self.store.engine.begin() as conn:
                self._write_rejects(conn)
                self._mark(conn, scope, mark, cursor)
        elif self.rejects:
            # Only records set aside (or the last ones met after the last chunk).
            if self.dry_run:
                self._write_rejects(None)
            else:
                with self.store.engine.begin() as conn:
                    self._write_rejects(conn)
        return datetime.fromtimestamp(newest, UTC) if newest is not None else None

    def _write(
        self,
        rows: list[tuple],
        scope: str | None,
        newest: int,
        after: Callable[[Connection, list[tuple]], None] | None = None,
        cursor: Callable[[], str | None] | None = None,
    ) -> int:
        if self.dry_run:
            # Nothing is stored, so nothing is rated: a dry run only counts.
            self._write_rejects(None)
            return self._count_new(rows)
        params = dicts = None
        if self.driver_sql is not None and self.rate_rows is not None:
            values = self.row_values
            params = [
                values(row) + extra for row, extra in zip(rows, self._rated(rows), strict=True)
            ]
        elif self.driver_sql is not None and self.before_insert is None:
            params = rows  # tuples of ROW_KEYS, the statement's columns
        else:
            # The Core path: row dicts, which a plain hook may change or replace.
            dicts = [dict(zip(ROW_KEYS, row, strict=True)) for row in rows]
            if self.before_insert is not None:
                replaced = self.before_insert(dicts)
                if replaced is not None:
                    dicts = replaced
        with self.store.engine.begin() as conn:
            self._write_rejects(conn)
            if params is not None:
                stored = self._insert_driver(conn, params)
            else:
                stored = len(conn.execute(self.insert_cdrs, dicts).all())
            if stored:
                conn.execute(
                    self.count_stored, {"server": self.server, "cdrs_stored_total": stored}
                )
            if scope is not None:
                self._mark(conn, scope, newest, cursor)
            if after is not None:
                after(conn, rows)
        return stored

    def _rated(self, rows: list[tuple]) -> list[tuple]:
        """The rating values of each row. A row the rater cannot rate (an OverflowError
        from a cost beyond any column) or whose values no column can hold is set aside,
        and taken out of `rows` (in place): the rest of the chunk is stored."""
        try:
            extras = self._checked(self.rate_rows(rows))
        except Exception as exc:  # noqa: BLE001 - find the row(s) that failed, one by one
            log.debug("%s: rating a chunk failed (%s): rating it row by row", self.server, exc)
        else:
            return extras
        kept_rows, extras = [], []
        for row in rows:
            try:
                (extra,) = self._checked(self.rate_rows([row]))
            except Exception as exc:  # noqa: BLE001 - one record's failure, set aside
                locator = row[_PROVIDER_ID]
                self.reject(Rejected(locator, f"rating: {_why(exc)}", row[ROW_KEYS.index("raw")]))
                continue
            kept_rows.append(row)
            extras.append(extra)
        rows[:] = kept_rows
        return extras

    @staticmethod
    def _checked(extras: Iterable[tuple]) -> list[tuple]:
        out = list(extras)
        for extra in out:
            for value in extra:
                if value.__class__ is int and not -(2**63) <= value < 2**63:
                    raise OverflowError(f"{value} does not fit a 64-bit column")
        return out

    def _insert_driver(self, conn: Connection, params: list[tuple]) -> int:
        """Insert the rows' values through the driver; returns how many the database took.

        Statements go through `exec_driver_sql`, so a database error is SQLAlchemy's
        (voipctl reports it as a database error); so does a failed COPY.
        """
        if self.store.dialect != "postgresql":
            # sqlite3 sums the rows each execution inserted in rowcount.
            return conn.exec_driver_sql(self.driver_sql, params).rowcount
        # PostgreSQL: the ids of the chunk already stored (the overlap window brings
        # them back on every run) are left out, and the rest is COPY'd straight into
        # cdrs, in a savepoint. The unique key stays the guard: a COPY that meets it (a
        # writer outside this server's lock) is rolled back to the savepoint and the
        # chunk takes the safe path, a temporary table and INSERT ... ON CONFLICT DO NOTHING.
        fresh = self._not_stored(conn, params)
        if not fresh:
            return 0
        try:
            with conn.begin_nested():
                self._copy(conn, self.pg_copy_direct, fresh)
            return len(fresh)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
            log.info(
                "%s: a chunk met the unique key: stored by INSERT ... ON CONFLICT", self.server
            )
        conn.exec_driver_sql(self.pg_create)
        self._copy(conn, self.pg_copy, fresh)
        return conn.exec_driver_sql(self.driver_sql).rowcount

    def _not_stored(self, conn: Connection, params: list[tuple]) -> list[tuple]:
        """The rows whose id this server has not stored, each id once (the first row kept)."""
        at = self.pg_id_at
        ids = [row[at] for row in params]
        stored = set(
            conn.exec_driver_sql(
                "SELECT provider_id FROM cdrs WHERE server = %(server)s "
                "AND provider_id = ANY(%(ids)s)",
                {"server": self.server, "ids": ids},
            ).scalars()
        )
        fresh = []
        for row, provider_id in zip(params, ids, strict=True):
            if provider_id not in stored:
                stored.add(provider_id)
                fresh.append(row)
        return fresh

    @staticmethod
    def _copy(conn: Connection, sql: str, rows: list[tuple]) -> None:
        """COPY `rows` through the driver; a failure is SQLAlchemy's DBAPIError, as any other."""
        dbapi = conn.connection.driver_connection
        try:
            with dbapi.cursor() as cursor, cursor.copy(sql) as copy:
                write = copy.write_row
                for row in rows:
                    write(row)
        except dbapi.Error as exc:
            raise DBAPIError.instance(sql, None, exc, dbapi.Error) from None

    def _count_new(self, rows: list[tuple]) -> int:
        ids = [row[_PROVIDER_ID] for row in rows]
        with self.store.engine.connect() as conn:
            existing = set(
                conn.scalars(
                    select(Cdr.provider_id).where(
                        Cdr.server == self.server, Cdr.provider_id.in_(ids)
                    )
                )
            )
        new = 0
        for provider_id in ids:
            if provider_id not in existing and provider_id not in self._dry_seen:
                self._dry_seen.add(provider_id)
                new += 1
        return new


@dataclass
class RetryReport:
    """What `pull-cdrs --retry-rejected` did."""

    tried: int = 0
    resolved: int = 0
    stored: int = 0
    still: list[str] = field(default_factory=list)  # one line per record still set aside
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.still or self.errors else 0

    def summary_line(self) -> str:
        return (
            f"pull-cdrs: retried {self.tried} set-aside records: {self.resolved} resolved "
            f"({self.stored} calls stored), {len(self.still)} still set aside"
        )


def retry_rejected(
    store: Store,
    config: Config,
    *,
    server: str | None = None,
    adapter_factory: Callable[[str, Any], ProviderAdapter] = adapter_for,
) -> RetryReport:
    """Read the kept text of every unresolved set-aside record again (docs/providers.md).

    A record that now reads is stored (the cdrs unique key skips a call already
    there), rated as pull-cdrs rates, and marked resolved in the same transaction;
    one that still fails stays set aside, with the reason of this attempt shown.
    """
    if server is not None:
        config.server(server)  # ConfigError naming the known servers
    report = RetryReport()
    query = select(RejectedRecord).where(RejectedRecord.resolved_at.is_(None))
    if server is not None:
        query = query.where(RejectedRecord.server == server)
    with store.transaction() as session:
        pending = list(session.scalars(query.order_by(RejectedRecord.id)))
    if not pending:
        return report
    by_server: dict[str, list[RejectedRecord]] = defaultdict(list)
    for row in pending:
        by_server[row.server].append(row)
    with ExitStack() as held:
        # The servers' pull locks: a record is read again only while no pull reads its server.
        locks = _server_locks(store, by_server)
        for lock in locks.values():
            held.enter_context(lock)
        rater = PullRater(store)
        held.callback(rater.close)
        with job_run(store, JOB, lock=False) as run:
            for name in sorted(by_server):
                if locks[name].refused is not None:
                    report.errors.append(f"pull-cdrs: {name} skipped: {locks[name].refused}")
                    continue
                try:
                    _retry_server(
                        store, config, name, by_server[name], report, adapter_factory, rater
                    )
                except ProviderError as exc:
                    report.errors.append(str(exc))
            for line in [*report.still, *report.errors]:
                run.fail(line)
            run.summary["retry_rejected"] = {
                "tried": report.tried,
                "resolved": report.resolved,
                "stored": report.stored,
            }
    return report


def _retry_server(
    store: Store,
    config: Config,
    name: str,
    rows: list[RejectedRecord],
    report: RetryReport,
    adapter_factory: Callable[[str, Any], ProviderAdapter],
    rater: PullRater,
) -> None:
    def still(row: RejectedRecord, reason: str) -> None:
        report.still.append(
            f"pull-cdrs: {name}: still set aside {escape(row.scope)} {escape(row.locator)}: "
            f"{escape(reason)}"
        )

    report.tried += len(rows)
    if name not in config.servers:
        for row in rows:
            still(row, f"server {name} is not in the configuration ({config.source})")
        return
    services = _services(store, name, None, None).get(name, [])
    with adapter_factory(name, config.server(name)) as adapter:
        scopes = {scope.key: scope for scope in _scopes(adapter, services)}
        writer = _Writer(store, name, dry_run=False, before_insert=rater)
        for row in rows:
            scope = scopes.get(row.scope)
            if scope is None:
                still(row, "no active service reads this scope any more")
                continue
            if was_cut(row.raw):
                still(
                    row, f"its kept text was cut at {RAW_MAX} characters: read it again by --since"
                )
                continue
            infos = [service_info(s) for s in scope.services]
            clients = {s.id: s.client_id for s in scope.services}
            kept: list[Rejected] = []
            writer.keep_rejects = kept
            try:
                records = list(adapter.reparse(infos, unescape(row.raw)))
                tuples = list(
                    _rows(
                        records,
                        name,
                        infos[0],
                        clients,
                        kept.append,
                        adapter,
                        config.pull.max_call_seconds,
                    )
                )
            except NotImplementedError as exc:
                still(row, str(exc))
                continue
            except (ProviderAuthError, ProviderUnavailable):
                raise
            except Exception as exc:  # noqa: BLE001 - this record still fails
                still(row, reason_of(exc) if isinstance(exc, ProviderError) else _why(exc))
                continue
            if kept:
                still(row, kept[0].reason)
                continue
            record_id = row.id

            def resolve(
                conn: Connection, stored_rows: list[tuple], record_id=record_id, kept=kept
            ) -> None:
                if kept:
                    return  # rating set one aside again: not resolved
                conn.execute(
                    RejectedRecord.__table__.update()
                    .where(RejectedRecord.__table__.c.id == record_id)
                    .values(resolved_at=int(datetime.now(UTC).timestamp()))
                )

            if tuples:
                stored = writer._write(tuples, None, 0, after=resolve)
            else:
                # Read, but no call of these services (a b-leg, another tenant): resolved.
                with store.engine.begin() as conn:
                    resolve(conn, [])
                stored = 0
            if kept:
                still(row, kept[0].reason)
                continue
            report.resolved += 1
            report.stored += stored


def _json_value(value: Any) -> Any:
    """A value json cannot encode: a Decimal read from a JSON number (Vodia) is a
    number again, as the provider sent it; anything else is its text."""
    if isinstance(value, Decimal) and value.is_finite() and abs(value) < Decimal("1e300"):
        return float(value)
    return str(value)


def _shown_id(provider_id: str) -> str:
    """A call id as one line can show it: no line break or control character, 80 at most."""
    shown = "".join(c if c.isprintable() else "?" for c in provider_id[:80])
    return shown + ("..." if len(provider_id) > 80 else "")
