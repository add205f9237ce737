"""LES.NET: the account's CDR file ("CDR Link"), and suspension by command or by hand.

The CDR file is rewritten by LES.NET once a day with the account's calls; its
layout is not documented, so it is configuration (`[servers.X.cdr_format]`):
delimiter (or "auto"), header row or none, a column map, the time format and
zone. The default layout (a header row, comma separated)::

    date,src,dst,duration,peer,did
    2026-11-20 09:15:02,12046664021,15195550100,65,D4E3CD2BFC791,12046664021

Rows are kept for a service when their peer is the service's Peer ID or one of
their numbers is one of its DIDs; the caller being a DID makes the call
outbound, the called number being one makes it inbound (a peer's row with
neither is outbound: the peer dialled out). Several services often share one
account's link: `fetch_feed` reads the link once for all of them.

Dedupe key: the `call_id` column when the map has one; otherwise
`START-HASH-N`: the start (epoch seconds, hex), a hash of the row's normalised
fields and its occurrence number among identical rows of the file (two equal
calls in one second are two calls), so that each day's file, which repeats the
earlier days, stores nothing twice. A file in time order is read remembering
the rows of one second only; one that is not is read a second time remembering
every row (same ids, more memory).

Suspend levers (`suspend` in the config):
- `manual` (default): LES.NET has no suspend API. `suspend`/`unsuspend` raise
  `voipctl.errors.ManualActionRequired` whose `instructions` say what to do; the
  billing job records "manual action required" and emails the operator.
- `command`: `suspend_command`/`unsuspend_command`, an argv list run without a
  shell, `{peer}`, `{did}` and `{service_id}` filled in; a non-zero exit status
  or the server's `timeout_s` passing is a failure. Returns the command's output.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from decimal import InvalidOperation
from pathlib import Path
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import httpx
from pydantic import ValidationError

from voipctl import money
from voipctl.config import secret
from voipctl.errors import (
    ConfigError,
    ManualActionRequired,
    ProviderDataError,
    ProviderError,
    ProviderUnavailable,
)
from voipctl.providers.base import (
    CallRecord,
    FeedLayout,
    ProviderAdapter,
    RawRecord,
    Rejected,
    SampleRow,
    ServiceInfo,
)
from voipctl.providers.base import (
    digest as text_digest,
)
from voipctl.providers.http import HttpClient
from voipctl.providers.lesnet import inspect as lesnet_inspect
from voipctl.providers.lesnet.config import LesnetCdrFormat, LesnetServer
from voipctl.providers.levers import run_command
from voipctl.providers.matching import did_key
from voipctl.providers.occurrences import Occurrences as _Occurrences
from voipctl.providers.occurrences import OutOfOrder as _OutOfOrder
from voipctl.providers.times import LocalTimes
from voipctl.redact import redact_url

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("start", "caller", "number", "seconds")
OPTIONAL_COLUMNS = ("peer", "did", "call_id")
DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The string encoder of json.dumps(..., ensure_ascii=False): quotes and escapes one string.
_encode_json = json.encoder.encode_basestring
SNIFF_DELIMITERS = ",;\t|"
MAX_SECONDS = 2**31 - 1
FEED_KEY_MAX = 300  # pull_watermarks.scope
# What `feed inspect` reads of a file: its first lines, never more than these bytes.
SAMPLE_LINES = 20
HEAD_BYTES = 64 * 1024


def shown_link(link: str) -> str:
    """A CDR link fit for messages: user-info and query string masked (voipctl.redact)."""
    return redact_url(link)


def _fast_key(number: str) -> str:
    # did_key without the regex for the common all-digits case (millions of rows).
    if number.isdigit():
        return number[1:] if len(number) == 11 and number[0] == "1" else number
    return did_key(number)


class _TimeParser:
    """Local time text -> UTC epoch seconds, in the file's zone.

    Any fixed-width format (the default `%Y-%m-%d %H:%M:%S`, a day-first
    `%d/%m/%Y %H:%M:%S`, ...) is read by slicing, with the epoch of each local
    hour cached (voipctl/providers/times.py); "epoch" is epoch seconds. A local
    time in the repeated hour of a DST change is its first occurrence (fold=0).
    """

    def __init__(self, time_format: str, zone: ZoneInfo):
        self.format = time_format
        self.zone = zone
        if time_format == "epoch":
            self.parse = self._epoch
        else:
            self._local = LocalTimes(time_format, zone).epoch
            self.parse = self._text

    def _epoch(self, text: str) -> int:
        try:
            value = money.plain(text, field="time")
        except money.NumberError:
            raise ValueError(f"time {text!r} is not epoch seconds") from None
        if not 0 <= value < 2**33:
            raise ValueError(f"time {text!r} is not epoch seconds")
        return int(value)

    def _text(self, text: str) -> int:
        # strptime's %d, %H... take any script's digits: ASCII only.
        if text.isascii():
            try:
                return self._local(text.strip())
            except ValueError:
                pass
        raise ValueError(f"time {text!r} does not match {self.format!r}")


class _Matcher:
    """Which service a row belongs to, and its direction."""

    def __init__(self, services: Iterable[ServiceInfo]):
        self.by_peer: dict[str, ServiceInfo] = {}
        self.by_did: dict[str, ServiceInfo] = {}
        self.dids: dict[int, frozenset[str]] = {}
        for service in services:
            keys = frozenset(
                k for k in (did_key(n) for n in (*service.dids, *service.extensions)) if k
            )
            self.dids[service.id] = keys
            if service.peer_id:
                self.by_peer.setdefault(service.peer_id.strip(), service)
            for key in keys:
                self.by_did.setdefault(key, service)

    def match(self, peer: str, caller: str, number: str) -> tuple[ServiceInfo, str] | None:
        ck = _fast_key(caller)
        nk = _fast_key(number)
        service = self.by_peer.get(peer) if peer else None
        if service is not None:
            dids = self.dids[service.id]
            if nk in dids and ck not in dids:
                return service, "inbound"
            return service, "outbound"
        service = self.by_did.get(ck)
        if service is not None:
            return service, "outbound"
        service = self.by_did.get(nk)
        if service is not None:
            return service, "inbound"
        return None


class LesnetAdapter(ProviderAdapter):
    """A LES.NET account: CDR links per service, the JSON API for `check`."""

    type = "lesnet"
    backoff_s = 0.5

    def __init__(
        self, name: str, config: LesnetServer, *, transport: httpx.BaseTransport | None = None
    ):
        super().__init__(name, config)
        self._transport = transport
        self.format: LesnetCdrFormat = config.cdr_format
        where = f"servers.{name}.cdr_format"
        known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
        unknown = sorted(set(self.format.columns) - known)
        if unknown:
            raise ConfigError(
                f"{where}.columns: unknown field {unknown[0]!r} "
                f"(fields: {', '.join(sorted(known))})"
            )
        missing = [c for c in REQUIRED_COLUMNS if not self.format.columns.get(c)]
        if missing:
            raise ConfigError(f"{where}.columns: {missing[0]!r} is required")
        if not self.format.header:
            for field, value in self.format.columns.items():
                if not str(value).strip().isdigit():
                    raise ConfigError(
                        f"{where}.columns.{field}: without a header row, columns are "
                        f"0-based numbers, got {value!r}"
                    )
        if self.format.delimiter != "auto" and len(self.format.delimiter) != 1:
            raise ConfigError(f'{where}.delimiter: one character or "auto"')
        try:
            self.zone = ZoneInfo(self.format.timezone)
            codecs.lookup(self.format.encoding)
        except LookupError:
            raise ConfigError(f"{where}.encoding: unknown {self.format.encoding!r}") from None
        except Exception:  # noqa: BLE001 - zoneinfo raises several kinds
            raise ConfigError(f"{where}.timezone: unknown {self.format.timezone!r}") from None
        self.http = HttpClient.for_server(
            name, config, transport=transport, backoff_s=self.backoff_s
        )

    def close(self) -> None:
        self.http.close()

    # -- contract ---------------------------------------------------------------

    def check(self, links: Iterable[str] = ()) -> str:
        """The JSON API's account balance (with keys configured) and each link's header."""
        said = []
        if self.config.api_key_env and self.config.id_key_env:
            said.append(self._check_api())
        for link in links:
            with self._lines(link) as lines:
                first = next(lines, None)
            if first is None:
                said.append(f"CDR link {shown_link(link)}: empty")
                continue
            if self.format.header:
                reader = csv.reader([first], delimiter=self._delimiter(link, first))
                self._indexes(link, next(reader))
            said.append(f"CDR link {shown_link(link)}: readable")
        if not said:
            return "nothing to reach: no API keys configured and no service with a CDR link"
        return "; ".join(said)

    def fetch_cdrs(
        self, service: ServiceInfo, since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        """The service's calls in [since, until) from its CDR link."""
        if not service.cdr_link:
            raise ProviderError(
                self.name,
                f"service {service.id} has no CDR link "
                f"(voipctl service set {service.id} --cdr-link URL)",
            )
        return self.fetch_feed([service], since, until)

    def feed_key(self, service: ServiceInfo) -> str | None:
        """`link:URL`, or a digest of a URL too long for the watermark's scope column."""
        if not service.cdr_link:
            return None
        key = f"link:{service.cdr_link}"
        if len(key) > FEED_KEY_MAX:
            key = "link-sha256:" + hashlib.sha256(service.cdr_link.encode()).hexdigest()
        return key

    def fetch_feed(
        self, services: list[ServiceInfo], since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        """Read one CDR link once for every service on it; records carry service_id."""
        links = {s.cdr_link for s in services}
        if len(links) != 1 or None in links:
            raise ProviderError(self.name, "fetch_feed needs services sharing one CDR link")
        link = links.pop()
        return self._read(link, _Matcher(services), since, until)

    def suspend(self, service: ServiceInfo, reason: str) -> str:
        """Disable the peer: run suspend_command, or raise ManualActionRequired."""
        if self.config.suspend == "command":
            return self._run(self.config.suspend_command or [], service, "suspend")
        raise ManualActionRequired(
            self.name,
            f"disable peer {service.peer_id} (DID {self._did(service)}) of service "
            f"{service.id} in the LES.NET portal" + (f"; reason: {reason}" if reason else ""),
        )

    def unsuspend(self, service: ServiceInfo) -> str:
        """Enable the peer: run unsuspend_command, or raise ManualActionRequired."""
        if self.config.suspend == "command":
            return self._run(self.config.unsuspend_command or [], service, "unsuspend")
        raise ManualActionRequired(
            self.name,
            f"enable peer {service.peer_id} (DID {self._did(service)}) of service "
            f"{service.id} in the LES.NET portal",
        )

    # -- reading ----------------------------------------------------------------

    @contextmanager
    def _lines(self, link: str) -> Iterator[Iterator[str]]:
        """The link's text lines: https://, file:// or a local path (trials, benchmarks)."""
        if link.startswith("file://") or "://" not in link:
            path = Path(unquote(urlsplit(link).path) if link.startswith("file://") else link)
            try:
                handle = path.open(encoding=self.format.encoding, newline="")
            except OSError as exc:
                raise ProviderError(
                    self.name, f"CDR link {shown_link(link)}: cannot read: {exc.strerror}"
                ) from None
            with handle:
                try:
                    yield handle
                except UnicodeDecodeError as exc:
                    raise ProviderDataError(
                        self.name,
                        f"CDR link {shown_link(link)}: not {self.format.encoding} text: "
                        f"{exc.reason}",
                    ) from None
            return
        with self.http.stream("GET", link) as response:
            response.encoding = self.format.encoding
            try:
                yield response.iter_lines()
            except httpx.HTTPError as exc:
                # A failure after the body started: not retried (the rows already
                # read may be half a file); the next run reads the link again.
                raise ProviderUnavailable(
                    self.name,
                    f"CDR link {shown_link(link)}: transfer broke off ({type(exc).__name__})",
                ) from None

    def _delimiter(self, link: str, first_line: str) -> str:
        if self.format.delimiter != "auto":
            return self.format.delimiter
        try:
            return csv.Sniffer().sniff(first_line, delimiters=SNIFF_DELIMITERS).delimiter
        except csv.Error:
            raise ProviderDataError(
                self.name, f"CDR link {shown_link(link)} line 1: cannot tell the delimiter"
            ) from None

    def _indexes(self, link: str, header: list[str] | None) -> dict[str, int]:
        columns = self.format.columns
        if header is None:
            try:
                return {
                    field: money.parse_int(
                        str(value),
                        field=f"servers.{self.name}.cdr_format.columns.{field}",
                        low=0,
                        high=999,
                    )
                    for field, value in columns.items()
                }
            except money.NumberError as exc:
                raise ConfigError(f"{exc} (a column number, with header = false)") from None
        names = [name.strip().lower() for name in header]
        indexes = {}
        for field, value in columns.items():
            try:
                indexes[field] = names.index(str(value).strip().lower())
            except ValueError:
                raise ProviderDataError(
                    self.name,
                    f"CDR link {shown_link(link)} line 1: no column {value!r} for {field} "
                    f"in the header ({', '.join(header)[:200]}); "
                    f"see servers.{self.name}.cdr_format.columns",
                ) from None
        return indexes

    def _read(
        self, link: str, matcher: _Matcher, since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        # A file in time order (the usual) needs the digests of one second only. On the
        # first start that goes backwards, the rows of the earlier seconds are needed
        # again: the file is read anew remembering every row, and the records already
        # given are not given twice. Their ids are the same in both readings (and the
        # same as one reading remembering everything), which the second reading checks.
        given = 0
        ids = hashlib.blake2b(digest_size=16)
        try:
            for record in self._read_pass(link, matcher, since, until, _Occurrences(bounded=True)):
                given += 1
                ids.update(_key(record).encode("utf-8", "surrogatepass") + b"\n")
                yield record
            return
        except _OutOfOrder:
            pass
        log.info("CDR link %s is not in time order: reading it again", shown_link(link))
        again = hashlib.blake2b(digest_size=16)
        records = self._read_pass(link, matcher, since, until, _Occurrences(bounded=False))
        for record in itertools.islice(records, given):
            again.update(_key(record).encode("utf-8", "surrogatepass") + b"\n")
        if again.digest() != ids.digest():
            raise ProviderUnavailable(
                self.name,
                f"CDR link {shown_link(link)}: the file changed while being read; "
                "the next run reads it again",
            )
        yield from records

    def _read_pass(
        self,
        link: str,
        matcher: _Matcher,
        since: datetime,
        until: datetime,
        occurrences: _Occurrences,
        text: str | None = None,
        line_base: int = 0,
    ) -> Iterator[CallRecord | Rejected]:
        """The link's records; `text` instead of the link's content (a set-aside row,
        or a line of `feed inspect`'s sample: `line_base` is added to its line number)."""
        since_ts, until_ts = int(since.timestamp()), int(until.timestamp())
        parse_time = _TimeParser(self.format.time_format, self.zone).parse
        shown = shown_link(link)
        source = nullcontext(io.StringIO(text, newline="")) if text is not None else None
        with source or self._lines(link) as lines:
            first = next(lines, None)
            if first is not None and first.startswith("\ufeff"):
                # A UTF-8 BOM, as the deck importer (utf-8-sig) reads it: not part of the header.
                first = first[1:]
                if not first.strip("\r\n"):
                    # Nothing but the BOM on line 1: empty if nothing follows.
                    following = next(lines, None)
                    if following is None:
                        first = None
                    else:
                        lines = itertools.chain([following], lines)
            if first is None:
                # Not an error (a day without calls), but said: a link to the wrong file
                # would otherwise look like a quiet day.
                log.warning("%s: CDR link %s is empty: no calls read", self.name, shown)
                return
            delimiter = self._delimiter(link, first)
            reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
            rows = _rows(reader, self.name, shown)
            header = None
            if self.format.header:
                header = next(rows, None)
                if header is None:
                    return
            idx = self._indexes(link, header)
            keys = header or [str(i) for i in range(max(idx.values()) + 1)]
            raw_record = _RawTemplate(keys)
            i_start, i_caller, i_number, i_seconds = (idx[c] for c in REQUIRED_COLUMNS)
            i_peer, i_did, i_call = (idx.get(c) for c in OPTIONAL_COLUMNS)
            width = max(idx.values()) + 1
            header_text = first.rstrip("\r\n") + "\n" if header is not None else ""

            def rejected(row: list[str], reason: str) -> Rejected:
                # The row as a line of this file again, after the header: what
                # `reparse` reads. Its locator is a digest (line numbers move).
                out = io.StringIO()
                csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow(row)
                line = out.getvalue()
                return Rejected(
                    text_digest(line),
                    f"CDR link {shown} line {reader.line_num + line_base}: {reason}",
                    header_text + line,
                )

            for row in rows:
                if len(row) < width:
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue  # blank line
                    yield rejected(row, f"{len(row)} columns, expected at least {width}")
                    continue
                peer = row[i_peer].strip() if i_peer is not None else ""
                caller = row[i_caller].strip()
                number = row[i_number].strip()
                found = matcher.match(peer, caller, number)
                if found is None:
                    continue
                try:
                    start = parse_time(row[i_start])
                except (ValueError, OverflowError) as exc:
                    yield rejected(row, f"{exc} (column {keys[i_start]})")
                    continue
                try:
                    seconds_text = row[i_seconds].strip()
                    # isdigit() alone takes other scripts' digits ("١٢"): ASCII only.
                    seconds = (
                        int(seconds_text)
                        if seconds_text.isdigit() and seconds_text.isascii()
                        else _ceil_seconds(seconds_text)
                    )
                    if seconds > MAX_SECONDS:
                        # cdrs.billsec is a 32-bit integer, and the end time must exist.
                        raise ValueError(f"seconds {seconds_text!r} is not a call's duration")
                except (ValueError, InvalidOperation, OverflowError) as exc:
                    yield rejected(row, f"{exc} (column {keys[i_seconds]})")
                    continue
                if not since_ts <= start < until_ts:
                    continue
                service, direction = found
                did = row[i_did].strip() if i_did is not None else ""
                call_id = row[i_call].strip() if i_call is not None else ""
                if call_id:
                    provider_id = call_id
                else:
                    # Normalised: times as UTC epoch, text stripped; the occurrence
                    # number tells equal calls in one second apart. The start leads the
                    # id so that ids of a chronological file arrive in index order (the
                    # unique index then grows at its end: twice the insert rate at 1M).
                    digest = hashlib.blake2b(
                        f"{start}|{caller}|{number}|{seconds}|{peer}|{did}".encode(),
                        digest_size=12,
                    ).digest()
                    occurrence = occurrences.number(start, digest)
                    provider_id = f"{start:x}-{digest.hex()}-{occurrence}"
                start_dt = datetime.fromtimestamp(start, UTC)
                yield CallRecord(
                    provider_id=provider_id,
                    direction=direction,
                    start=start_dt,
                    billsec=seconds,
                    number=number or None,
                    caller=caller or None,
                    extension=peer or None,
                    answer=start_dt if seconds else None,
                    end=datetime.fromtimestamp(start + seconds, UTC),
                    hangup_cause="answered" if seconds else "no_answer",
                    raw=raw_record(row),
                    service_id=service.id,
                )

    def kept_text(self, record: CallRecord) -> str:
        """A row as a line of its file again, after a header line of the raw record's keys."""
        out = io.StringIO()
        writer = csv.writer(out, delimiter=self._kept_delimiter(), lineterminator="\n")
        if self.format.header:
            writer.writerow(list(record.raw))
        writer.writerow(list(record.raw.values()))
        return out.getvalue()

    def _kept_delimiter(self) -> str:
        return "," if self.format.delimiter == "auto" else self.format.delimiter

    def reparse(self, services: list[ServiceInfo], raw: str) -> Iterator[CallRecord | Rejected]:
        """A set-aside row (the header line, then the row) read again, at any time."""
        link = services[0].cdr_link or "(set aside)"
        low = datetime.fromtimestamp(0, UTC)
        high = datetime(9999, 12, 31, tzinfo=UTC)
        yield from self._read_pass(
            link, _Matcher(services), low, high, _Occurrences(bounded=False), text=raw
        )

    # -- feed inspect -----------------------------------------------------------

    feed_table = "cdr_format"

    def feed_head(self, source: str) -> list[str]:
        """The first SAMPLE_LINES lines (at most HEAD_BYTES) of a file or link.

        A link is read through the server's HTTP client (its retries and transfer
        limits) and the transfer is closed once enough has come in.
        """
        data = b""
        if source.startswith("file://") or "://" not in source:
            path = Path(unquote(urlsplit(source).path) if "://" in source else source)
            try:
                with path.open("rb") as handle:
                    data = handle.read(HEAD_BYTES)
            except OSError as exc:
                raise ProviderError(
                    self.name, f"CDR file {shown_link(source)}: cannot read: {exc.strerror}"
                ) from None
        else:
            with self.http.stream("GET", source) as response:
                try:
                    for chunk in response.iter_bytes():
                        data += chunk
                        if len(data) >= HEAD_BYTES or data.count(b"\n") > SAMPLE_LINES:
                            break
                except httpx.HTTPError as exc:
                    raise ProviderUnavailable(
                        self.name,
                        f"CDR link {shown_link(source)}: transfer broke off ({type(exc).__name__})",
                    ) from None
        cut = len(data) >= HEAD_BYTES
        decoder = codecs.getincrementaldecoder(self.format.encoding)()
        try:
            text = decoder.decode(data[:HEAD_BYTES], final=False)
        except UnicodeDecodeError as exc:
            raise ProviderDataError(
                self.name,
                f"CDR file {shown_link(source)}: not {self.format.encoding} text: {exc.reason}",
            ) from None
        lines = text.removeprefix("\ufeff").splitlines()
        if cut and len(lines) > 1 and not text.endswith(("\n", "\r")):
            lines.pop()  # a line cut short by the byte limit
        return lines[:SAMPLE_LINES]

    def inspect_feed(self, lines: list[str], shown: str) -> FeedLayout:
        """The `cdr_format` keys the first lines show (voipctl.providers.lesnet.inspect)."""
        where = f"servers.{self.name}.cdr_format.timezone"
        zone_source = "no UTC offset in the times, so " + (
            where if "timezone" in self.format.model_fields_set else f"the default of {where}"
        )
        found = lesnet_inspect.detect(
            self.name,
            shown,
            lines,
            timezone=self.format.timezone,
            zone_source=zone_source,
            prefer=self.format.time_format,
        )
        shown_delimiter = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "bar"}
        facts = [
            (
                "delimiter",
                f"{shown_delimiter.get(found.delimiter, found.delimiter)} ({found.delimiter!r})",
            ),
            ("header", ", ".join(found.header) if found.header is not None else "none"),
            ("date format", f"{found.time_format} (column {found.time_column})"),
            ("time zone", f"{found.timezone} ({found.zone_source})"),
        ]
        settings = {
            "delimiter": found.delimiter,
            "header": found.header is not None,
            "time_format": found.time_format,
            "timezone": found.timezone,
            "encoding": self.format.encoding,
            "columns": found.columns,
        }
        return FeedLayout(facts, f"servers.{self.name}.cdr_format", settings, found.notes)

    def with_feed_layout(self, settings: dict) -> LesnetAdapter:
        """This server with `settings` as its `cdr_format` (checked as when loaded)."""
        try:
            layout = LesnetCdrFormat.model_validate(settings)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"servers.{self.name}.cdr_format.{where}: {first['msg']}") from None
        config = self.config.model_copy(update={"cdr_format": layout})
        return LesnetAdapter(self.name, config, transport=self._transport)

    def read_sample(
        self, lines: list[str], services: list[ServiceInfo], shown: str
    ) -> Iterator[SampleRow]:
        """Each data line read alone, as a pull reads it; a row of no service has no
        service_id (read as outbound, the direction of a peer's row)."""
        matcher = _SampleMatcher(services)
        low = datetime.fromtimestamp(0, UTC)
        high = datetime(9999, 12, 31, tzinfo=UTC)
        first = 1
        head = ""
        if self.format.header:
            head, first = lines[0] + "\n", 2
        for number, line in enumerate(lines[first - 1 :], start=first):
            if not line.strip():
                continue
            base = number - first
            for item in self._read_pass(
                shown, matcher, low, high, _Occurrences(bounded=False),
                text=head + line + "\n", line_base=base,
            ):  # fmt: skip
                if item.__class__ is Rejected:
                    yield SampleRow(number, rejected=item)
                else:
                    if item.service_id == _NOBODY.id:
                        item.service_id = None
                    yield SampleRow(number, record=item)

    # -- levers -----------------------------------------------------------------

    @staticmethod
    def _did(service: ServiceInfo) -> str:
        return service.main_did or (service.dids[0] if service.dids else "")

    def _run(self, template: list[str], service: ServiceInfo, action: str) -> str:
        values = {
            "{peer}": service.peer_id or "",
            "{did}": self._did(service),
            "{service_id}": str(service.id),
        }
        return run_command(self.name, template, values, action, self.config.timeout_s)

    def _check_api(self) -> str:
        where = f"servers.{self.name}"
        body = {
            "authentication": {
                "apikey": secret(self.config.api_key_env, what=f"{where}.api_key_env"),
                "idkey": secret(self.config.id_key_env, what=f"{where}.id_key_env"),
            },
            "sequence": int(time.time()),
        }
        url = self.config.url.rstrip("/") + "/account/balance/"
        answer = self.http.json("POST", url, json=body)
        balance = answer.get("balance") if isinstance(answer, dict) else None
        return "LES.NET API reached" + (f" (balance {balance})" if balance is not None else "")


_NOBODY = ServiceInfo(id=-1, client_id=-1, server="")


class _SampleMatcher(_Matcher):
    """`feed inspect`: every row is read, a row of no service as _NOBODY's."""

    def match(self, peer: str, caller: str, number: str) -> tuple[ServiceInfo, str]:
        return super().match(peer, caller, number) or (_NOBODY, "outbound")


class _RawTemplate:
    """A row as its raw record (header name -> text) with the record's JSON made by template.

    The keys are fixed for a file, so the JSON is the keys' text with each
    value's encoded string put in: what `json.dumps(..., separators=(",", ":"),
    ensure_ascii=False)` gives for the dict, at a quarter of the cost. Rows of
    another width, or a header that repeats a name, make a plain dict.
    """

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.width = len(keys)
        self.template = None
        if len(set(keys)) == len(keys):
            self.template = (
                "{" + ",".join(f"{_encode_json(k).replace('%', '%%')}:%s" for k in keys) + "}"
            )

    def __call__(self, row: list[str]) -> dict[str, str]:
        if self.template is None or len(row) != self.width:
            return dict(zip(self.keys, row, strict=False))
        record = RawRecord(zip(self.keys, row, strict=True))
        record.json = self.template % tuple(map(_encode_json, row))
        return record


def _rows(reader, server: str, shown: str) -> Iterator[list[str]]:
    """The reader's rows; a line the csv module refuses is a data error naming the line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ProviderDataError(
                server, f"CDR link {shown} line {reader.line_num}: {exc}"
            ) from None
        yield row


def _key(record: CallRecord | Rejected) -> str:
    return record.locator if record.__class__ is Rejected else record.provider_id


def _ceil_seconds(text: str) -> int:
    try:
        # One plain syntax: no exponent, underscore or other script's digits.
        value = money.plain(text, field="seconds")
    except money.NumberError:
        raise ValueError(f"seconds {text!r} is not a duration") from None
    if value < 0:
        raise ValueError(f"seconds {text!r} is not a duration")
    return int(value.to_integral_value(rounding="ROUND_CEILING"))
