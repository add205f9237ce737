"""Reading FusionPBX's CSV export as `app/xml_cdr/xml_cdr_export.php` writes it.

The script echoes every header key and every value between double quotes, the
values joined by commas and the records ended by "\\n", and escapes nothing: a
caller name `Pat "The Boss", OBrien` goes out as it is, and a value may even hold
`","` or a line break. A CSV reader refuses such lines; this module reads them.

The header gives the number of columns N. Inside the outer quotes of a record the
fields are separated by `","`; when a value holds that sequence too, there are more
candidate separators than N - 1. Every way of choosing N - 1 of them is tried and
each field is checked against what its column can hold (a uuid, a number, a
timestamp, a phone number without `"`, or free text for names and the like); with
exactly N - 1 separators the split is taken as it is and each value is checked
later by the code that reads its column. One fitting split is the record; none,
or more than one (two free-text columns side by side, each of which could hold
the extra `","`), is a record that cannot be read,
reported with its line number and raw text and the rest of the export read on.
A record whose text ends before its N fields do (a line break inside a value) is
joined with the lines after it; when the joined text still does not read, the
first line alone is reported and reading starts again at the next one.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from voipctl.errors import ProviderDataError

EXPORT_PATH = "/app/xml_cdr/xml_cdr_export.php"
SEPARATOR = '","'
# A record spread over more physical lines than this is taken as unreadable.
MAX_LINES_PER_RECORD = 20

_UUID = re.compile(r"(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?|-?\.[0-9]+")
_STAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([+-][0-9:]+|Z)?"
)
_WORD = re.compile(r"[A-Za-z0-9_]+")
_DATE = re.compile(r"[0-9]{2} [A-Za-z]{3} [0-9]{4}")
_TIME = re.compile(r"[0-9]{1,2}:[0-9]{2}( ?[AaPp][Mm])?")
_FLAG = re.compile(r"1|0|t|f|true|false", re.IGNORECASE)


def _no_quote(value: str) -> bool:
    return '"' not in value


# What each column of the export's query (app/xml_cdr/xml_cdr_inc.php) can hold;
# a column not named here (custom fields, names, paths, codecs) may hold any text.
_PATTERNS = {
    **dict.fromkeys(("domain_uuid", "xml_cdr_uuid"), _UUID),
    **dict.fromkeys(
        (
            "start_epoch",
            "answer_epoch",
            "end_epoch",
            "duration",
            "mduration",
            "billsec",
            "billmsec",
            "pdd_ms",
            "rtp_audio_in_mos",
            "wait",
            "waitsec",
            "tta",
            "hangup_cause_q850",
        ),
        _NUMBER,
    ),
    **dict.fromkeys(("start_stamp", "answer_stamp", "end_stamp"), _STAMP),
    "direction": re.compile(r"inbound|outbound|local"),
    "leg": re.compile(r"[ab]"),
    **dict.fromkeys(("hangup_cause", "status"), _WORD),
    "start_date_formatted": _DATE,
    "start_time_formatted": _TIME,
    "missed_call": _FLAG,
}
# Numbers dialled, extensions and FreeSWITCH's own words: any text without a double quote.
_QUOTELESS = frozenset(
    (
        "extension",
        "caller_id_number",
        "caller_destination",
        "source_number",
        "destination_number",
        "domain_name",
        "bridge_uuid",
        "read_codec",
        "write_codec",
        "cc_side",
        "sip_hangup_disposition",
        "call_disposition",
    )
)


def _fits(column: str, value: str) -> bool:
    if value == "":
        return True  # PHP echoes NULL (and false) as nothing
    pattern = _PATTERNS.get(column)
    if pattern is not None:
        return pattern.fullmatch(value) is not None
    if column in _QUOTELESS:
        return _no_quote(value)
    return True


@dataclass(frozen=True)
class ExportRecord:
    """One record of the export: its fields by column, or why it cannot be read.

    `line` is the number of its first physical line, `raw` its text as sent (line
    breaks inside it included). Exactly one of `row` and `error` is set.
    """

    line: int
    raw: str
    row: dict[str, str] | None = None
    error: ProviderDataError | None = None
    header: tuple[str, ...] = ()

    def kept_text(self) -> str:
        """The header line and the record's text: what `read_export` reads this record from."""
        return '"' + SEPARATOR.join(self.header) + '"\n' + self.raw

    def fields(self) -> dict[str, str]:
        """The row; the record's ProviderDataError raised when it could not be read."""
        if self.row is None:
            raise self.error or ProviderDataError("?", f"line {self.line}: unreadable")
        return self.row


def split_record(header: list[str], text: str) -> list[str]:
    """The N values of one record, N = len(header); ValueError when not exactly one split fits."""
    if len(text) < 2 or not text.startswith('"') or not text.endswith('"'):
        raise ValueError("not a record between double quotes")
    inner = text[1:-1]
    # Every place a separator starts, overlapping ones included (a value `,` gives `",","`).
    starts = [i for i in range(len(inner) - 2) if inner.startswith(SEPARATOR, i)]
    count = len(header)
    if len(starts) < count - 1:
        raise ValueError(f"{len(starts) + 1} fields, the header has {count}")
    pieces = inner.split(SEPARATOR)
    if len(starts) == count - 1 and len(pieces) == count:
        # The plain case: no value holds '","'. The values are not checked here, so a
        # wrong one is reported by its column (billsec '6O' is not a number).
        return pieces
    memo: dict[tuple[int, int], list[list[str]]] = {}

    def rest(column: int, begin: int) -> list[list[str]]:
        """Up to two ways to read columns column.. from inner[begin:]."""
        key = (column, begin)
        if key in memo:
            return memo[key]
        found: list[list[str]] = []
        if column == count - 1:
            value = inner[begin:]
            if _fits(header[column], value):
                found.append([value])
        else:
            for start in starts:
                if start < begin:
                    continue
                value = inner[begin:start]
                if not _fits(header[column], value):
                    continue
                for tail in rest(column + 1, start + len(SEPARATOR)):
                    found.append([value, *tail])
                    if len(found) > 1:
                        break
                if len(found) > 1:
                    break
        memo[key] = found
        return found

    ways = rest(0, 0)
    if not ways:
        raise ValueError(
            f"no reading of its {len(starts) + 1} quoted pieces fits the header's {count} columns"
        )
    if len(ways) > 1:
        differ = [header[i] for i, (a, b) in enumerate(zip(*ways, strict=True)) if a != b]
        raise ValueError(
            "ambiguous: a value holds '\",\"' and it cannot be told which of "
            f"{', '.join(differ)} it belongs to"
        )
    return ways[0]


def lf_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Lines ended by "\\n" only (PHP's echo "\\n"); a "\\r" or U+2028 stays in its value."""
    pending = ""
    for chunk in chunks:
        pending += chunk
        *whole, pending = pending.split("\n")
        yield from whole
    if pending:
        yield pending


def read_export(server: str, lines: Iterable[str]) -> Iterator[ExportRecord]:
    """The export's records in order; the first non-blank line is the header.

    A header without xml_cdr_uuid/start_epoch is an error for the whole export
    (raised); a record that cannot be read comes out with `error` set and reading
    goes on.
    """
    source = iter(enumerate(lines, start=1))
    header: list[str] | None = None
    for line_no, line in source:
        if not line.strip():
            continue  # FusionPBX ends an empty export with blank lines
        header = [name.strip() for name in line.strip().strip('"').split(SEPARATOR)]
        if "xml_cdr_uuid" not in header or "start_epoch" not in header:
            raise ProviderDataError(
                server,
                f"{EXPORT_PATH} line {line_no}: header lacks xml_cdr_uuid/start_epoch"
                " (the key's user needs the xml_cdr_start permission)",
            )
        break
    if header is None:
        return
    buffered: deque[tuple[int, str]] = deque()
    while True:
        if not buffered:
            nxt = next(source, None)
            if nxt is None:
                return
            if not nxt[1].strip():
                continue  # blank lines between records
            buffered.append(nxt)
        first_no = buffered[0][0]
        taken = 1
        while True:
            text = "\n".join(line for _, line in list(buffered)[:taken])
            try:
                values = split_record(header, text)
            except ValueError as exc:
                reason = str(exc)
            else:
                for _ in range(taken):
                    buffered.popleft()
                yield ExportRecord(
                    first_no,
                    text,
                    row=dict(zip(header, values, strict=True)),
                    header=tuple(header),
                )
                break
            if _open(header, text) and taken < MAX_LINES_PER_RECORD:
                if taken == len(buffered):
                    nxt = next(source, None)
                    if nxt is not None:
                        buffered.append(nxt)
                if taken < len(buffered):
                    taken += 1
                    continue
            # Unreadable: report the first line alone (with its own reason) and go on
            # from the line after it.
            alone = buffered.popleft()[1]
            if taken > 1:
                try:
                    split_record(header, alone)
                except ValueError as exc:
                    reason = str(exc)
            yield ExportRecord(
                first_no,
                alone,
                error=ProviderDataError(server, f"{EXPORT_PATH} line {first_no}: {reason}"),
                header=tuple(header),
            )
            break


def _open(header: list[str], text: str) -> bool:
    """True when the text may be a record cut short by a line break inside a value."""
    if not text.startswith('"'):
        return False
    inner = text[1:]
    return not text.endswith('"') or inner.count(SEPARATOR) < len(header) - 1
