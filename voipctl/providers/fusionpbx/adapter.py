"""FusionPBX: CDRs from its PostgreSQL database or its CSV export; suspend levers.

Stock FusionPBX has no REST API for CDRs, so there are two ways in (docs/providers.md):

- `mode = "db"`: read `v_xml_cdr` (joined to `v_extensions` for the extension
  number) with a read-only role, streamed through a server-side cursor;
- `mode = "export"`: `app/xml_cdr/xml_cdr_export.php` with a user's API key,
  one CSV document per window, streamed line by line and read as FusionPBX
  writes it, unescaped quotes included (`fusionpbx_export`).

Suspension writes FusionPBX's database (`v_gateways.enabled`,
`v_domains.domain_enabled` or `v_extensions.enabled`) and, for gateways, tells
FreeSWITCH over the event socket (`sofia profile P killgw UUID` / `rescan`).
FusionPBX 5.x declares these flags `boolean`; older schemas hold the text
'true'/'false'. The column's type is read from the catalogue and the value
written in kind.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from voipctl import money
from voipctl.config import secret
from voipctl.errors import (
    ConfigError,
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    ProviderUnavailable,
)
from voipctl.providers.base import (
    CallRecord,
    LeverState,
    ProviderAdapter,
    Rejected,
    ServiceInfo,
    digest,
    reason_of,
)
from voipctl.providers.fusionpbx.cache import CacheClearer, CacheSettings, read_settings, refusal
from voipctl.providers.fusionpbx.config import FusionPBXServer
from voipctl.providers.fusionpbx.esl import (
    EslClient,
    GatewayStatus,
    esl_for,
    parse_gateway_status,
    sofia_verdict,
)
from voipctl.providers.fusionpbx.export import (
    EXPORT_PATH,
    ExportRecord,
    lf_lines,
    read_export,
)
from voipctl.providers.http import HttpClient
from voipctl.providers.matching import did_key, did_keys
from voipctl.redact import redact_url

log = logging.getLogger(__name__)

CDR_TABLES = ("v_xml_cdr", "v_extensions")
LEVER_TABLES = {"gateway": "v_gateways", "domain": "v_domains", "extensions": "v_extensions"}
STREAM_ROWS = 2000  # rows per round trip of the server-side cursor
DEFAULT_PROFILE = "external"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# What cdrs.billsec holds (32-bit). How long a call may be is pull-cdrs' one
# limit for every provider, [pull] max_call_seconds (31 days by default).
MAX_BILLSEC = 2**31 - 1

# v_xml_cdr columns read in db mode; any an older schema lacks is read as NULL.
CDR_COLUMNS = (
    "xml_cdr_uuid",
    "domain_name",
    "direction",
    "leg",
    "caller_id_name",
    "caller_id_number",
    "caller_destination",
    "destination_number",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "start_epoch",
    "answer_epoch",
    "end_epoch",
    "duration",
    "billsec",
    "hangup_cause",
    "status",
    "sip_call_id",
)


class FusionPBXAdapter(ProviderAdapter):
    """One FusionPBX server, read in `db` or `export` mode; suspended per `suspend`."""

    type = "fusionpbx"
    # Seconds before the first HTTP retry (doubling each time); tests make it tiny.
    backoff_s = 0.5

    def __init__(
        self,
        name: str,
        config: FusionPBXServer,
        *,
        transport: httpx.BaseTransport | None = None,
    ):
        super().__init__(name, config)
        self._transport = transport
        self._http: HttpClient | None = None
        self._engine: Engine | None = None
        self._columns: dict[str, dict[str, str]] = {}  # table -> column -> data_type
        self._cache_known = False  # v_default_settings read (fusionpbx_cache)
        self._cache_read: CacheSettings | None = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- contract ---------------------------------------------------------------

    def check(self) -> str:
        """Reach the CDR source (database or export URL) and, for gateways, the event socket."""
        parts = []
        if self.config.mode == "export":
            # A one-second window: FusionPBX ignores a window with a zero end ("0" is
            # empty to PHP) and would export every call.
            now = int(datetime.now(UTC).timestamp())
            self._export_lines(now - 1, now, None).close()
            parts.append(f"export at {redact_url(self.config.url)}: API key accepted")
        if self.config.mode == "db" or self.config.db_url_env:
            parts.append(self._check_db())
            try:
                self._refuse_unclearable_caches()
            except SQLAlchemyError as exc:
                raise self._db_error(exc, "reading v_default_settings") from None
        if self.config.suspend == "gateway":
            with esl_for(self.name, self.config) as esl:
                version = esl.api("version").strip().splitlines()
            parts.append(
                f"event socket {self.config.esl_host}:{self.config.esl_port}: auth accepted"
                + (f" ({version[0]})" if version else "")
            )
        return "; ".join(parts)

    def fetch_cdrs(
        self, service: ServiceInfo, since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        """The service's a-leg calls that started in [since, until), oldest first."""
        tenant = self._tenant(service)
        if self.config.mode == "db":
            return self._fetch_db(service, tenant, since, until)
        return self._fetch_export(service, tenant, since, until)

    def suspend(self, service: ServiceInfo, reason: str) -> str:
        """Disable the gateway, the tenant or its billed extensions (config `suspend`)."""
        return self._lever(service, enabled=False)

    def unsuspend(self, service: ServiceInfo) -> str:
        """Enable again what `suspend` disabled."""
        return self._lever(service, enabled=True)

    # -- which calls are the service's -------------------------------------------

    def _tenant(self, service: ServiceInfo) -> str:
        if not service.tenant:
            raise ProviderError(self.name, f"service {service.id} has no FusionPBX tenant")
        return service.tenant

    @staticmethod
    def _did_keys(service: ServiceInfo) -> frozenset[str]:
        return did_keys([*service.dids, service.main_did or ""])

    @staticmethod
    def _classify(
        service: ServiceInfo,
        dids: frozenset[str],
        direction: str | None,
        extension: str | None,
        caller_destination: str | None,
        destination_number: str | None,
    ) -> tuple[str, str | None] | None:
        """(direction, number to rate) when the call is the service's, else None.

        Outbound and local calls belong to a billed extension, inbound calls to
        one of the service's DIDs. An empty billed field (or no DID) stands for
        the whole tenant, as the product fields define it.
        """
        if direction in ("outbound", "local"):
            if service.extensions and (extension or "") not in service.extensions:
                return None
            return direction, destination_number or None
        if direction == "inbound":
            # caller_destination is the number dialled before any transfer; very old
            # schemas lack it and destination_number is all there is.
            number = caller_destination or destination_number or None
            if dids and did_key(number) not in dids:
                return None
            return "inbound", number
        return None

    # -- db mode ----------------------------------------------------------------

    def _db(self) -> Engine:
        if self._engine is None:
            where = f"servers.{self.name}.db_url_env"
            raw = secret(self.config.db_url_env, what=where)
            if not raw:
                raise ConfigError(f"{where}: a FusionPBX database URL is needed here")
            try:
                url = make_url(raw)
            except ArgumentError:
                raise ConfigError(
                    f"{where}: {self.config.db_url_env} is not a database URL"
                ) from None
            if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
                url = url.set(drivername="postgresql+psycopg")
            else:
                raise ConfigError(
                    f"{where}: {self.config.db_url_env} must be a postgresql:// URL, "
                    f"not {url.drivername}://"
                )
            connect_timeout = self._connect_timeout()
            self._engine = create_engine(
                url, poolclass=NullPool, connect_args={"connect_timeout": connect_timeout}
            )
            # The read timeout: a statement blocked by a lock on FusionPBX's tables would
            # otherwise hang the job (and hold its lock) forever. Set per session rather
            # than as a startup option, which connection poolers such as PgBouncer refuse.
            timeout_ms = max(1, int(self.config.timeout_s * 1000))

            @event.listens_for(self._engine, "connect")
            def _read_timeout(dbapi_conn, _record):
                with dbapi_conn.cursor() as cursor:
                    cursor.execute(f"SET statement_timeout = {timeout_ms}")
                dbapi_conn.commit()

        return self._engine

    def _connect_timeout(self) -> int:
        """libpq's connect_timeout: whole seconds, at least 1 (it ignores less), at most 30."""
        return max(1, math.ceil(min(self.config.timeout_s, 30)))

    def _db_error(self, exc: SQLAlchemyError, doing: str) -> ProviderError:
        """Our error for a database failure: no URL, no password, no SQL in the message."""
        orig = getattr(exc, "orig", None)
        detail = (str(orig) if orig is not None else type(exc).__name__).strip().splitlines()
        first = detail[0] if detail else type(exc).__name__
        lowered = first.lower()
        host = self._engine.url.host if self._engine is not None else "?"
        database = self._engine.url.database if self._engine is not None else "?"
        prefix = f"FusionPBX database {host}/{database}: {doing}"
        sqlstate = getattr(orig, "sqlstate", None) or ""
        if "password authentication failed" in lowered or sqlstate == "28P01":
            return ProviderAuthError(self.name, f"{prefix}: the credentials were refused")
        # Errors while connecting come from libpq as text, without a SQLSTATE.
        if (
            sqlstate.startswith("28")
            or "no pg_hba.conf entry" in lowered
            or "authentication failed" in lowered
            or ('role "' in lowered and "does not exist" in lowered)
        ):
            return ProviderAuthError(self.name, f"{prefix}: the credentials were refused ({first})")
        limit = f"servers.{self.name}.timeout_s"
        if sqlstate == "57014":
            # statement_timeout: a lock or a stalled server kept the read past the limit.
            return ProviderUnavailable(
                self.name,
                f"{prefix}: no answer within {self.config.timeout_s:g} s ({limit})",
            )
        if "timeout expired" in lowered:
            # libpq's connect_timeout: the server accepted nothing (or never greeted).
            return ProviderUnavailable(
                self.name,
                f"{prefix}: could not connect within {self._connect_timeout()} s ({limit})",
            )
        if sqlstate == "3D000" or ('database "' in lowered and "does not exist" in lowered):
            return ProviderError(self.name, f"{prefix}: {first} (check {self.config.db_url_env})")
        if sqlstate == "42501":
            return ProviderAuthError(
                self.name, f"{prefix}: {first} (see the README for the GRANT statements)"
            )
        if sqlstate == "42P01":
            return ProviderError(self.name, f"{prefix}: {first} (is this FusionPBX's database?)")
        if isinstance(exc, DBAPIError) and exc.connection_invalidated or sqlstate.startswith("08"):
            return ProviderUnavailable(self.name, f"{prefix}: {first}")
        if sqlstate == "" and isinstance(exc, DBAPIError):
            return ProviderUnavailable(self.name, f"{prefix}: {first}")
        return ProviderError(self.name, f"{prefix}: {first}")

    def _table_columns(self, conn: Connection, table: str) -> dict[str, str]:
        if table not in self._columns:
            rows = conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND table_name = :t"
                ),
                {"t": table},
            )
            self._columns[table] = dict(rows.all())
        if not self._columns[table]:
            raise ProviderError(
                self.name,
                f"FusionPBX database: table {table} not found or not readable "
                "(is this FusionPBX's database, and may the role read it?)",
            )
        return self._columns[table]

    def _check_db(self) -> str:
        tables = list(CDR_TABLES)
        if self.config.suspend in LEVER_TABLES:
            tables.append(LEVER_TABLES[self.config.suspend])
        try:
            with self._db().connect() as conn:
                version = conn.execute(text("SHOW server_version")).scalar()
                for table in tables:
                    self._table_columns(conn, table)
                    conn.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).all()  # noqa: S608
        except SQLAlchemyError as exc:
            raise self._db_error(exc, "check") from None
        url = self._db().url
        return f"FusionPBX database {url.host}/{url.database} (PostgreSQL {version}): " + (
            ", ".join(tables) + " readable"
        )

    def _fetch_db(
        self, service: ServiceInfo, tenant: str, since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        extensions = list(service.extensions)
        dids = self._did_keys(service)
        # Digits as FusionPBX may hold them: 10-digit NANP keys also with the leading 1.
        did_digits = sorted({*dids, *("1" + k for k in dids if len(k) == 10)})
        try:
            with self._db().connect() as conn:
                present = self._table_columns(conn, "v_xml_cdr")
                self._table_columns(conn, "v_extensions")
                select = ", ".join(
                    f"c.{col}" if col in present else f"NULL AS {col}" for col in CDR_COLUMNS
                )
                leg = "AND c.leg = 'a'" if "leg" in present else ""
                dialled = (
                    "coalesce(nullif(c.caller_destination, ''), c.destination_number)"
                    if "caller_destination" in present
                    else "c.destination_number"
                )
                sql = text(
                    f"""
                    SELECT {select}, e.extension AS extension
                    FROM v_xml_cdr AS c
                    LEFT JOIN v_extensions AS e ON e.extension_uuid = c.extension_uuid
                    WHERE c.domain_name = :tenant {leg}
                      AND c.start_stamp >= :since AND c.start_stamp < :until
                      AND (
                        (c.direction IN ('outbound', 'local')
                         AND (:all_extensions OR e.extension = ANY(CAST(:extensions AS text[]))))
                        OR (c.direction = 'inbound'
                         AND (:all_dids OR regexp_replace({dialled}, '[^0-9]', '', 'g')
                              = ANY(CAST(:dids AS text[]))))
                      )
                    ORDER BY c.start_stamp, c.xml_cdr_uuid
                    """  # noqa: S608 - only known column names are formatted in
                )
                params = {
                    "tenant": tenant,
                    "since": since,
                    "until": until,
                    "all_extensions": not extensions,
                    "extensions": extensions,
                    "all_dids": not dids,
                    "dids": did_digits,
                }
                # A server-side cursor: rows arrive STREAM_ROWS at a time, never all at once.
                result = conn.execution_options(stream_results=True, yield_per=STREAM_ROWS).execute(
                    sql, params
                )
                for row in result.mappings():
                    try:
                        record = self._db_row_to_record(service, dids, row)
                    except ProviderDataError as exc:
                        # One row that cannot be read is set aside by its uuid.
                        raw = {key: _json_safe(value) for key, value in row.items()}
                        text_ = json.dumps(raw, default=str, ensure_ascii=False)
                        yield Rejected(str(row["xml_cdr_uuid"]), reason_of(exc), text_)
                        continue
                    if record is not None:
                        yield record
        except SQLAlchemyError as exc:
            raise self._db_error(exc, f"reading v_xml_cdr of {tenant}") from None

    def _db_row_to_record(
        self, service: ServiceInfo, dids: frozenset[str], row: Any
    ) -> CallRecord | None:
        cdr_uuid = str(row["xml_cdr_uuid"])
        kept = self._classify(
            service,
            dids,
            row["direction"],
            row["extension"],
            row["caller_destination"],
            row["destination_number"],
        )
        if kept is None:
            return None
        direction, number = kept
        start = row["start_stamp"]
        if start is None:
            raise ProviderDataError(self.name, f"v_xml_cdr {cdr_uuid}: no start_stamp")
        raw = {key: _json_safe(value) for key, value in row.items()}
        return CallRecord(
            provider_id=cdr_uuid,
            direction=direction,
            start=start.astimezone(UTC),
            billsec=_billsec(row["billsec"], f"v_xml_cdr {cdr_uuid}", self.name),
            number=number,
            caller=row["caller_id_number"] or None,
            extension=row["extension"] or None,
            answer=_utc_or_none(row["answer_stamp"]),
            end=_utc_or_none(row["end_stamp"]),
            hangup_cause=row["hangup_cause"] or row["status"] or None,
            raw=raw,
        )

    def _reparse_db(self, service: ServiceInfo, raw: str) -> Iterator[CallRecord | Rejected]:
        """A v_xml_cdr row as `_fetch_db` kept it (JSON of the columns read), read again."""
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not row.get("xml_cdr_uuid"):
            raise ProviderDataError(
                self.name, "a set-aside v_xml_cdr row whose kept text is not its columns' JSON"
            )
        cdr_uuid = str(row["xml_cdr_uuid"])
        for key in (*CDR_COLUMNS, "extension"):
            row.setdefault(key, None)
        for key in ("start_stamp", "answer_stamp", "end_stamp"):
            value = row[key]
            if isinstance(value, str) and value:
                # _json_safe wrote them with isoformat(); read back as they were.
                try:
                    row[key] = datetime.fromisoformat(value)
                except ValueError:
                    yield Rejected(cdr_uuid, f"v_xml_cdr {cdr_uuid}: {key} {value!r}", raw)
                    return
        if row["domain_name"] not in (None, self._tenant(service)):
            return  # another tenant's row: not this service's call
        if row["leg"] not in (None, "a"):
            return  # b-legs describe the same call again
        try:
            record = self._db_row_to_record(service, self._did_keys(service), row)
        except ProviderDataError as exc:
            yield Rejected(cdr_uuid, reason_of(exc), raw)
            return
        if record is not None:
            yield record

    # -- export mode ------------------------------------------------------------

    def _client(self) -> HttpClient:
        if self._http is None:
            self._http = HttpClient.for_server(
                self.name, self.config, transport=self._transport, backoff_s=self.backoff_s
            )
        return self._http

    def _export_lines(self, start_epoch: int, stop_epoch: int, tenant: str | None):
        """A generator of the export's text lines; raises our errors, never shows the key."""
        key = secret(self.config.api_key_env, what=f"servers.{self.name}.api_key_env") or ""
        params = {
            "key": key,
            "export_format": "csv",
            "start_epoch": str(start_epoch),
            "stop_epoch": str(stop_epoch),
        }
        if tenant:
            params["domain_name"] = tenant

        def lines() -> Iterator[str]:
            what = f"GET {EXPORT_PATH}"
            log.debug(
                "%s: %s start_epoch=%s stop_epoch=%s domain_name=%s",
                self.name,
                what,
                start_epoch,
                stop_epoch,
                tenant or "(the key's own)",
            )
            with self._client().stream("GET", EXPORT_PATH, params=params) as response:
                if 300 <= response.status_code < 400:
                    # FusionPBX sends a refused key to its login page.
                    raise ProviderAuthError(
                        self.name,
                        f"the credentials were refused (API key; {what} redirected to the login)",
                    )
                try:
                    first = True
                    for line in lf_lines(response.iter_text()):
                        if first:
                            first = False
                            _refuse_non_csv(self.name, what, line)
                        yield line
                except httpx.TimeoutException:
                    raise ProviderUnavailable(self.name, f"timed out reading {what}") from None
                except httpx.TransportError as exc:
                    raise ProviderUnavailable(
                        self.name, f"connection lost reading {what} ({type(exc).__name__})"
                    ) from None

        generator = lines()
        # Start the request now, so check() and callers see errors at once.
        first_line = next(generator, None)
        return _prepend(first_line, generator)

    def _fetch_export(
        self, service: ServiceInfo, tenant: str, since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        # FusionPBX selects `start_epoch BETWEEN start AND stop` (both inclusive, whole
        # seconds): ask a little wider and keep [since, until) here.
        start_epoch = math.floor(since.timestamp())
        stop_epoch = math.ceil(until.timestamp())
        lines = self._export_lines(start_epoch, stop_epoch, tenant)
        try:
            for record in self._export_records(service, tenant, read_export(self.name, lines)):
                if record.__class__ is Rejected or since <= record.start < until:
                    yield record
        finally:
            lines.close()

    def _export_records(
        self, service: ServiceInfo, tenant: str, reads: Iterator[ExportRecord]
    ) -> Iterator[CallRecord | Rejected]:
        """The service's calls of the export; a record that cannot be read is set aside.

        Its locator is a digest of its text (its line number moves with the window).
        """
        dids = self._did_keys(service)
        for read in reads:
            try:
                record = self._export_row_to_record(service, dids, tenant, read.fields(), read.line)
            except ProviderDataError as exc:
                yield Rejected(digest(read.raw), reason_of(exc), read.kept_text())
                continue
            if record is not None:
                yield record

    def kept_text(self, record: CallRecord) -> str:
        """An export record as the export writes it: its header line and its line."""
        if self.config.mode == "db":
            return super().kept_text(record)
        keys, values = zip(*record.raw.items(), strict=True) if record.raw else ((), ())
        return '"' + '","'.join(keys) + '"\n"' + '","'.join(map(str, values)) + '"'

    def reparse(self, services: list[ServiceInfo], raw: str) -> Iterator[CallRecord | Rejected]:
        """A set-aside record read again: an export record (header line and record
        text), or a database row from its kept JSON (the columns as they were read)."""
        service = services[0]
        if self.config.mode == "db":
            yield from self._reparse_db(service, raw)
            return
        yield from self._export_records(
            service, self._tenant(service), read_export(self.name, raw.split("\n"))
        )

    def _export_row_to_record(
        self,
        service: ServiceInfo,
        dids: frozenset[str],
        tenant: str,
        row: dict[str, str],
        line_no: int,
    ) -> CallRecord | None:
        where = f"{EXPORT_PATH} line {line_no}"
        if (row.get("leg") or "a") != "a":
            return None  # b-legs describe the same call again
        if row.get("domain_name") and row["domain_name"] != tenant:
            return None  # only present when the key's user may see every tenant
        cdr_uuid = (row.get("xml_cdr_uuid") or "").strip()
        try:
            uuid.UUID(cdr_uuid)
        except ValueError:
            raise ProviderDataError(
                self.name, f"{where}: xml_cdr_uuid {cdr_uuid!r} is not a uuid"
            ) from None
        kept = self._classify(
            service,
            dids,
            row.get("direction"),
            row.get("extension"),
            row.get("caller_destination"),
            row.get("destination_number"),
        )
        if kept is None:
            return None
        direction, number = kept
        # The export's `duration` column is billsec already (FusionPBX selects
        # `billsec AS duration`); read `billsec` where the header has it.
        seconds = row["billsec"] if "billsec" in row else row.get("duration")
        zone = ZoneInfo(self.config.timezone)
        try:
            start_epoch = _decimal(row.get("start_epoch"), "start_epoch")
            start = (
                _from_epoch(start_epoch)
                if start_epoch is not None
                else _stamp(row.get("start_stamp"), zone, "start_stamp")
            )
            if start is None:
                raise ValueError("no start_epoch or start_stamp")
            answer = _stamp(row.get("answer_stamp"), zone, "answer_stamp")
            end = _stamp(row.get("end_stamp"), zone, "end_stamp")
            billsec = _billsec(seconds, where, self.name)
        except ValueError as exc:
            raise ProviderDataError(self.name, f"{where}: {exc}") from None
        return CallRecord(
            provider_id=cdr_uuid,
            direction=direction,
            start=start,
            billsec=billsec,
            number=number,
            caller=row.get("caller_id_number") or None,
            extension=row.get("extension") or None,
            answer=answer,
            end=end,
            hangup_cause=row.get("hangup_cause") or row.get("status") or None,
            raw=dict(row),
        )

    # -- suspend levers ---------------------------------------------------------

    def _flag(self, conn: Connection, table: str, column: str, enabled: bool) -> bool | str:
        """The value to write: a boolean, or FusionPBX's older text 'true'/'false'."""
        data_type = self._table_columns(conn, table).get(column)
        if data_type is None:
            raise ProviderError(self.name, f"FusionPBX database: {table} has no column {column}")
        if data_type == "boolean":
            return enabled
        return "true" if enabled else "false"

    def _lever(self, service: ServiceInfo, *, enabled: bool) -> str:
        lever = self.config.suspend
        doing = f"{'enabling' if enabled else 'disabling'} the {lever} of service {service.id}"
        try:
            self._refuse_unclearable_caches()
            if lever == "gateway":
                return self._gateway(service, enabled)
            if lever == "domain":
                return self._domain(service, enabled)
            return self._extensions(service, enabled)
        except SQLAlchemyError as exc:
            raise self._db_error(exc, doing) from None

    def _gateway_uuid(self, service: ServiceInfo) -> str:
        if not service.gateway_uuid:
            raise ProviderError(
                self.name,
                f"service {service.id} has no gateway uuid "
                f"(voipctl service set {service.id} --gateway UUID)",
            )
        try:
            return str(uuid.UUID(service.gateway_uuid.strip()))  # lower-case, canonical
        except ValueError:
            raise ProviderError(
                self.name,
                f"service {service.id}: gateway {service.gateway_uuid!r} is not a uuid",
            ) from None

    def _gateway(self, service: ServiceInfo, enabled: bool) -> str:
        gateway_uuid = self._gateway_uuid(service)
        # One event socket connection for the whole action (killgw or rescan, the
        # cache, the read-back), opened at its first command.
        esl = esl_for(self.name, self.config)
        try:
            return self._gateway_with(esl, service, gateway_uuid, enabled)
        finally:
            esl.close()

    def _gateway_with(
        self, esl: EslClient, service: ServiceInfo, gateway_uuid: str, enabled: bool
    ) -> str:
        # One transaction around the row and the killgw: when FreeSWITCH refuses
        # the killgw the update is rolled back, so the database never says
        # "disabled" for a gateway that still carries calls.
        with self._db().connect() as conn, conn.begin() as tx:
            value = self._flag(conn, "v_gateways", "enabled", enabled)
            rows = conn.execute(
                text(
                    "UPDATE v_gateways SET enabled = :value WHERE gateway_uuid = :gateway"
                    " RETURNING profile, gateway"
                ),
                {"value": value, "gateway": uuid.UUID(gateway_uuid)},
            ).all()
            if len(rows) != 1:
                raise ProviderError(
                    self.name,
                    f"service {service.id}: gateway {gateway_uuid} not found in v_gateways "
                    f"({len(rows)} rows matched); nothing changed",
                )
            profile = (rows[0].profile or "").strip() or DEFAULT_PROFILE
            name = rows[0].gateway or gateway_uuid
            if not enabled:
                reply = self._killgw(esl, profile, gateway_uuid)
            # rescan reads the gateways from the database: commit before asking.
            tx.commit()
        # FusionPBX clears the sofia.conf cache when it saves a gateway; a rescan
        # must not rebuild the profile from a stale copy.
        cleared = self._clear_caches(esl, "gateway")
        if enabled:
            reply = self._rescan(esl, profile)
        # Confirm by observation: what FreeSWITCH runs now, not what its reply said.
        seen = self._gateway_status(esl, gateway_uuid)
        where = f"gateway {name} ({gateway_uuid})"
        if seen.running != enabled:
            row = "true" if enabled else "false"
            raise ProviderError(
                self.name,
                f"{where}: v_gateways.enabled set {row}, but after `{reply}` "
                f"{seen.describe()}; recorded as before, the next run acts again",
            )
        state = "enabled" if enabled else "disabled"
        return f"{where} {state}; FreeSWITCH: {reply}; {seen.describe()}{cleared}"

    def _killgw(self, esl: EslClient, profile: str, gateway_uuid: str) -> str:
        command = f"sofia profile {profile} killgw {gateway_uuid}"
        try:
            reply = esl.api(command)
        except ProviderError as exc:
            # killgw of a gateway FreeSWITCH no longer runs is the state we want.
            if "-ERR no such gateway" in str(exc):
                return "gateway was not running"
            raise
        ok, line = sofia_verdict(reply)
        if not ok:
            # sofia answers some failures without -ERR ("Invalid Profile [x]").
            raise ProviderError(self.name, f"event socket: `{command}` answered {line[:200]!r}")
        return line

    def _rescan(self, esl: EslClient, profile: str) -> str:
        """The rescan's verdict line; a refusal is not raised here, the read-back decides."""
        try:
            reply = esl.api(f"sofia profile {profile} rescan")
        except ProviderError as exc:
            return str(exc).rsplit("failed: ", 1)[-1]
        return sofia_verdict(reply)[1]

    def _gateway_status(self, esl: EslClient, gateway_uuid: str) -> GatewayStatus:
        # FusionPBX names each gateway by its uuid in the sofia configuration.
        reply = esl.api(f"sofia status gateway {gateway_uuid}")
        return parse_gateway_status(self.name, gateway_uuid, reply)

    # -- calls in progress (the fraud guard) ------------------------------------

    can_hang_up = True

    def hangup_filters(self, service: ServiceInfo) -> list[list[tuple[str, str]]]:
        """The channel-variable filters of `hupall` that select the service's calls.

        mod_commands.c hupall_api_function() hangs up the channels whose variables
        equal every (name, value) pair given. mod_sofia sets `sip_gateway_name` to
        the gateway's name on a call out through it (FusionPBX names gateways by
        their uuid), and on a call a directory user authenticated the directory's
        `user_name` and `domain_name` (sofia_reg.c, sofia.c).
        """
        lever = self.config.suspend
        if lever == "gateway":
            return [[("sip_gateway_name", self._gateway_uuid(service))]]
        tenant = self._tenant(service)
        if lever == "domain":
            return [[("domain_name", tenant)]]
        extensions = sorted(set(service.extensions))
        if not extensions:
            raise ProviderError(self.name, f"service {service.id} has no billed extensions")
        return [[("user_name", ext), ("domain_name", tenant)] for ext in extensions]

    def hang_up(self, service: ServiceInfo) -> str:
        """`hupall MANAGER_REQUEST VAR VALUE ...` per filter; each reply must confirm it."""
        answers = []
        with esl_for(self.name, self.config) as esl:
            for pairs in self.hangup_filters(service):
                if any(not value or any(c.isspace() for c in value) for _, value in pairs):
                    raise ProviderError(
                        self.name, f"service {service.id}: {pairs!r} cannot be a hupall filter"
                    )
                args = " ".join(f"{name} {value}" for name, value in pairs)
                command = f"hupall MANAGER_REQUEST {args}"
                reply = esl.api(command).strip()
                name, value = pairs[0]
                expected = f"+OK hangup all channels matching [{name}]=[{value}]"
                if not reply.startswith(expected):
                    raise ProviderError(
                        self.name, f"event socket: `{command}` answered {reply[:200]!r}"
                    )
                answers.append(reply)
        return "; ".join(answers)

    # -- reading the levers back ------------------------------------------------

    def state(self, service: ServiceInfo) -> LeverState:
        """The lever as FusionPBX and FreeSWITCH show it now (see LeverState)."""
        found = self.states([service])[service.id]
        if isinstance(found, Exception):
            raise found
        return found

    def states(self, services: list[ServiceInfo]) -> dict[int, LeverState | Exception]:
        """Every service's lever with one database query and at most one event socket
        connection for them all (autosuspend reads a server's services in one batch)."""
        lever = self.config.suspend
        try:
            if lever == "gateway":
                return self._gateway_states(services)
            if lever == "domain":
                return self._domain_states(services)
            return self._extensions_states(services)
        except SQLAlchemyError as exc:
            which = ", ".join(str(s.id) for s in services[:10])
            more = "..." if len(services) > 10 else ""
            what = "service" if len(services) == 1 else "services"
            raise self._db_error(exc, f"reading the {lever} of {what} {which}{more}") from None

    def _each(self, services: list[ServiceInfo], key) -> tuple[dict, dict]:
        """(service id -> key(service), service id -> the ProviderError of those without)."""
        keys: dict[int, Any] = {}
        failed: dict[int, LeverState | Exception] = {}
        for service in services:
            try:
                keys[service.id] = key(service)
            except ProviderError as exc:
                failed[service.id] = exc
        return keys, failed

    def _gateway_states(self, services: list[ServiceInfo]) -> dict[int, LeverState | Exception]:
        gateways, results = self._each(services, self._gateway_uuid)
        if not gateways:
            return results
        with self._db().connect() as conn:
            rows = conn.execute(
                text("SELECT gateway_uuid, enabled FROM v_gateways WHERE gateway_uuid = ANY(:gws)"),
                {"gws": sorted({uuid.UUID(g) for g in gateways.values()})},
            ).all()
        enabled_by = {str(row.gateway_uuid).lower(): _is_true(row.enabled) for row in rows}
        seen_by: dict[str, GatewayStatus] = {}
        esl = esl_for(self.name, self.config)  # connected at the first status asked
        try:
            for service_id, gateway_uuid in gateways.items():
                if gateway_uuid not in enabled_by:
                    results[service_id] = LeverState(
                        None, f"gateway {gateway_uuid} not found in v_gateways"
                    )
                    continue
                enabled = enabled_by[gateway_uuid]
                if gateway_uuid not in seen_by:
                    seen_by[gateway_uuid] = self._gateway_status(esl, gateway_uuid)
                seen = seen_by[gateway_uuid]
                # Suspended only when neither the row (a rescan or restart would start
                # it) nor FreeSWITCH lets it carry calls.
                results[service_id] = LeverState(
                    not enabled and not seen.running,
                    f"v_gateways.enabled = {'true' if enabled else 'false'}, {seen.describe()}",
                )
        finally:
            esl.close()
        return results

    def _domain_states(self, services: list[ServiceInfo]) -> dict[int, LeverState | Exception]:
        tenants, results = self._each(services, self._tenant)
        if not tenants:
            return results
        with self._db().connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT domain_name, domain_enabled FROM v_domains"
                    " WHERE domain_name = ANY(CAST(:tenants AS text[]))"
                ),
                {"tenants": sorted(set(tenants.values()))},
            ).all()
        enabled_by = {row.domain_name: _is_true(row.domain_enabled) for row in rows}
        for service_id, tenant in tenants.items():
            if tenant not in enabled_by:
                results[service_id] = LeverState(None, f"tenant {tenant} not found in v_domains")
                continue
            enabled = enabled_by[tenant]
            results[service_id] = LeverState(
                not enabled, f"v_domains.domain_enabled = {'true' if enabled else 'false'}"
            )
        return results

    def _extensions_states(self, services: list[ServiceInfo]) -> dict[int, LeverState | Exception]:
        tenants, results = self._each(services, self._tenant)
        wanted: dict[int, list[str]] = {}
        for service in services:
            if service.id not in tenants:
                continue
            extensions = sorted(set(service.extensions))
            if not extensions:
                results[service.id] = LeverState(
                    None, f"service {service.id} has no billed extensions"
                )
                continue
            wanted[service.id] = extensions
        if not wanted:
            return results
        with self._db().connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT d.domain_name, e.extension, e.enabled FROM v_extensions AS e"
                    " JOIN v_domains AS d ON d.domain_uuid = e.domain_uuid"
                    " WHERE d.domain_name = ANY(CAST(:tenants AS text[]))"
                    " AND e.extension = ANY(CAST(:extensions AS text[]))"
                ),
                {
                    "tenants": sorted({tenants[i] for i in wanted}),
                    "extensions": sorted({e for exts in wanted.values() for e in exts}),
                },
            ).all()
        by_pair: dict[tuple[str, str], list[bool]] = {}
        for row in rows:
            by_pair.setdefault((row.domain_name, row.extension), []).append(_is_true(row.enabled))
        for service_id, extensions in wanted.items():
            tenant = tenants[service_id]
            found = [(e, flag) for e in extensions for flag in by_pair.get((tenant, e), [])]
            if len(found) != len(extensions):
                results[service_id] = LeverState(
                    None, f"extension(s) of service {service_id} not all in {tenant}"
                )
                continue
            on = sorted(e for e, flag in found if flag)
            detail = (
                f"v_extensions.enabled = true for {', '.join(on)}"
                if on
                else "v_extensions.enabled = false for every billed extension"
            )
            results[service_id] = LeverState(not on, detail)
        return results

    def _domain(self, service: ServiceInfo, enabled: bool) -> str:
        tenant = self._tenant(service)
        with self._db().begin() as conn:
            value = self._flag(conn, "v_domains", "domain_enabled", enabled)
            count = conn.execute(
                text("UPDATE v_domains SET domain_enabled = :value WHERE domain_name = :tenant"),
                {"value": value, "tenant": tenant},
            ).rowcount
            if count != 1:
                raise ProviderError(
                    self.name,
                    f"service {service.id}: tenant {tenant} matched {count} rows of v_domains "
                    "(expected 1); nothing changed",
                )
        return f"tenant {tenant} {'enabled' if enabled else 'disabled'} (v_domains.domain_enabled)"

    def _extensions(self, service: ServiceInfo, enabled: bool) -> str:
        tenant = self._tenant(service)
        wanted = sorted(set(service.extensions))
        if not wanted:
            raise ProviderError(
                self.name,
                f"service {service.id} has no billed extensions to "
                f'{"enable" if enabled else "disable"} (suspend = "extensions")',
            )
        with self._db().begin() as conn:
            value = self._flag(conn, "v_extensions", "enabled", enabled)
            changed = conn.execute(
                text(
                    "UPDATE v_extensions AS e SET enabled = :value FROM v_domains AS d"
                    " WHERE d.domain_uuid = e.domain_uuid AND d.domain_name = :tenant"
                    " AND e.extension = ANY(CAST(:extensions AS text[])) RETURNING e.extension"
                ),
                {"value": value, "tenant": tenant, "extensions": wanted},
            ).scalars()
            found = sorted(changed)
            missing = sorted(set(wanted) - set(found))
            if missing:
                raise ProviderError(
                    self.name,
                    f"service {service.id}: extension(s) {', '.join(missing)} not found in "
                    f"tenant {tenant}; nothing changed",
                )
        esl = esl_for(self.name, self.config)
        try:
            cleared = self._clear_caches(esl, "extensions", tenant=tenant, extensions=found)
        finally:
            esl.close()
        state = "enabled" if enabled else "disabled"
        return f"extensions {', '.join(found)} of {tenant} {state} (v_extensions.enabled){cleared}"

    # -- FusionPBX's caches (fusionpbx_cache) -------------------------------------

    def _cache_settings(self) -> CacheSettings | None:
        if not self._cache_known:
            with self._db().connect() as conn:
                self._cache_read = read_settings(conn)
            self._cache_known = True
            if self._cache_read is None:
                log.warning(
                    "%s: v_default_settings not found: FusionPBX's caches are not cleared",
                    self.name,
                )
        return self._cache_read

    def _refuse_unclearable_caches(self) -> None:
        reason = refusal(self.name, self.config, self._cache_settings())
        if reason is not None:
            raise ProviderError(self.name, reason)

    def _clear_caches(
        self,
        esl: EslClient,
        lever: str,
        *,
        tenant: str | None = None,
        extensions: list[str] | None = None,
    ) -> str:
        """After a lever's write: delete what FusionPBX would; "; <what was cleared>" or ""."""
        settings = self._cache_settings()
        if settings is None:
            return ""
        clearer = CacheClearer(self.name, self.config, settings)
        if lever == "extensions":
            with self._db().connect() as conn:
                pairs = conn.execute(
                    text(
                        "SELECT e.extension, coalesce(nullif(e.user_context, ''), d.domain_name)"
                        " FROM v_extensions AS e JOIN v_domains AS d"
                        " ON d.domain_uuid = e.domain_uuid WHERE d.domain_name = :tenant"
                        " AND e.extension = ANY(CAST(:extensions AS text[])) ORDER BY 1"
                    ),
                    {"tenant": tenant, "extensions": extensions or []},
                ).all()
        if lever == "gateway":
            return "; " + clearer.sofia_conf(esl)
        return "; " + clearer.directory(esl, [(row[0], row[1]) for row in pairs])


def _is_true(value: Any) -> bool:
    """A FusionPBX flag read back: boolean, or the older text 'true'/'false'."""
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() == "true"


# -- parsing helpers -----------------------------------------------------------


def _prepend(first: str | None, rest: Iterator[str]) -> Iterator[str]:
    try:
        if first is not None:
            yield first
        yield from rest
    finally:
        rest.close()


def _refuse_non_csv(server: str, what: str, first_line: str) -> None:
    head = first_line.strip().lower()
    if head.startswith("access denied"):
        raise ProviderAuthError(
            server,
            f"the credentials were refused ({what}: access denied; the key's user needs "
            "the xml_cdr_export and xml_cdr_export_csv permissions)",
        )
    if head.startswith(("<!doctype", "<html")):
        raise ProviderAuthError(
            server, f"the credentials were refused ({what} answered a web page, not CSV)"
        )


def _decimal(value: str | None, name: str) -> Decimal | None:
    if value is None or not str(value).strip():
        return None
    try:
        # One plain syntax: no exponent, underscore or other script's digits.
        number = money.plain(str(value), field=name)
    except money.NumberError:
        raise ValueError(f"{name} {value!r} is not a number") from None
    if number < 0:
        raise ValueError(f"{name} {value!r} is not a number of seconds")
    return number


def _billsec(value: Any, where: str, server: str) -> int:
    """Whole seconds, a fraction rounded up (FusionPBX keeps billsec numeric)."""
    try:
        seconds = _decimal(None if value is None else str(value), "billsec")
    except ValueError as exc:
        raise ProviderDataError(server, f"{where}: {exc}") from None
    if seconds is not None and seconds > MAX_BILLSEC:
        raise ProviderDataError(
            server, f"{where}: billsec {value} is longer than any call ({MAX_BILLSEC} s at most)"
        )
    return 0 if seconds is None else math.ceil(seconds)


def _from_epoch(epoch: Decimal) -> datetime:
    whole = int(epoch)
    micro = int((epoch - whole) * 1_000_000)
    try:
        return EPOCH + timedelta(seconds=whole, microseconds=micro)
    except OverflowError:
        raise ValueError(f"start_epoch {epoch} is out of range") from None


def _stamp(value: str | None, zone: ZoneInfo, name: str) -> datetime | None:
    """A PostgreSQL timestamptz as text ("2026-03-02 10:00:05-05"); naive ones in `zone`."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{name} {value!r} is out of range") from None


def _utc_or_none(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    return value
