"""The adapter contract every PBX or carrier implements (docs/providers.md), and its value objects.

Providers know nothing of the store: they receive a `ServiceInfo` snapshot and
yield `CallRecord`s; `voipctl.jobs` moves those into the database.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

DIRECTIONS = ("outbound", "inbound", "local")


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What an adapter needs to know of one service (parsed product fields)."""

    id: int
    client_id: int
    server: str
    tenant: str | None = None
    main_did: str | None = None
    dids: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    peer_id: str | None = None
    gateway_uuid: str | None = None
    trunk_id: str | None = None
    first_name: str | None = None
    inbound_search: str | None = None
    cdr_link: str | None = None


@dataclass(frozen=True, slots=True)
class LeverState:
    """What a provider shows of a service's suspend lever when read back.

    `suspended` is True only when nothing of the lever lets calls through, False
    when something does (a partial effect counts as not suspended, so a suspend
    acts again), None when the provider cannot tell. `detail` says what was read.
    """

    suspended: bool | None
    detail: str


class RawRecord(dict):
    """A provider's record (a plain dict to read) that also carries its JSON text.

    Adapters of bulk feeds may give `CallRecord.raw` as one of these, with `json`
    exactly what `json.dumps(record, separators=(",", ":"), ensure_ascii=False)`
    gives, so that pull-cdrs stores the text instead of encoding the dict again
    (a third of the per-call cost of a LES.NET pull).
    """

    __slots__ = ("json",)


@dataclass(slots=True)
class CallRecord:
    """One call, normalised from a provider's payload. Times are aware UTC datetimes.

    Not frozen: a frozen dataclass's __init__ sets each field through
    object.__setattr__, 0.8 us more per call, a twentieth of a bulk pull's time;
    an adapter builds each record once and pull-cdrs reads it once.
    """

    provider_id: str  # the dedupe key, unique per server
    direction: str  # outbound | inbound | local
    start: datetime
    billsec: int
    number: str | None  # outbound: dialled destination; inbound: the number that was called
    caller: str | None = None
    extension: str | None = None
    answer: datetime | None = None
    end: datetime | None = None
    hangup_cause: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the provider's record, for support
    # Set by adapters that read one feed for several services (a shared LES.NET link).
    service_id: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be read, yielded by `fetch_cdrs`/`fetch_feed` among CallRecords.

    pull-cdrs sets it aside (the `rejected_records` table) and stores the rest.
    `locator` names the record stably across runs (its provider id, or
    `digest(raw)` when it has none that can be trusted), `reason` is one line
    saying where and why, `raw` the record's text as the adapter's `reparse`
    reads it again.
    """

    locator: str
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class FeedLayout:
    """A file feed's layout as `feed inspect` tells it from the first lines.

    `facts` are (what, value) pairs to show (delimiter, header, date format,
    zone), `table` the configuration table the proposal is for, `settings` its
    keys (a nested dict is a sub-table), `notes` what the operator should check.
    """

    facts: list[tuple[str, str]]
    table: str
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One line of a feed's first lines read with a layout: a record or why not."""

    line: int
    record: CallRecord | None = None
    rejected: Rejected | None = None


def digest(text: str) -> str:
    """A short stable name for a record's text (a locator for records without an id)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def reason_of(exc: Exception) -> str:
    """A ProviderError's message without its leading "SERVER: "."""
    text = str(exc)
    server = getattr(exc, "server", None)
    prefix = f"{server}: "
    return text[len(prefix) :] if server and text.startswith(prefix) else text


class ProviderAdapter(ABC):
    """One configured server. Subclasses must implement every abstract method."""

    type: ClassVar[str]
    # Optional: the name of the record key that makes `provider_id`, when it is
    # configuration. pull-cdrs records it per server at the first pull and refuses
    # a change (new ids would store the overlap window again). `legacy_dedupe_key`
    # is the key of calls stored before the name was recorded.
    dedupe_key: str | None = None
    legacy_dedupe_key: ClassVar[str | None] = None

    def __init__(self, name: str, config: Any):
        self.name = name
        self.config = config

    @abstractmethod
    def check(self) -> str:
        """Reach the server with its credentials; return what was reached (version if known).

        Raises ProviderAuthError / ProviderUnavailable / ProviderError otherwise.
        """

    @abstractmethod
    def fetch_cdrs(
        self, service: ServiceInfo, since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        """Stream the service's calls that started in [since, until); never all in memory."""

    @abstractmethod
    def suspend(self, service: ServiceInfo, reason: str) -> str:
        """Cut the service; idempotent; return the provider's answer. Raises on failure."""

    @abstractmethod
    def unsuspend(self, service: ServiceInfo) -> str:
        """Restore the service; idempotent; return the provider's answer. Raises on failure."""

    def state(self, service: ServiceInfo) -> LeverState:
        """Read the lever back from the provider (autosuspend reconciles with it).

        Adapters that cannot read their lever keep this default: unknown.
        """
        return LeverState(None, f"{self.type} cannot read its lever back")

    # Optional capability: end the calls in progress of a service on a fraud stop
    # (docs/fraud.md). A suspend keeps new calls out; calls already up may survive it.
    can_hang_up: ClassVar[bool] = False

    def hang_up(self, service: ServiceInfo) -> str:
        """Hang up the service's calls in progress; return the PBX's confirmation."""
        raise NotImplementedError(f"{self.type} cannot hang up calls in progress")

    def states(self, services: list[ServiceInfo]) -> dict[int, LeverState | Exception]:
        """Each service's lever read back (autosuspend reads a server's services at once).

        A service whose lever cannot be read maps to the exception saying why; an
        error of the whole read (the server unreachable) is raised. This default
        asks `state` per service; adapters that can read many at once override it.
        """
        found: dict[int, LeverState | Exception] = {}
        for service in services:
            try:
                found[service.id] = self.state(service)
            except Exception as exc:  # noqa: BLE001 - returned, the caller reports it
                found[service.id] = exc
        return found

    # Optional capability: several services read from one feed (a LES.NET CDR link
    # shared by the peers of one account). A run then reads the feed once for all
    # of them, and the pull watermark is kept per feed.
    def feed_key(self, service: ServiceInfo) -> str | None:
        """The shared feed this service's calls come from, or None (one pull per service)."""
        return None

    def fetch_feed(
        self, services: list[ServiceInfo], since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        """One read of a shared feed for `services` (same feed_key); records carry service_id."""
        raise NotImplementedError(f"{type(self).__name__} has no shared feeds")

    # Optional capability: a feed read from where the last run stopped (a growing
    # file's byte offset). pull-cdrs gives the stored cursor of the feed before the
    # read (`resume`), and after it stores `cursor(key)` in the transaction that
    # stores the last calls read, so a run killed half-way reads again from the
    # last committed position (the dedupe key drops what was stored already).
    def uses_cursor(self, key: str) -> bool:
        """Whether the feed (a `feed_key`) is read from a stored cursor."""
        return False

    def resume(self, key: str, cursor: str | None) -> None:
        """Set where the next read of feed `key` starts (None: it was never read)."""
        raise NotImplementedError(f"{self.type} keeps no read cursor")

    def cursor(self, key: str) -> str | None:
        """Where the last read of feed `key` stopped, as text to store."""
        raise NotImplementedError(f"{self.type} keeps no read cursor")

    # Optional: read a set-aside record's kept text again (pull-cdrs --retry-rejected).
    def reparse(self, services: list[ServiceInfo], raw: str) -> Iterator[CallRecord | Rejected]:
        """The records in `raw` as `fetch_cdrs` would give them, without a time window."""
        raise NotImplementedError(f"{self.type} cannot read a set-aside record again")

    def kept_text(self, record: CallRecord) -> str:
        """A read record's text as `reparse` reads it (kept when pull-cdrs cannot store it)."""
        raw = record.raw
        if raw.__class__ is RawRecord:
            return raw.json
        return json.dumps(raw, separators=(",", ":"), default=str, ensure_ascii=False)

    # Optional capability: a file feed whose layout is configuration (`voipctl feed
    # inspect`). An adapter with one sets `feed_table` to the table of its layout
    # in `[servers.NAME]` and implements the three methods below.
    feed_table: ClassVar[str | None] = None

    def feed_head(self, source: str) -> list[str]:
        """The first lines of a feed file (a path or URL), without reading all of it."""
        raise NotImplementedError(f"{self.type} has no file feed")

    def inspect_feed(self, lines: list[str], shown: str) -> FeedLayout:
        """The layout the first lines show, as settings of `feed_table`."""
        raise NotImplementedError(f"{self.type} has no file feed")

    def with_feed_layout(self, settings: dict[str, Any]) -> ProviderAdapter:
        """This server's adapter with `settings` as its feed layout (validated as config)."""
        raise NotImplementedError(f"{self.type} has no file feed")

    def read_sample(
        self, lines: list[str], services: list[ServiceInfo], shown: str
    ) -> Iterator[SampleRow]:
        """Each data line of `lines` read as a pull reads it; rows of no service have
        `record.service_id` None."""
        raise NotImplementedError(f"{self.type} has no file feed")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
