"""Rate decks (docs/rating.md §4): CSV import, versions, custom overrides.

`import_deck` streams the file through the `csv` module and inserts in batches
through the database driver (COPY on PostgreSQL), inside one transaction: any
bad row raises `DataError("FILE:LINE: reason")` and nothing is written, so the
previous version stays in force. Memory stays flat whatever the file size.

Headers are matched case-insensitively, ignoring spaces and underscores, so an
ictVoIP tariff export (`Description,Prefix,RateValue,Increment`) and an ASTPP
export (`Code,Destination,Connection Cost,Grace Time,Cost / Min,Initial
Increment,Increment`) import as they are; unknown columns are named in a
warning and ignored.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.catalog import get_product
from voipctl.errors import DataError, NotFound, UsageError
from voipctl.store.engine import Store
from voipctl.store.models import DeckVersion, Product, RateOverride

DIRECTIONS = ("outbound", "inbound")
MAX_PREFIX = 20
BATCH = 5000
MAX_AMOUNT_UNITS = 9_000_000_000 * money.UNIT

# field -> accepted headers, already in the compared form (lower case, no spaces/underscores)
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "prefix": ("prefix", "code", "dialprefix"),
    "rate": ("rate", "ratevalue", "cost/min", "costperminute", "price"),
    "description": ("description", "destination", "name"),
    "increment": ("increment",),
    "initial_increment": ("initialincrement",),
    "connect_fee": ("connectfee", "connectioncost", "setupfee"),
    "direction": ("direction",),
}
_HEADER_FIELD = {alias: name for name, aliases in HEADER_ALIASES.items() for alias in aliases}

_INSERT_COLUMNS = (
    "version_id",
    "direction",
    "prefix",
    "description",
    "rate",
    "increment_a",
    "increment_b",
    "connect_fee",
)


def header_key(name: str) -> str:
    """A header as compared: lower case, without spaces and underscores."""
    return "".join(ch for ch in name.strip().lower() if ch not in " _\t")


# --- parsing ----------------------------------------------------------------------------------


@dataclass
class DeckRow:
    line: int
    direction: str
    prefix: str
    description: str
    rate: int  # money units
    increment_a: int | None
    increment_b: int | None
    connect_fee: int  # money units


class _RowError(Exception):
    pass


# An increment longer than 31 days (the longest call voipctl rates) is a typo.
MAX_INCREMENT_S = 31 * 86400


def _positive_int(value: str, what: str) -> int:
    # ASCII digits only: int() would take "6_0", "+6" and other scripts' digits
    if not (value.isascii() and value.strip().isdigit()):
        raise _RowError(f"{what} {value!r} is not a whole number of seconds")
    number = int(value)
    if number < 1:
        raise _RowError(f"{what} {value!r} must be at least 1")
    if number > MAX_INCREMENT_S:
        raise _RowError(f"{what} {value!r} is more than {MAX_INCREMENT_S} seconds (31 days)")
    return number


def parse_increment(value: str, initial: str | None = None) -> tuple[int | None, int | None]:
    """`6` -> (6, 6); `30/6` -> (30, 6); with an initial-increment column, (initial, increment).

    An empty cell means the product's default; an initial increment of 0 (ASTPP's
    "none") means the call is billed in steps of the increment from the start.
    """
    value = value.strip()
    if initial is not None:
        initial = initial.strip()
        b = _positive_int(value, "increment") if value else None
        a = None
        if initial and initial != "0":
            a = _positive_int(initial, "initial increment")
        if a is None and b is None:
            return None, None
        return (a or b), (b or a)
    if not value:
        return None, None
    parts = value.split("/")
    if len(parts) == 1:
        step = _positive_int(parts[0], "increment")
        return step, step
    if len(parts) == 2:
        return _positive_int(parts[0], "increment"), _positive_int(parts[1], "increment")
    raise _RowError(f"increment {value!r} is not like 60/6 or 6")


def _amount(value: str, what: str, *, empty_zero: bool = False) -> int:
    value = value.strip()
    if not value:
        if empty_zero:
            return 0
        raise _RowError(f"no {what}")
    try:
        units = money.to_units(value)
    except money.MoneyError:
        raise _RowError(f"{what} {value!r} is not a number with at most 9 decimals") from None
    if units < 0:
        raise _RowError(f"{what} {value!r} is negative")
    if units >= MAX_AMOUNT_UNITS:
        raise _RowError(f"{what} {value!r} is too large")
    return units


def _prefix(value: str) -> str:
    prefix = value.strip()
    # ASTPP keeps codes as patterns (^1519.*); a leading + is an international marker.
    if prefix.startswith("^"):
        prefix = prefix[1:]
    if prefix.endswith(".*"):
        prefix = prefix[:-2]
    prefix = prefix.lstrip("+")
    if not prefix:
        raise _RowError("no prefix")
    if not (prefix.isascii() and prefix.isdigit()) or len(prefix) > MAX_PREFIX:
        raise _RowError(f"prefix {value.strip()!r} is not 1 to {MAX_PREFIX} digits")
    return prefix


def _first_non_utf8_line(path: Path) -> int | None:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


class DeckReader:
    """Streams a deck CSV as DeckRows; errors name `FILE:LINE` (physical lines, header = 1)."""

    def __init__(self, path: str | Path, *, label: str | None = None):
        self.path = Path(path)
        self.label = label or str(path)
        self.unknown_columns: list[str] = []

    def _fail(self, line: int, reason: str) -> DataError:
        return DataError(f"{self.label}:{line}: {reason}")

    def rows(self) -> Iterator[DeckRow]:
        try:
            handle = open(self.path, encoding="utf-8-sig", newline="")  # noqa: SIM115
        except OSError as exc:
            raise DataError(f"{self.label}: cannot read: {exc.strerror}") from None
        with handle:
            # strict: a quote left open is an error, not every later row in one cell
            reader = csv.reader(handle, strict=True)
            self._row_start = 1
            try:
                yield from self._rows(reader)
            except UnicodeDecodeError:
                # The text layer decodes ahead of the csv reader: find the line itself.
                line = _first_non_utf8_line(self.path) or reader.line_num + 1
                raise self._fail(line, "not UTF-8 text (save the file as UTF-8)") from None
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    raise self._fail(
                        self._row_start, "a quote opened on this line is never closed"
                    ) from None
                raise self._fail(reader.line_num, f"bad CSV: {exc}") from None

    def _columns(self, header: list[str]) -> dict[str, int]:
        columns: dict[str, int] = {}
        self.unknown_columns = []
        for index, name in enumerate(header):
            key = header_key(name)
            if not key:
                continue
            field_name = _HEADER_FIELD.get(key)
            if field_name is None:
                self.unknown_columns.append(name.strip())
                continue
            if field_name in columns:
                first = header[columns[field_name]].strip()
                raise self._fail(
                    1, f"columns {first!r} and {name.strip()!r} both give the {field_name}"
                )
            columns[field_name] = index
        for required in ("prefix", "rate"):
            if required not in columns:
                accepted = ", ".join(HEADER_ALIASES[required])
                raise self._fail(1, f"no {required} column (accepted headers: {accepted})")
        return columns

    def _rows(self, reader: Any) -> Iterator[DeckRow]:
        header = next(reader, None)
        if header is None:
            raise self._fail(1, "the file is empty (expected a header row)")
        columns = self._columns(header)
        width = len(header)
        c_prefix = columns["prefix"]
        c_rate = columns["rate"]
        c_desc = columns.get("description")
        c_inc = columns.get("increment")
        c_init = columns.get("initial_increment")
        c_fee = columns.get("connect_fee")
        c_dir = columns.get("direction")
        # Real decks repeat a few hundred distinct rates over many prefixes: parse each once.
        rates: dict[str, int] = {}

        def rate_units(text: str) -> int:
            units = rates.get(text)
            if units is None:
                units = _amount(text, "rate")
                if len(rates) < 10_000:
                    rates[text] = units
            return units

        last_line = reader.line_num
        for cells in reader:
            line = last_line + 1  # a quoted field may span lines: report where the row starts
            last_line = reader.line_num
            self._row_start = last_line + 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) != width:
                raise self._fail(line, f"{len(cells)} fields, the header has {width}")
            try:
                direction = "outbound"
                if c_dir is not None and cells[c_dir].strip():
                    direction = cells[c_dir].strip().lower()
                    if direction not in DIRECTIONS:
                        raise _RowError(
                            f"direction {cells[c_dir].strip()!r} is not outbound or inbound"
                        )
                description = cells[c_desc].strip() if c_desc is not None else ""
                if "\x00" in description:
                    # PostgreSQL text cannot hold NUL and SQLite can: refused on both,
                    # so one deck imports alike everywhere (docs/rating.md).
                    raise _RowError("a NUL character in the description: remove it")
                a, b = None, None
                if c_inc is not None or c_init is not None:
                    a, b = parse_increment(
                        cells[c_inc] if c_inc is not None else "",
                        cells[c_init] if c_init is not None else None,
                    )
                yield DeckRow(
                    line=line,
                    direction=direction,
                    prefix=_prefix(cells[c_prefix]),
                    description=description,
                    rate=rate_units(cells[c_rate]),
                    increment_a=a,
                    increment_b=b,
                    connect_fee=(
                        _amount(cells[c_fee], "connect fee", empty_zero=True)
                        if c_fee is not None
                        else 0
                    ),
                )
            except _RowError as exc:
                raise self._fail(line, str(exc)) from None


# --- import -----------------------------------------------------------------------------------


@dataclass
class ImportResult:
    version_id: int | None
    product: str
    effective_from: datetime
    rows: dict[str, int] = field(default_factory=dict)  # per direction
    unknown_columns: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def directions(self) -> list[str]:
        return [d for d in DIRECTIONS if self.rows.get(d)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.version_id,
            "product": self.product,
            "effective_from": self.effective_from,
            "directions": self.directions,
            "rows": sum(self.rows.values()),
            "rows_by_direction": dict(self.rows),
            "unknown_columns": self.unknown_columns,
            "dry_run": self.dry_run,
        }


def _driver_sql(session: Session, sql: str) -> str:
    # Statements below go straight to the DBAPI cursor: qmark for sqlite3, %s for psycopg.
    if session.get_bind().dialect.name == "postgresql":
        return sql.replace("?", "%s")
    return sql


def _values(version_id: int, row: DeckRow) -> tuple:
    # In the order of _INSERT_COLUMNS.
    return (
        version_id,
        row.direction,
        row.prefix,
        row.description,
        row.rate,
        row.increment_a,
        row.increment_b,
        row.connect_fee,
    )


# Called with the number of rows just written, for a progress display.
Progress = Callable[[int], None]


def _insert_batches(
    session: Session, version_id: int, rows: Iterator[DeckRow], progress: Progress | None = None
) -> dict[str, int]:
    counts: dict[str, int] = {}
    done = 0
    dbapi_conn = session.connection().connection.driver_connection
    cursor = dbapi_conn.cursor()
    is_pg = session.get_bind().dialect.name == "postgresql"
    columns = ", ".join(_INSERT_COLUMNS)
    if is_pg:
        with cursor.copy(f"COPY rates ({columns}) FROM STDIN") as copy:
            for row in rows:
                counts[row.direction] = counts.get(row.direction, 0) + 1
                copy.write_row(_values(version_id, row))
                done += 1
                if progress is not None and done % BATCH == 0:
                    progress(BATCH)
        if progress is not None and done % BATCH:
            progress(done % BATCH)
        return counts
    sql = f"INSERT INTO rates ({columns}) VALUES ({', '.join('?' * len(_INSERT_COLUMNS))})"
    batch: list[tuple] = []
    for row in rows:
        counts[row.direction] = counts.get(row.direction, 0) + 1
        batch.append(_values(version_id, row))
        if len(batch) >= BATCH:
            cursor.executemany(sql, batch)
            if progress is not None:
                progress(len(batch))
            batch.clear()
    if batch:
        cursor.executemany(sql, batch)
        if progress is not None:
            progress(len(batch))
    return counts


def _find_duplicate(reader: DeckReader) -> DataError | None:
    # Only on the error path: the database's unique key caught a duplicate, and
    # this second pass names its line. The happy path keeps no per-row state.
    seen: dict[tuple[str, str], int] = {}
    for row in reader.rows():
        key = (row.direction, row.prefix)
        if key in seen:
            return DataError(
                f"{reader.label}:{row.line}: prefix {row.prefix} ({row.direction}) "
                f"is already on line {seen[key]}"
            )
        seen[key] = row.line
    return None


def import_deck(
    session: Session,
    product: Product,
    path: str | Path,
    *,
    effective_from: datetime | None = None,
    label: str | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import a deck CSV as a new version of `product`'s rates, in the caller's transaction.

    On any bad row it raises DataError naming `FILE:LINE`; the caller's rollback
    then leaves the previous version in force.
    """
    effective_from = effective_from or datetime.now(UTC)
    reader = DeckReader(path, label=label)
    version = DeckVersion(
        product_id=product.id,
        effective_from=effective_from,
        directions="",
        source=os.path.basename(str(path)),
        row_count=0,
        imported_at=datetime.now(UTC),
    )
    session.add(version)
    session.flush()
    dbapi = session.get_bind().dialect.dbapi
    try:
        counts = _insert_batches(session, version.id, reader.rows(), progress)
    except dbapi.IntegrityError:
        duplicate = _find_duplicate(reader)
        raise duplicate or DataError(f"{reader.label}: duplicate prefixes") from None
    if not counts:
        raise DataError(f"{reader.label}:1: no rate rows after the header")
    version.directions = ",".join(d for d in DIRECTIONS if counts.get(d))
    version.row_count = sum(counts.values())
    session.flush()
    result = ImportResult(
        version_id=version.id,
        product=product.name,
        effective_from=effective_from,
        rows=counts,
        unknown_columns=list(reader.unknown_columns),
    )
    return result


def import_deck_file(
    store: Store,
    product_name: str,
    path: str | Path,
    *,
    effective_from: datetime | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportResult:
    """`voipctl rates import`: one transaction, committed only when every row is good.

    A dry run checks and inserts everything the same way, then rolls back.
    `progress` is called with each batch's row count as it is written.
    """
    with store.session_factory() as session:
        try:
            product = get_product(session, product_name)
            result = import_deck(
                session, product, path, effective_from=effective_from, progress=progress
            )
        except BaseException:
            session.rollback()
            raise
        if dry_run:
            session.rollback()
            result.version_id = None
            result.dry_run = True
        else:
            session.commit()
    return result


# --- versions and overrides -------------------------------------------------------------------


@dataclass(frozen=True)
class VersionInfo:
    id: int
    effective_from: int  # epoch seconds
    directions: tuple[str, ...]


def versions(session: Session, product_id: int) -> list[VersionInfo]:
    """A product's deck versions, oldest first (same instant: the later import is newer)."""
    result = session.execute(
        text(
            "SELECT id, effective_from, directions FROM deck_versions "
            "WHERE product_id = :p ORDER BY effective_from, id"
        ),
        {"p": product_id},
    )
    return [
        VersionInfo(vid, int(eff), tuple(d for d in (dirs or "").split(",") if d))
        for vid, eff, dirs in result
    ]


def version_in_force(infos: list[VersionInfo], direction: str, at: int) -> VersionInfo | None:
    """The newest version carrying `direction` whose effective_from is at or before `at`."""
    found = None
    for info in infos:
        if info.effective_from > at:
            break
        if direction in info.directions:
            found = info
    return found


def rate_rows(session: Session, version_id: int, direction: str) -> Iterator[tuple]:
    """(prefix, description, rate units, increment_a, increment_b, connect_fee units) rows."""
    result = session.execute(
        text(
            "SELECT prefix, description, rate, increment_a, increment_b, connect_fee "
            "FROM rates WHERE version_id = :v AND direction = :d"
        ),
        {"v": version_id, "d": direction},
    )
    yield from result


def override_rows(session: Session, product_id: int, direction: str) -> list[tuple]:
    """The product's overrides of one direction, in the shape of `rate_rows`."""
    result = session.execute(
        text(
            "SELECT prefix, description, rate, increment_a, increment_b, connect_fee "
            "FROM rate_overrides WHERE product_id = :p AND direction = :d"
        ),
        {"p": product_id, "d": direction},
    )
    return [tuple(row) for row in result]


def set_override(
    session: Session,
    product: Product,
    prefix: str,
    rate: Decimal,
    *,
    direction: str = "outbound",
    increment: tuple[int, int] | None = None,
    connect_fee: Decimal = Decimal(0),
    description: str = "",
) -> RateOverride:
    """Create or replace the override of `prefix` for one direction of `product`."""
    try:
        prefix = _prefix(prefix)
    except _RowError as exc:
        raise UsageError(str(exc)) from None
    if direction not in DIRECTIONS:
        raise UsageError(f"direction {direction!r} is not outbound or inbound")
    if rate < 0 or connect_fee < 0:
        raise UsageError("an override rate and connect fee must not be negative")
    row = session.scalar(
        select(RateOverride).where(
            RateOverride.product_id == product.id,
            RateOverride.direction == direction,
            RateOverride.prefix == prefix,
        )
    )
    if row is None:
        row = RateOverride(product_id=product.id, direction=direction, prefix=prefix)
        session.add(row)
    row.rate = rate
    row.increment_a, row.increment_b = increment if increment else (None, None)
    row.connect_fee = connect_fee
    row.description = description
    row.created_at = datetime.now(UTC)
    session.flush()
    return row


def remove_override(session: Session, product: Product, prefix: str, direction: str) -> int:
    """Remove an override and return its id; NotFound when there is none."""
    row = session.scalar(
        select(RateOverride).where(
            RateOverride.product_id == product.id,
            RateOverride.direction == direction,
            RateOverride.prefix == prefix.strip().lstrip("+"),
        )
    )
    if row is None:
        raise NotFound(f"product {product.name!r} has no {direction} override for prefix {prefix}")
    session.delete(row)
    session.flush()
    return row.id
