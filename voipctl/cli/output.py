"""One place that prints data: table, CSV or JSON, on stdout.

Money should arrive already formatted by `voipctl.money.fmt` (a string); any
Decimal left over is printed in plain notation, datetimes as ISO 8601.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import click

Row = Mapping[str, Any]
Columns = Sequence[tuple[str, str]]  # (key, header)

_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def inert(text: str) -> str:
    """Text safe for a terminal or log line: C0/C1 controls (ESC, CR, LF...) and bidi
    overrides become visible escapes (\\x1b, \\x0a, \\u202e), so no value can move
    the cursor, set a title or forge a line. CSV and JSON keep data exact instead."""

    def _escape(m: re.Match[str]) -> str:
        ch = m.group()
        code = ord(ch)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(_escape, text)


def say(text: object = "", *, err: bool = False, nl: bool = True) -> None:
    """Print one line for a person: every control character in it escaped (see inert),
    a newline too, so a value from a provider or a client cannot forge a second line."""
    click.echo(inert(str(text)), err=err, nl=nl)


def say_text(text: str, *, err: bool = False, nl: bool = True) -> None:
    """Print text of several lines that voipctl laid out: each line inert, the line
    breaks kept. Values placed in such text must be inert already (see inert_values)."""
    click.echo("\n".join(inert(line) for line in str(text).split("\n")), err=err, nl=nl)


def inert_values(doc: Any) -> Any:
    """A document (dicts, lists, values) with every string in it, keys too, made inert:
    for text laid out line by line from data (explain), before the lines are joined."""
    if isinstance(doc, str):
        return inert(doc)
    if isinstance(doc, Mapping):
        return {inert_values(k): inert_values(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [inert_values(v) for v in doc]
    return doc


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def to_json(doc: Any) -> str:
    return json.dumps(doc, default=_json_default, indent=2, ensure_ascii=False)


def neutralize_cell(text: str) -> str:
    """Keep a spreadsheet from running a cell as a formula (CSV injection).

    A cell starting with =, @, tab or CR is prefixed with a quote; so is one starting
    with + or - unless the whole cell is a plain number (+15195550100, -1.25).
    """
    if not text:
        return text
    first = text[0]
    if first in "=@\t\r" or (first in "+-" and not _PLAIN_NUMBER.match(text)):
        return "'" + text
    return text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return " | ".join(_cell(v) for v in value)
    return str(value)


def _echo_json_list(items: Iterable[Any]) -> None:
    """Print a JSON list item by item (rows come from a cursor), as `to_json(list)` would."""
    first = True
    for item in items:
        body = "\n".join("  " + line for line in to_json(item).splitlines())
        click.echo(("[\n" if first else ",\n") + body, nl=False)
        first = False
    click.echo("[]" if first else "\n]")


def _fit(widths: list[int], keys: list[str], width: int, shrink: dict[str, int]) -> list[int]:
    """Narrow the `shrink` columns, in their order, until the line is `width` wide."""
    widths = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for key, narrowest in shrink.items():
        if excess <= 0:
            break
        if key in keys:
            i = keys.index(key)
            cut = min(excess, max(0, widths[i] - narrowest))
            widths[i] -= cut
            excess -= cut
    return widths


def render(
    rows: Iterable[Row],
    columns: Columns,
    fmt: str,
    *,
    footer: str | None = None,
    raw: bool = False,
    json_rows: Iterable[Row] | None = None,
    width: int | None = None,
    shrink: dict[str, int] | None = None,
) -> None:
    """Print rows. JSON shows every key of each row; table and CSV show `columns`.

    `footer` (a totals line) is printed under the table only. `raw` turns off the
    CSV formula neutralisation for machine use. With `width`, the table's `shrink`
    columns (key -> narrowest width) are cut, ending in "~", until the lines fit.
    """
    out = sys.stdout
    if fmt == "json":
        _echo_json_list(json_rows if json_rows is not None else rows)
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([header for _, header in columns])
        for row in rows:
            cells = [_cell(row.get(key)) for key, _ in columns]
            writer.writerow(cells if raw else [neutralize_cell(c) for c in cells])
        return
    materialized = [[inert(_cell(row.get(key))) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [len(h) for h in headers]
    for cells in materialized:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
    if width is not None and shrink:
        widths = _fit(widths, [key for key, _ in columns], width, shrink)
        materialized = [
            [c if len(c) <= w else c[: w - 1] + "~" for c, w in zip(cells, widths, strict=True)]
            for cells in materialized
        ]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(line.rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for cells in materialized:
        click.echo("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    if not materialized:
        click.echo("(none)")
    if footer:
        say(footer)


def render_one(obj: Row, fmt: str, *, fields: Columns | None = None) -> None:
    """Print one object: JSON as a document, table as `key: value` lines, CSV as one row."""
    if fmt == "json":
        click.echo(to_json(dict(obj)))
        return
    fields = fields or [(key, key) for key in obj]
    if fmt == "csv":
        render([obj], fields, "csv")
        return
    width = max(len(header) for _, header in fields)
    for key, header in fields:
        value = obj.get(key)
        if isinstance(value, list) and value and isinstance(value[0], Mapping):
            click.echo(f"{header.ljust(width)}:")
            for item in value:
                say("  - " + ", ".join(f"{k}={_cell(v)}" for k, v in item.items()))
        else:
            say(f"{header.ljust(width)}: {_cell(value)}")


class ServerProgress:
    """Calls stored so far, counted per server, on one line of stderr rewritten in place:
    `pull-cdrs: fusion1 120 calls, les1 240 calls` (on a terminal, without -q)."""

    def __init__(self, label: str = "pull-cdrs") -> None:
        self.label = label
        self.counts: dict[str, int] = {}

    def __call__(self, server: str, count: int) -> None:
        self.counts[server] = self.counts.get(server, 0) + count
        shown = ", ".join(f"{name} {n:,} calls" for name, n in self.counts.items())
        click.echo(f"\r{self.label}: {shown}", err=True, nl=False)

    def close(self) -> None:
        if self.counts:
            click.echo("", err=True)
