"""Telling a LES.NET CDR file's layout from its first lines (`voipctl feed inspect`).

LES.NET does not publish the file's layout (docs/providers.md), so an operator
configures it; this reads the first rows and proposes the `cdr_format` keys:
the delimiter (the csv module's sniffer over `,` `;` tab `|`), whether line 1
is a header (none of its cells reads as a time or a number), the time column
and its format (the formats below that read every sampled value, or Unix
times when no column reads as a text time), the zone
(an offset in the times, else the configured zone: a file of local times does
not say its zone) and the column map (header names known below, else the
values: the time, a duration, a peer ID, and numbers of 7 or more digits).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime

from voipctl.errors import ProviderDataError

# Tried in this order; the first that reads every sampled value is proposed.
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%d-%m-%Y %H:%M:%S",
    "%m-%d-%Y %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S%z",
)
# Header names (lower case, spaces and dashes as "_") known for each field.
HEADER_NAMES = {
    "start": ("date", "start", "calldate", "call_date", "datetime", "start_time", "timestamp"),
    "caller": ("src", "caller", "from", "ani", "cli", "source", "caller_id", "callerid"),
    "number": ("dst", "number", "to", "destination", "dnis", "called", "dialed"),
    "seconds": ("duration", "seconds", "billsec", "secs", "sec", "length"),
    "peer": ("peer", "peer_id", "peerid"),
    "did": ("did",),
    "call_id": ("call_id", "callid", "uniqueid"),
}
DELIMITERS = ",;\t|"
_NUMBER = re.compile(r"^\+?\d{7,15}$")
_SECONDS = re.compile(r"^\d{1,7}(\.\d+)?$")
_PEER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9]{6,32}$")


@dataclass
class Detected:
    """What the first lines show; `columns` maps fields to header names or indexes."""

    delimiter: str
    header: list[str] | None
    time_format: str
    time_column: str
    timezone: str
    zone_source: str
    columns: dict[str, str]
    notes: list[str] = field(default_factory=list)


def _norm(name: str) -> str:
    return re.sub(r"[\s-]+", "_", name.strip().lower())


def time_formats_of(values: list[str]) -> list[str]:
    """The formats of TIME_FORMATS that read every value (ASCII only, as the reader)."""
    found = []
    for fmt in TIME_FORMATS:
        try:
            for value in values:
                if not value.isascii():
                    raise ValueError
                datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
        found.append(fmt)
    return found


def _delimiter(server: str, shown: str, lines: list[str]) -> str:
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        pass
    # The sniffer gives up on short samples: a delimiter found the same number of
    # times on every line will do.
    for candidate in DELIMITERS:
        counts = {line.count(candidate) for line in lines}
        if len(counts) == 1 and counts.pop() > 0:
            return candidate
    raise ProviderDataError(
        server,
        f"CDR file {shown} line 1: cannot tell the delimiter (tried , ; tab |); "
        f"set servers.{server}.cdr_format.delimiter",
    )


def _is_epoch(value: str) -> bool:
    return value.isascii() and value.isdigit() and 946_684_800 <= int(value) < 4_102_444_800


def _looks_like_data(cell: str) -> bool:
    text = cell.strip()
    return bool(text) and (bool(time_formats_of([text])) or bool(_SECONDS.match(text)))


def detect(
    server: str, shown: str, lines: list[str], *, timezone: str, zone_source: str, prefer: str
) -> Detected:
    """The layout of `lines` (the file's first lines, without line ends).

    `timezone`/`zone_source` is the zone to propose for local times and where it
    comes from; `prefer` the configured time format, chosen when it is among
    several that read the sample (day-first and month-first dates up to the 12th).
    """
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ProviderDataError(server, f"CDR file {shown}: empty, nothing to inspect")
    delimiter = _delimiter(server, shown, lines)
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = None
    if not any(_looks_like_data(cell) for cell in rows[0]):
        header = rows[0]
        rows = rows[1:]
    if not rows:
        raise ProviderDataError(server, f"CDR file {shown}: a header and no rows to inspect")
    width = min(len(row) for row in rows)
    values = [[row[i].strip() for row in rows] for i in range(width)]
    notes: list[str] = []

    def name(index: int) -> str:
        return header[index] if header is not None else str(index)

    found: dict[str, int] = {}
    if header is not None:
        names = [_norm(cell) for cell in header[:width]]
        for field_name, known in HEADER_NAMES.items():
            for i, cell in enumerate(names):
                if cell in known and i not in found.values():
                    found[field_name] = i
                    break
    # What the header did not name, the values tell.
    taken = set(found.values())
    if "start" not in found:
        for i in range(width):
            if i not in taken and values[i] and time_formats_of(values[i][:1]):
                found["start"] = i
                taken.add(i)
                break
    if "start" not in found:
        # No text time anywhere: a column of Unix times (seconds, 2000-2099). Tried
        # last, since a 10-digit phone number can look like one.
        for i in range(width):
            if i not in taken and values[i] and all(_is_epoch(v) for v in values[i]):
                found["start"] = i
                taken.add(i)
                break
    if "start" not in found:
        raise ProviderDataError(
            server,
            f"CDR file {shown} line {2 if header else 1}: no column reads as a time "
            f"in any known format; set servers.{server}.cdr_format.time_format and columns.start",
        )
    formats = time_formats_of(values[found["start"]])
    if not formats and all(_is_epoch(v) for v in values[found["start"]]):
        formats = ["epoch"]
    if not formats:
        # Not every value reads: the format most of them have (the others are shown
        # refused, by line and column, when the rows are read with it).
        each = [set(time_formats_of([v])) for v in values[found["start"]]]
        counts = {f: sum(1 for readable in each if f in readable) for f in TIME_FORMATS}
        best = max(counts.values())
        if not best:
            raise ProviderDataError(
                server,
                f"CDR file {shown} line {2 if header else 1}: column {name(found['start'])} "
                "(start): not a time in any known format; "
                f"set servers.{server}.cdr_format.time_format",
            )
        formats = [f for f in TIME_FORMATS if counts[f] == best]
        notes.append(f"column {name(found['start'])}: some values are not times in this format")
    time_format = prefer if prefer in formats else formats[0]
    if len(formats) > 1:
        notes.append(
            f"the dates read as {' and as '.join(formats)}: {time_format} proposed; "
            "check a date after the 12th of a month"
        )
    if "seconds" not in found:
        for i in range(width):
            if i not in taken and all(_SECONDS.match(v) for v in values[i]):
                found["seconds"] = i
                taken.add(i)
                break
    if "peer" not in found:
        for i in range(width):
            if i not in taken and all(_PEER.match(v) for v in values[i]):
                found["peer"] = i
                taken.add(i)
                break
    numbers = [
        i
        for i in range(width)
        if i not in taken and values[i] and all(_NUMBER.match(v) for v in values[i] if v)
    ]
    if "did" not in found and len(numbers) >= 3:
        # The DID is, on each row, the caller (outbound) or the called number (inbound).
        for i in numbers:
            others = [j for j in numbers if j != i]
            if all(v in {values[j][r] for j in others} for r, v in enumerate(values[i])):
                found["did"] = i
                numbers.remove(i)
                break
    for field_name in ("caller", "number"):
        if field_name not in found and numbers:
            found[field_name] = numbers.pop(0)
            if header is None or _norm(header[found[field_name]]) not in HEADER_NAMES[field_name]:
                which = "first" if field_name == "caller" else "second"
                notes.append(f"{field_name} told by position (the {which} column of numbers)")
    for field_name in ("start", "caller", "number", "seconds"):
        if field_name not in found:
            raise ProviderDataError(
                server,
                f"CDR file {shown}: no column found for {field_name}; "
                f"set servers.{server}.cdr_format.columns.{field_name}",
            )
    if time_format.endswith("%z"):
        timezone, zone_source = "UTC", "offsets in the times (the zone setting is not used)"
    elif time_format == "epoch":
        timezone, zone_source = "UTC", "Unix times (the zone setting is not used)"
    order = ("start", "caller", "number", "seconds", "peer", "did", "call_id")
    columns = {f: name(found[f]) for f in order if f in found}
    return Detected(
        delimiter=delimiter,
        header=header,
        time_format=time_format,
        time_column=name(found["start"]),
        timezone=timezone,
        zone_source=zone_source,
        columns=columns,
        notes=notes,
    )
