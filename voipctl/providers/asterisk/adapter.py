"""Asterisk / FreePBX: the calls of cdr_csv's Master.csv or of a cdr table, and a command lever.

One server is one PBX. Its call records are one feed for all its services
(`feed_key`), read once per run and matched to services by their fields:

- a row whose `accountcode` is a service's accountcode (FreePBX's per-extension
  "accountcode" setting) is that service's, when the service bills every
  extension or the row's extension is one it bills;
- otherwise an inbound row whose number is one of a service's DIDs is that
  service's;
- any other row is no service's and is left out.

`source = "csv"`: the local Master.csv, read from where the last run stopped
(`offsets.MasterCsvReader`); the position is the feed's cursor, stored by
pull-cdrs with the calls read up to it (`ProviderAdapter.uses_cursor`). Since
the file is written at each call's end, a row is not dropped for starting
before the window: the position alone says what is new. The first read (no
position yet) keeps the rows that started in the window only.

`source = "table"`: one time window of the cdr table (`table.CdrTable`) through
the database URL in `db_url_env` (mysql:// or postgresql://).

Suspend levers (`suspend`): `manual` raises ManualActionRequired; `command` runs
suspend_command/unsuspend_command (`voipctl.providers.levers`) with `{accountcode}`,
`{did}`, `{extensions}` (comma separated) and `{service_id}` filled in. The
lever cannot be read back: `state()` is unknown.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from voipctl.config import secret
from voipctl.errors import (
    ConfigError,
    DataError,
    ManualActionRequired,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
)
from voipctl.providers.asterisk.config import AsteriskServer
from voipctl.providers.asterisk.master_csv import CallRules, Layout, RowReader, Skipped
from voipctl.providers.asterisk.offsets import MasterCsvReader, ReadOffset
from voipctl.providers.base import (
    CallRecord,
    FeedLayout,
    ProviderAdapter,
    Rejected,
    SampleRow,
    ServiceInfo,
)
from voipctl.providers.levers import run_command
from voipctl.providers.matching import did_key

log = logging.getLogger(__name__)
FEED_KEY_MAX = 300  # pull_watermarks.scope
SAMPLE_LINES = 20
HEAD_BYTES = 64 * 1024
# Field counts of a Master.csv line -> the flags that make them (master_csv.Layout).
_FLAGS_BY_COUNT = {
    16: (),
    17: ("loguniqueid",),  # or loguserfield: told by the 17th field's look
    18: ("loguniqueid", "loguserfield"),
    19: ("newcdrcolumns",),
    20: ("loguniqueid", "newcdrcolumns"),
    21: ("loguniqueid", "loguserfield", "newcdrcolumns"),
}
# A channel's unique id as Asterisk makes it: epoch seconds, a dot, a counter.
_UNIQUEID = re.compile(r"^[0-9]{9,}\.[0-9]+$")
_FLAGS = ("loguniqueid", "loguserfield", "newcdrcolumns")


class _Matcher:
    """A record -> the service it belongs to (module docstring), or None."""

    def __init__(self, services: list[ServiceInfo]):
        self.by_code: dict[str, list[ServiceInfo]] = {}
        self.by_did: dict[str, ServiceInfo] = {}
        for service in services:
            if service.peer_id:
                self.by_code.setdefault(service.peer_id.casefold(), []).append(service)
            for did in service.dids:
                key = did_key(did)
                if key:
                    self.by_did.setdefault(key, service)

    def match(self, record: CallRecord) -> ServiceInfo | None:
        code = (record.raw.get("accountcode") or "").casefold()
        for service in self.by_code.get(code, ()) if code else ():
            if not service.extensions or {record.extension, record.caller} & set(
                service.extensions
            ):
                return service
        if record.direction == "inbound":
            return self.by_did.get(did_key(record.number))
        return None


class AsteriskAdapter(ProviderAdapter):
    """One Asterisk / FreePBX PBX: its Master.csv or cdr table, its command lever."""

    type = "asterisk"

    def __init__(self, name: str, config: AsteriskServer):
        super().__init__(name, config)
        where = f"servers.{name}"
        try:
            self.layout = Layout(
                loguniqueid=config.loguniqueid,
                loguserfield=config.loguserfield,
                newcdrcolumns=config.newcdrcolumns,
                usegmtime=config.usegmtime,
                zone=config.timezone,
            )
            self.rules = CallRules(
                trunk_prefixes=tuple(config.trunk_prefixes),
                inbound_contexts=tuple(config.inbound_contexts),
                billed_rows=config.billed_rows,
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None
        self._resume: dict[str, ReadOffset | None] = {}
        self._cursors: dict[str, str | None] = {}
        self._engine = None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- contract ---------------------------------------------------------------

    def check(self) -> str:
        """Master.csv readable, or the cdr table reachable with its columns."""
        if self.config.source == "csv":
            path = Path(self.config.path or "")
            try:
                with path.open("rb") as f:
                    f.read(1)
                size = path.stat().st_size
            except FileNotFoundError:
                raise ProviderUnavailable(self.name, f"{path}: no such file") from None
            except OSError as exc:
                raise ProviderUnavailable(
                    self.name, f"{path}: cannot be read ({exc.strerror})"
                ) from None
            return f"Master.csv {path}: readable, {size} bytes"
        table = self._table([])
        try:
            return f"table {table.table}: {len(table.columns)} columns ({table.layout.describe()})"
        finally:
            table.conn.close()

    def fetch_cdrs(
        self, service: ServiceInfo, since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        return self.fetch_feed([service], since, until)

    def feed_key(self, service: ServiceInfo) -> str | None:
        if self.config.source == "csv":
            key = f"csv:{self.config.path}"
        else:
            key = f"table:{self.config.table}"
        if len(key) > FEED_KEY_MAX:
            key = "csv-sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return key

    def uses_cursor(self, key: str) -> bool:
        return self.config.source == "csv"

    def resume(self, key: str, cursor: str | None) -> None:
        self._resume[key] = ReadOffset.from_text(cursor) if cursor else None

    def cursor(self, key: str) -> str | None:
        return self._cursors.get(key)

    def fetch_feed(
        self, services: list[ServiceInfo], since: datetime, until: datetime
    ) -> Iterator[CallRecord | Rejected]:
        matcher = _Matcher(services)
        if self.config.source == "csv":
            records = self._read_csv(services, since, until)
        else:
            records = self._read_table(services, since, until)
        for item in records:
            if isinstance(item, Skipped):
                continue
            if isinstance(item, Rejected):
                yield item
                continue
            service = matcher.match(item)
            if service is None:
                continue
            item.service_id = service.id
            yield item

    # -- feed inspect -------------------------------------------------------------

    feed_table = "servers"

    def feed_head(self, source: str) -> list[str]:
        """The first SAMPLE_LINES whole lines (at most HEAD_BYTES) of a local Master.csv."""
        path = Path(source)
        try:
            with path.open("rb") as f:
                data = f.read(HEAD_BYTES)
        except OSError as exc:
            raise ProviderError(self.name, f"{path}: cannot read: {exc.strerror}") from None
        text = data.decode("utf-8", "replace")
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()  # a line being written, or cut by the byte limit
        return lines[:SAMPLE_LINES]

    def inspect_feed(self, lines: list[str], shown: str) -> FeedLayout:
        """cdr.conf's [csv] flags the first lines show, by their number of fields."""
        counts: dict[int, int] = {}
        uniqueid_like = 0
        for line in lines:
            try:
                values = next(csv.reader([line]), [])
            except csv.Error:
                continue
            counts[len(values)] = counts.get(len(values), 0) + 1
            if len(values) == 17 and _UNIQUEID.match(values[16]):
                uniqueid_like += 1
        if not counts:
            raise ProviderError(self.name, f"{shown}: no line to tell the layout from")
        fields = max(counts, key=lambda n: counts[n])
        if fields not in _FLAGS_BY_COUNT:
            raise ProviderError(
                self.name,
                f"{shown}: lines of {fields} fields are not a cdr_csv layout (16 to 21 fields)",
            )
        flags = _FLAGS_BY_COUNT[fields]
        notes = []
        if fields == 17 and uniqueid_like < counts[17]:
            flags = ("loguserfield",)
        if fields in (17, 20):
            notes.append(
                f"{fields} fields are either loguniqueid or loguserfield: "
                f"{' and '.join(flags)} chosen from the look of the fields; check cdr.conf"
            )
        if len(counts) > 1:
            notes.append(
                "lines of "
                + ", ".join(f"{n} fields: {c}" for n, c in sorted(counts.items()))
                + f"; the layout of {fields} is proposed, the others would be set aside"
            )
        notes.append(
            "the times carry no zone: usegmtime and timezone are kept as configured; "
            "check cdr.conf's usegmtime and the PBX's zone"
        )
        settings = {flag: flag in flags for flag in _FLAGS}
        settings["usegmtime"] = self.config.usegmtime
        settings["timezone"] = self.config.timezone
        facts = [
            ("fields", str(fields)),
            ("cdr.conf flags", ", ".join(flags) or "none"),
            ("time zone", "UTC (usegmtime)" if self.config.usegmtime else self.config.timezone),
        ]
        return FeedLayout(facts, f"servers.{self.name}", settings, notes)

    def with_feed_layout(self, settings: dict) -> AsteriskAdapter:
        """This server with `settings` (the flags, usegmtime, timezone) as its layout."""
        from pydantic import ValidationError

        try:
            config = AsteriskServer.model_validate({**self.config.model_dump(), **settings})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"servers.{self.name}.{where}: {first['msg']}") from None
        return AsteriskAdapter(self.name, config)

    def read_sample(
        self, lines: list[str], services: list[ServiceInfo], shown: str
    ) -> Iterator[SampleRow]:
        """Each line read as a pull reads it; rows not billed (Skipped) are left out."""
        matcher = _Matcher(services)
        rows = RowReader(
            self.layout,
            self.rules,
            source=Path(shown).name,
            dids=[d for s in services for d in s.dids],
        )
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            item = rows.parse_line(line, number)
            if isinstance(item, Skipped):
                continue
            if isinstance(item, Rejected):
                yield SampleRow(number, rejected=item)
                continue
            service = matcher.match(item)
            item.service_id = service.id if service is not None else None
            yield SampleRow(number, record=item)

    def suspend(self, service: ServiceInfo, reason: str) -> str:
        if self.config.suspend == "command":
            return self._run(self.config.suspend_command, service, "suspend")
        raise ManualActionRequired(
            self.name,
            f"stop the calls of accountcode {service.peer_id} (DID {service.main_did}) of "
            f"service {service.id} on the PBX" + (f"; reason: {reason}" if reason else ""),
        )

    def unsuspend(self, service: ServiceInfo) -> str:
        if self.config.suspend == "command":
            return self._run(self.config.unsuspend_command, service, "unsuspend")
        raise ManualActionRequired(
            self.name,
            f"let the calls of accountcode {service.peer_id} (DID {service.main_did}) of "
            f"service {service.id} through on the PBX",
        )

    # -- reading ----------------------------------------------------------------

    def _read_csv(self, services: list[ServiceInfo], since: datetime, until: datetime):
        key = self.feed_key(services[0])
        previous = self._resume.get(key)
        path = Path(self.config.path or "")
        if previous is not None and previous.path != str(path):
            previous = None  # another file configured: read it from its start
        reader = MasterCsvReader(path, previous)
        rows = RowReader(
            self.layout, self.rules, source=path.name, dids=[d for s in services for d in s.dids]
        )
        try:
            for line in reader.lines():
                rows.source = Path(line.file).name
                item = rows.parse_line(line.text, line.lineno)
                if (
                    previous is None
                    and isinstance(item, CallRecord)
                    and not since <= item.start < until
                ):
                    continue
                yield item
        except DataError as exc:
            raise ProviderUnavailable(self.name, str(exc)) from None
        for note in reader.notes:
            log.warning("%s: %s", self.name, note)
        self._cursors[key] = reader.offset.to_text() if reader.offset is not None else None

    def _read_table(self, services: list[ServiceInfo], since: datetime, until: datetime):
        table = self._table([d for s in services for d in s.dids])
        # FreePBX's table has no answer or end column. Asterisk's billsec counts from
        # the answer to the end and duration from the start to the end, so a row with
        # billed seconds was answered duration - billsec seconds after its start.
        derive = "answer" not in table.columns
        try:
            for item in table.fetch(since, until):
                if derive and isinstance(item, CallRecord) and item.billsec > 0:
                    duration = int(item.raw.get("duration") or item.billsec)
                    item.answer = item.start + timedelta(seconds=duration - item.billsec)
                    item.end = item.start + timedelta(seconds=duration)
                yield item
        except Exception as exc:  # noqa: BLE001 - the driver's own errors, one line
            if isinstance(exc, ProviderError):
                raise
            raise ProviderUnavailable(
                self.name, f"table {self.config.table}: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            table.conn.close()

    def _table(self, dids: list[str]):
        from voipctl.providers.asterisk.table import CdrTable

        conn = self._connect()
        try:
            return CdrTable(
                conn,
                dialect=self.config.dialect,
                table=self.config.table,
                zone="UTC" if self.config.usegmtime else self.config.timezone,
                rules=self.rules,
                dids=dids,
            )
        except DataError as exc:
            conn.close()
            raise ProviderError(self.name, str(exc)) from None
        except ConfigError as exc:
            conn.close()
            raise ConfigError(f"servers.{self.name}.{exc}") from None
        except Exception as exc:  # noqa: BLE001 - the driver's own errors, one line
            conn.close()
            raise ProviderUnavailable(
                self.name, f"table {self.config.table}: {type(exc).__name__}: {exc}"
            ) from None

    def _connect(self):
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError
        from sqlalchemy.pool import NullPool

        where = f"servers.{self.name}.db_url_env"
        if self._engine is None:
            raw = secret(self.config.db_url_env, what=where)
            if not raw:
                raise ConfigError(f"{where}: a cdr database URL is needed here")
            try:
                url = make_url(raw)
            except ArgumentError:
                raise ConfigError(
                    f"{where}: {self.config.db_url_env} is not a database URL"
                ) from None
            backend = url.get_backend_name()
            if backend in ("mysql", "mariadb"):
                url = url.set(drivername="mysql+pymysql")
                wanted = "mysql"
            elif backend in ("postgresql", "postgres"):
                url = url.set(drivername="postgresql+psycopg")
                wanted = "postgresql"
            else:
                raise ConfigError(
                    f"{where}: {self.config.db_url_env} must be a mysql:// or postgresql:// URL, "
                    f"not {url.drivername}://"
                )
            if wanted != self.config.dialect:
                raise ConfigError(
                    f"{where}: {self.config.db_url_env} is a {wanted} URL but "
                    f"servers.{self.name}.dialect is {self.config.dialect}"
                )
            timeout = max(1, min(30, int(self.config.timeout_s)))
            self._engine = create_engine(
                url, poolclass=NullPool, connect_args={"connect_timeout": timeout}
            )
        try:
            return self._engine.raw_connection()
        except ImportError as exc:
            raise ConfigError(
                f"{where}: the database driver {exc.name} is not installed "
                "(pip install 'voipctl[asterisk]')"
            ) from None
        except Exception as exc:  # noqa: BLE001 - the driver's own errors, one line
            refused = _refusal(exc)
            if refused is not None:
                raise ProviderAuthError(
                    self.name, f"the credentials were refused (cdr database: {refused})"
                ) from None
            raise ProviderUnavailable(
                self.name, f"cannot reach the cdr database: {type(exc).__name__}"
            ) from None

    def _run(self, template: list[str] | None, service: ServiceInfo, action: str) -> str:
        values = {
            "{accountcode}": service.peer_id or "",
            "{did}": service.main_did or (service.dids[0] if service.dids else ""),
            "{extensions}": ",".join(service.extensions),
            "{service_id}": str(service.id),
        }
        return run_command(self.name, template, values, action, self.config.timeout_s)


# MySQL / MariaDB refusals of the user or its password: 1045 ER_ACCESS_DENIED_ERROR,
# 1044 ER_DBACCESS_DENIED_ERROR, 1698 ER_ACCESS_DENIED_NO_PASSWORD_ERROR
# (https://mariadb.com/kb/en/mariadb-error-codes/).
_MYSQL_REFUSALS = {1044, 1045, 1698}


def _refusal(exc: Exception) -> str | None:
    """What names a connection error as refused credentials, or None (no text of the
    driver's: its message names the user and host, never needed to act on it)."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_REFUSALS:
        return f"MySQL error {args[0]}"
    # PostgreSQL (cdr_pgsql's table): SQLSTATE class 28, or libpq's text while connecting.
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if sqlstate.startswith("28") or "password authentication failed" in str(orig).lower():
        return "PostgreSQL: password authentication failed"
    return None
