"""The record layout of Asterisk's `Master.csv`, and one row of it -> a CallRecord.

As cdr_csv writes it (asterisk/asterisk cdr/cdr_csv.c, `build_csv_record`): no
header; the columns accountcode, src, dst, dcontext, clid, channel, dstchannel,
lastapp, lastdata, start, answer, end, duration, billsec, disposition, amaflags,
then uniqueid when `loguniqueid`, userfield when `loguserfield`, then
peeraccount, linkedid, sequence when `newcdrcolumns`. Strings are quoted with a
quote inside doubled (`append_string`), integers bare (`append_int`), a time is
`%Y-%m-%d %T` in the PBX's local time unless `usegmtime`, and a zero time (a
call never answered) an empty field (`append_date`). cdr.conf's `[csv]` keys all
default to off in the code (`load_config`), which is what `Layout()` gives.

A table row (voipctl.providers.asterisk.table) comes here as the same mapping of
column name -> text, so both sources share one reading of a row (`RowReader.record`).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voipctl.errors import ConfigError
from voipctl.providers.base import CallRecord, Rejected
from voipctl.providers.base import digest as text_digest
from voipctl.providers.matching import did_key
from voipctl.providers.occurrences import Occurrences
from voipctl.providers.times import LocalTimes

BASE_COLUMNS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
)
NEW_COLUMNS = ("peeraccount", "linkedid", "sequence")
# cdr_csv.c DATE_FORMAT "%Y-%m-%d %T"; %T is %H:%M:%S.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# main/cdr.c ast_cdr_disp2str: the texts a disposition is written as.
DISPOSITIONS = ("NO ANSWER", "FAILED", "BUSY", "ANSWERED", "CONGESTION", "CANCEL", "UNKNOWN")
BILLED_ROWS = ("trunk", "answered", "all")
MAX_SECONDS = 2**31 - 1  # cdrs.billsec is a 32-bit integer


@dataclass(frozen=True, slots=True)
class Layout:
    """Which columns a Master.csv has and how its times read: cdr.conf's `[csv]` keys.

    `zone` is the PBX's local time zone (the Asterisk process's), used unless
    `usegmtime`. The defaults are cdr_csv's own when cdr.conf sets nothing.
    """

    loguniqueid: bool = False
    loguserfield: bool = False
    newcdrcolumns: bool = False
    usegmtime: bool = False
    zone: str = "UTC"
    tz: ZoneInfo = field(init=False, repr=False, compare=False)
    times: LocalTimes = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        try:
            tz = ZoneInfo("UTC" if self.usegmtime else self.zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"time_zone: unknown time zone {self.zone!r}") from None
        object.__setattr__(self, "tz", tz)
        object.__setattr__(self, "times", LocalTimes(TIME_FORMAT, tz))

    @property
    def columns(self) -> tuple[str, ...]:
        cols = BASE_COLUMNS
        if self.loguniqueid:
            cols += ("uniqueid",)
        if self.loguserfield:
            cols += ("userfield",)
        if self.newcdrcolumns:
            cols += NEW_COLUMNS
        return cols

    def describe(self) -> str:
        """The flags that are on, for messages: "loguniqueid, newcdrcolumns" or "no flags"."""
        on = [
            name for name in ("loguniqueid", "loguserfield", "newcdrcolumns") if getattr(self, name)
        ]
        return ", ".join(on) or "no flags"

    def parse_time(self, text: str) -> datetime:
        """A cdr_csv time (local to the PBX, or UTC) as an aware UTC datetime.

        The repeated hour of a DST change reads as its first occurrence (fold=0):
        the text carries no offset to tell them apart. Read by slicing
        (voipctl/providers/times.py): three times a row, a million rows a file.
        """
        return datetime.fromtimestamp(self.times.epoch(text), UTC)


@dataclass(frozen=True, slots=True)
class CallRules:
    """How a row's direction is told and which of a call's rows is billed.

    - outbound: `dstchannel` starts with one of `trunk_prefixes` (FreePBX names a
      trunk's channels `PJSIP/<trunk>-<n>` / `SIP/<trunk>-<n>`).
    - inbound: `channel` starts with a trunk prefix, or `dcontext` is one of
      `inbound_contexts`, or `dst` (or FreePBX's `did` column) is one of the DIDs.
    - local: anything else.
    `billed_rows`: "trunk" bills ANSWERED rows that are outbound or inbound;
    "answered" every ANSWERED row, local ones too; "all" every row.
    """

    trunk_prefixes: tuple[str, ...] = ()
    inbound_contexts: tuple[str, ...] = ("from-trunk", "from-pstn")
    billed_rows: str = "trunk"

    def __post_init__(self):
        if self.billed_rows not in BILLED_ROWS:
            raise ConfigError(
                f"billed_rows: {self.billed_rows!r} is not one of {', '.join(BILLED_ROWS)}"
            )
        if any(not prefix for prefix in self.trunk_prefixes):
            raise ConfigError("trunk_prefixes: an empty prefix would match every channel")

    def direction(self, row: Mapping[str, str], dids: frozenset[str] = frozenset()) -> str:
        """outbound, inbound or local (docstring of the class); `dids` as did_keys."""
        prefixes = self.trunk_prefixes
        if prefixes and row.get("dstchannel", "").startswith(prefixes):
            return "outbound"
        if prefixes and row.get("channel", "").startswith(prefixes):
            return "inbound"
        if row.get("dcontext", "") in self.inbound_contexts:
            return "inbound"
        if dids and (did_key(row.get("dst")) in dids or did_key(row.get("did")) in dids):
            return "inbound"
        return "local"

    def billed(self, row: Mapping[str, str], direction: str) -> str | None:
        """None when the row is billed, else why not (one short phrase)."""
        if self.billed_rows == "all":
            return None
        if row.get("disposition") != "ANSWERED":
            return f"disposition {row.get('disposition', '')!r}, not ANSWERED"
        if self.billed_rows == "trunk" and direction == "local":
            return "a local row (no trunk, no inbound context or DID)"
        return None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A row read well but not billed (another row of the same call is, or none is)."""

    where: str
    reason: str


class RowReader:
    """Rows of one read (a file, or one query) -> CallRecord / Rejected / Skipped.

    `source` names the file or table in messages ("Master.csv"). The dedupe key:
    `linkedid:sequence` when `newcdrcolumns` (main/cdr.c gives each CDR a number from
    one global counter, and a restart starts new linkedids); else a digest of the
    row, prefixed by its uniqueid when `loguniqueid` (several CDRs of one call share
    party A's uniqueid, so it alone does not name a row), with its occurrence number
    among identical rows of this read (two equal rows are two calls).
    """

    def __init__(
        self,
        layout: Layout,
        rules: CallRules,
        *,
        source: str,
        dids: Iterable[str] = (),
    ):
        self.layout = layout
        self.rules = rules
        self.source = source
        self.dids = frozenset(k for k in (did_key(d) for d in dids) if k)
        self.columns = layout.columns
        # Master.csv is written at each call's end, so starts are not in order:
        # every digest of the read is remembered (unbounded).
        self._occurrences = Occurrences(bounded=False)

    def split(self, line: str, lineno: int) -> dict[str, str] | Rejected:
        """One line of Master.csv (without its newline) -> column name -> text."""
        where = f"{self.source} line {lineno}"
        try:
            rows = list(csv.reader([line], strict=True))
        except csv.Error as exc:
            return self._rejected(line, where, f"not a cdr_csv line ({exc})")
        values = rows[0] if rows else []
        if len(values) != len(self.columns):
            return self._rejected(
                line,
                where,
                f"{len(values)} fields where the layout ({self.layout.describe()}) has "
                f"{len(self.columns)}; check cdr.conf's loguniqueid, loguserfield, newcdrcolumns",
            )
        return dict(zip(self.columns, values, strict=True))

    def parse_line(self, line: str, lineno: int) -> CallRecord | Rejected | Skipped:
        """One line of Master.csv (without its newline) read to its end."""
        row = self.split(line, lineno)
        if isinstance(row, Rejected):
            return row
        return self.record(row, f"{self.source} line {lineno}", line)

    def record(
        self, row: Mapping[str, str], where: str, text: str
    ) -> CallRecord | Rejected | Skipped:
        """A row (column name -> text, as cdr_csv writes it) -> what it is.

        `where` names it in messages; `text` is its kept form for a Rejected.
        """
        try:
            start_text = row["start"]
            if not start_text:
                raise ValueError("no start time")
            start = self._time(start_text, "start")
            answer = self._time(row["answer"], "answer") if row["answer"] else None
            end = self._time(row["end"], "end") if row["end"] else None
            duration = self._seconds(row["duration"], "duration")
            billsec = self._seconds(row["billsec"], "billsec")
            if billsec > duration:
                raise ValueError(f"billsec {billsec} is more than duration {duration}")
        except ValueError as exc:
            return self._rejected(text, where, str(exc))
        direction = self.rules.direction(row, self.dids)
        why_not = self.rules.billed(row, direction)
        if why_not is not None:
            return Skipped(where, why_not)
        if direction == "outbound":
            number, extension = row["dst"], row["src"]
        elif direction == "inbound":
            # FreePBX's cdr table keeps the DID dialled in `did`; Master.csv has
            # only dst, which after an inbound route is often the extension.
            number = row.get("did") or row["dst"]
            extension = row["dst"] if row["dst"] != number else None
        else:
            number, extension = row["dst"], row["src"]
        return CallRecord(
            provider_id=self._key(row, start),
            direction=direction,
            start=start,
            billsec=billsec,
            number=number or None,
            caller=row["src"] or None,
            extension=extension or None,
            answer=answer,
            end=end,
            hangup_cause=row["disposition"].lower().replace(" ", "_") or None,
            raw=dict(row),
        )

    def _time(self, text: str, column: str) -> datetime:
        try:
            return self.layout.parse_time(text)
        except ValueError:
            raise ValueError(f"{column} {text!r} is not a time like 2026-11-20 09:15:02") from None

    @staticmethod
    def _seconds(text: str, column: str) -> int:
        # isdigit() alone takes other scripts' digits: ASCII only, and no sign.
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_SECONDS:
            raise ValueError(f"{column} {text!r} is not a number of seconds")
        return int(text)

    def _key(self, row: Mapping[str, str], start: datetime) -> str:
        if self.layout.newcdrcolumns and row.get("linkedid") and row.get("sequence"):
            return f"{row['linkedid']}:{row['sequence']}"
        text = "\x1f".join(row.get(c, "") for c in self.columns)
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).digest()
        occurrence = self._occurrences.number(int(start.timestamp()), digest)
        key = f"{digest.hex()}-{occurrence}"
        uniqueid = row.get("uniqueid") if self.layout.loguniqueid else None
        return f"{uniqueid}-{key}" if uniqueid else f"{int(start.timestamp()):x}-{key}"

    @staticmethod
    def _rejected(text: str, where: str, reason: str) -> Rejected:
        return Rejected(text_digest(text), f"{where}: {reason}", text)
