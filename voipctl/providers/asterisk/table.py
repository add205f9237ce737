"""The `cdr` table mode: one time window of FreePBX's `asteriskcdrdb.cdr` or cdr_pgsql's table.

Two shapes are read, told apart by their columns (docs/asterisk.md):

- FreePBX (MariaDB/MySQL, `asteriskcdrdb.cdr`; FreePBX/framework
  installlib/SQL/cdr.sql, with linkedid, peeraccount and sequence added by
  FreePBX/cdr install.php): the start is `calldate`, there is no answer or end
  column, `amaflags` is an integer, and `did` keeps the DID the call came in on.
- cdr_pgsql (asterisk/asterisk contrib/ast-db-manage/cdr/versions/
  210693f3123d_create_cdr_table.py): `start`, `answer`, `end` columns. cdr_pgsql
  writes the columns the table has (cdr/cdr_pgsql.c `pgsql_log`), a time as
  `%Y-%m-%d %T` in its `timezone` (default the PBX's local time), and leaves a
  column unset (NULL) when the CDR has no value for it (a call never answered).

Each row becomes the mapping of column name -> text that cdr_csv would have
written, and goes through the same `RowReader.record` as a Master.csv line. The
connection is any DB-API one (PyMySQL, psycopg); both use the `%s` paramstyle.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from voipctl.errors import ConfigError, DataError
from voipctl.providers.asterisk.master_csv import (
    TIME_FORMAT,
    CallRules,
    Layout,
    RowReader,
    Skipped,
)
from voipctl.providers.base import CallRecord, Rejected

DIALECTS = ("mysql", "postgresql")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
REQUIRED = ("src", "dst", "dcontext", "channel", "dstchannel", "duration", "billsec", "disposition")
# include/asterisk/channel.h enum ama_flags, for tables that keep amaflags as a number.
AMA_NAMES = {0: "Unknown", 1: "OMIT", 2: "BILLING", 3: "DOCUMENTATION"}
ZERO_TIMES = ("0000-00-00 00:00:00", "1000-01-01 00:00:00")  # FreePBX's column defaults
FETCH = 500
# The window is asked in the table's local time; around a DST change local times
# overlap or jump, so an hour more each side is read and rows kept by their UTC start.
_SLACK = timedelta(hours=1)


def _quote(dialect: str, name: str) -> str:
    q = "`" if dialect == "mysql" else '"'
    return ".".join(f"{q}{part}{q}" for part in name.split("."))


class CdrTable:
    """One `cdr` table read through a DB-API connection the caller opened (and closes).

    `zone` is the time zone the table's times are written in (the PBX's local
    zone, unless cdr_pgsql's `timezone` or cdr_adaptive_odbc's `usegmtime` says
    otherwise).
    """

    def __init__(
        self,
        conn: Any,
        *,
        dialect: str,
        table: str = "cdr",
        zone: str = "UTC",
        rules: CallRules | None = None,
        dids: Iterable[str] = (),
    ):
        if dialect not in DIALECTS:
            raise ConfigError(f"dialect: {dialect!r} is not one of {', '.join(DIALECTS)}")
        if not _NAME.match(table):
            raise ConfigError(f"table: {table!r} is not a table name (name or schema.name)")
        self.conn = conn
        self.dialect = dialect
        self.table = table
        self.columns = self._columns()
        missing = [c for c in REQUIRED if c not in self.columns]
        if "start" in self.columns:
            self.start_column = "start"
        elif "calldate" in self.columns:
            self.start_column = "calldate"
        else:
            missing.insert(0, "start or calldate")
        if missing:
            raise DataError(f"table {table}: no column {', '.join(missing)}: not a cdr table")
        cols = set(self.columns)
        self.layout = Layout(
            loguniqueid="uniqueid" in cols,
            loguserfield="userfield" in cols,
            newcdrcolumns={"peeraccount", "linkedid", "sequence"} <= cols,
            zone=zone,
        )
        self.reader = RowReader(
            self.layout, rules or CallRules(), source=f"table {table}", dids=dids
        )

    def _columns(self) -> tuple[str, ...]:
        cur = self.conn.cursor()
        try:
            cur.execute(f"SELECT * FROM {_quote(self.dialect, self.table)} WHERE 1 = 0")
            return tuple(d[0].lower() for d in cur.description)
        finally:
            cur.close()

    def select(self) -> str:
        """The query of one window: its two parameters are local naive datetimes."""
        start = _quote(self.dialect, self.start_column)
        cols = ", ".join(_quote(self.dialect, c) for c in self.columns)
        return (
            f"SELECT {cols} FROM {_quote(self.dialect, self.table)} "
            f"WHERE {start} >= %s AND {start} < %s ORDER BY {start}"
        )

    def fetch(self, since: datetime, until: datetime) -> Iterator[CallRecord | Rejected | Skipped]:
        """The rows that started in [since, until) (aware datetimes), read like Master.csv lines."""
        tz = self.layout.tz
        low = (since.astimezone(tz) - _SLACK).replace(tzinfo=None)
        high = (until.astimezone(tz) + _SLACK).replace(tzinfo=None)
        cur = self.conn.cursor()
        try:
            cur.execute(self.select(), (low, high))
            while True:
                batch = cur.fetchmany(FETCH)
                if not batch:
                    break
                for values in batch:
                    row = self.row_text(dict(zip(self.columns, values, strict=True)))
                    try:
                        start = self.layout.parse_time(row["start"])
                    except ValueError:
                        start = None  # record() says why, naming the row
                    if start is not None and not since <= start < until:
                        continue
                    where = f"table {self.table} row of {row['start'] or 'no start'}"
                    if row.get("uniqueid"):
                        where += f" (uniqueid {row['uniqueid']})"
                    text = json.dumps(row, separators=(",", ":"), ensure_ascii=False)
                    yield self.reader.record(row, where, text)
        finally:
            cur.close()

    def row_text(self, values: dict[str, Any]) -> dict[str, str]:
        """A row's values as the texts cdr_csv would write for them (None -> "")."""
        tz = self.layout.tz
        row = {name: _text(value, tz) for name, value in values.items()}
        row["start"] = row.pop(self.start_column) if self.start_column != "start" else row["start"]
        for column in ("start", "answer", "end"):
            if row.get(column, "") in ZERO_TIMES:
                row[column] = ""
            row.setdefault(column, "")
        amaflags = values.get("amaflags")
        if isinstance(amaflags, int):
            row["amaflags"] = AMA_NAMES.get(amaflags, "Unknown")
        for column in self.layout.columns:
            row.setdefault(column, "")
        return row


def _text(value: Any, tz: tzinfo) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        # A `timestamp with time zone` column comes back aware: in the table's zone.
        return (value.astimezone(tz) if value.tzinfo else value).strftime(TIME_FORMAT)
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d 00:00:00")
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        # cdr_pgsql writes duration/billsec into float columns with microseconds:
        # a started second counts, as an integer column's value would (the
        # rater rounds to its increments after).
        return str(math.ceil(value)) if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)
