"""Local time text -> UTC epoch seconds, fast for every fixed-width layout.

A CDR file's times are local text in a configured `strptime` format, a million
of them per file. `strptime` costs about 8 µs a call; most layouts are fixed
width (`%Y-%m-%d %H:%M:%S`, `%d/%m/%Y %H:%M:%S`, `%m/%d/%Y %H:%M`,
`%Y%m%d%H%M%S`, ...), and those are read by slicing: the digits of each field
at their place, the separators checked, and the epoch of each local hour
cached (a file has a few hundred distinct hours).

What slicing reads is exactly what `strptime` reads: any text the slices do not
take (another length, a stray character, a digit of another script, a value out
of range) goes to `strptime`, which then accepts it (`1/2/2026 9:05:00` under
`%d/%m/%Y %H:%M:%S`) or refuses it as before. A format with any directive but
`%Y %m %d %H %M %S` and `%%` (`%b`, `%p`, `%y`, `%z`, ...) is read by `strptime`
throughout. A local time in the repeated hour of a DST change is its first
occurrence (fold=0), as `datetime(..., tzinfo=zone)` reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

# The fixed-width directives slicing reads, and their widths.
_WIDTHS = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}
_HOUR_FIELDS = ("Y", "m", "d", "H")


def _layout(time_format: str) -> tuple[dict[str, slice], list[tuple[int, str]], int] | None:
    """The slice of each field, the literal characters with their places, the width;
    None when the format is not fixed width (or lacks a field of the hour)."""
    fields: dict[str, slice] = {}
    literals: list[tuple[int, str]] = []
    at = i = 0
    while i < len(time_format):
        char = time_format[i]
        if char != "%":
            literals.append((at, char))
            at, i = at + 1, i + 1
            continue
        directive = time_format[i + 1 : i + 2]
        if directive == "%":
            literals.append((at, "%"))
            at, i = at + 1, i + 2
            continue
        if directive not in _WIDTHS or directive in fields:
            return None
        fields[directive] = slice(at, at + _WIDTHS[directive])
        at, i = at + _WIDTHS[directive], i + 2
    if not all(name in fields for name in _HOUR_FIELDS):
        return None
    return fields, literals, at


class LocalTimes:
    """`epoch(text)`: a local time in `time_format`, in `zone`, as UTC epoch seconds.

    ValueError (from `strptime`) for a text the format does not read. `fast` says
    whether the format is read by slicing.
    """

    def __init__(self, time_format: str, zone: ZoneInfo):
        self.format = time_format
        self.zone = zone
        self._hours: dict[str, int] = {}
        layout = _layout(time_format)
        self.fast = layout is not None
        self.epoch: Callable[[str], int] = self._strptime
        if layout is not None:
            self.epoch = self._compile(*layout)

    def _strptime(self, text: str) -> int:
        parsed = datetime.strptime(text, self.format)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.zone)
        return int(parsed.timestamp())

    def _compile(
        self, fields: dict[str, slice], literals: list[tuple[int, str]], width: int
    ) -> Callable[[str], int]:
        hour_slices = [fields[name] for name in _HOUR_FIELDS]
        minute = fields.get("M")
        second = fields.get("S")
        digits = [fields[name] for name in fields]
        hours = self._hours
        strptime = self._strptime
        zone = self.zone

        def epoch(text: str) -> int:
            if len(text) != width or not text.isascii():
                return strptime(text)
            for place, char in literals:
                if text[place] != char:
                    return strptime(text)
            for part in digits:
                if not text[part].isdigit():
                    return strptime(text)
            key = "".join([text[part] for part in hour_slices])
            base = hours.get(key)
            if base is None:
                year, month, day, hour = (int(text[part]) for part in hour_slices)
                try:
                    base = int(datetime(year, month, day, hour, tzinfo=zone).timestamp())
                except ValueError:
                    return strptime(text)  # month 13, 31 April...: strptime says so
                hours[key] = base
            minutes = int(text[minute]) if minute is not None else 0
            seconds = int(text[second]) if second is not None else 0
            if minutes > 59 or seconds > 59:
                return strptime(text)
            return base + minutes * 60 + seconds

        return epoch
