"""Rating CDRs: statuses (docs/rating.md §6), free minutes, bulk rating and re-rating (§7).

Two ways in:

* `Rater` rates one call at a time from values, with every deck needed held in
  memory. It is built once per run on a session and is what `voipctl pull-cdrs`
  uses to rate calls in the same pass that stores them::

      rater = Rater(session)
      rating = rater.rate_row(service_id, "outbound", "+15195550100", 61, start, answered=True)
      values = rating.columns(rated_at)   # {"status": ..., "cost": units, ...} for a bulk insert

  `Rating` holds money as integer units (what `Money` columns store), so the
  values go straight into a Core/driver bulk insert of `cdrs`. Calls of one
  service must be given in start order for free minutes to be consumed in order.
  `PullRater(store)` wraps this as pull-cdrs' `before_insert` hook.

* `rate_cdrs(store, ...)` is `voipctl rate`: it reads unrated CDRs (status NULL,
  and `no_rate` / `invalid_number` again) in chunks (in start order per service
  where free minutes need it, in table order otherwise), rates them with a
  `Rater`, and writes the results back with one executemany UPDATE per chunk,
  one transaction per chunk. With `rerate=(since, until)` it
  rates every CDR that started in the range again; for CDRs already billed it
  posts a per-CDR reversal of the old cost and a charge of the new one in the
  same transaction, with references `rerate:<cdr_id>:<n>:reversal|charge`.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing import ledger
from voipctl.errors import NotFound
from voipctl.rating import deck
from voipctl.rating.cost import MARKUP_DENOMINATOR, billable_seconds, cost_units, markup_factor
from voipctl.rating.matcher import PrefixMatcher, RateRow
from voipctl.rating.numbers import (
    MAX_DIGITS,
    MIN_DIGITS,
    NumberRules,
    normalize,
    plain_digits_kept,
)
from voipctl.rating.patterns import PatternSet
from voipctl.store.engine import Store, cdrs_through
from voipctl.store.models import PENDING_CDR, Client, Product, Service

log = logging.getLogger(__name__)

# Every status of docs/rating.md §6, in the order in which the first that applies wins.
STATUSES = (
    "suppressed",
    "excluded",
    "internal",
    "invalid_number",
    "unanswered",
    "unmetered",
    "inbound_not_billed",
    "no_rate",
    "rated",
)
# Statuses `voipctl rate` tries again on every run (a new deck may fix them).
RETRY_STATUSES = ("no_rate", "invalid_number")
FAILED_STATUSES = RETRY_STATUSES

# The CDR columns a rating sets, in `Rating` field order (rated_at is added on write).
RATING_COLUMNS = (
    "status",
    "normalized",
    "prefix",
    "description",
    "rate",
    "connect_fee",
    "increment",
    "deck_version_id",
    "rate_source",
    "billable_seconds",
    "free_seconds",
    "cost",
)

CHUNK = 50_000
_FAR_FUTURE = 2**62


class Rating(NamedTuple):
    """The outcome of rating one call; money in integer units (None where unset)."""

    status: str
    normalized: str | None
    prefix: str | None = None
    description: str | None = None
    rate: int | None = None
    connect_fee: int | None = None
    increment: str | None = None
    deck_version_id: int | None = None
    rate_source: str | None = None
    billable_seconds: int | None = 0
    free_seconds: int | None = 0
    cost: int | None = 0

    def columns(self, rated_at: datetime | int, *, decimal_money: bool = False) -> dict[str, Any]:
        """Column -> value for a bulk insert or update of `cdrs`.

        Money is integer units (what the driver stores), or with `decimal_money`
        Decimal (what Core statements on `Money` columns take).
        """
        values = dict(zip(RATING_COLUMNS, self, strict=True))
        values["rated_at"] = rated_at if isinstance(rated_at, int) else int(rated_at.timestamp())
        if decimal_money:
            for name in ("rate", "connect_fee", "cost"):
                if values[name] is not None:
                    values[name] = money.from_units(values[name])
        return values

    @property
    def cost_decimal(self) -> Decimal | None:
        return None if self.cost is None else money.from_units(self.cost)


_new_rating = tuple.__new__
_INVALID = Rating("invalid_number", None, billable_seconds=None, free_seconds=None, cost=None)
_INTERNAL_INVALID = Rating("internal", None)
# Distinct numbers whose classification a product keeps (about 150 bytes each, so
# under 10 MB a product): calls repeat numbers, a million distinct ones start over.
NUMBER_CACHE = 50_000
# "+" and 8-15 digits: the lengths normalize() takes as international as they are.
_INTERNATIONAL_LENGTHS = (MIN_DIGITS, MAX_DIGITS + 1)


def _epoch(value: datetime | int) -> int:
    return value if isinstance(value, int) else int(value.timestamp())


@dataclass
class ProductContext:
    """A product's rating settings, decks and overrides, loaded once per run."""

    product_id: int
    name: str
    metered: bool
    rules: NumberRules
    exclude: PatternSet
    suppress: PatternSet
    decimals: int
    factor: int
    free_seconds: int
    bill_inbound: bool
    increments: dict[str, tuple[int, int]]
    markup_percent: Decimal
    versions: list[deck.VersionInfo]
    matchers: dict[tuple[str, int | None], PrefixMatcher] = field(default_factory=dict)
    overrides: dict[str, list[RateRow]] = field(default_factory=dict)
    current: dict[str, tuple[int, int, PrefixMatcher]] = field(default_factory=dict)
    # Whether there is any exclude or suppress pattern to try (read once per call).
    patterns: bool = field(init=False, default=False)
    # Raw number -> what `classify` made of it: calls to one number are common.
    numbers: dict[str | None, str | Rating] = field(init=False, default_factory=dict)

    # Plain-digit numbers that normalise to themselves: (shortest length, barred starts).
    plain: tuple[int, tuple[str, ...]] = field(init=False, default=(MAX_DIGITS + 1, ()))

    def __post_init__(self) -> None:
        self.patterns = bool(self.exclude.patterns or self.suppress.patterns)
        self.plain = plain_digits_kept(self.rules)

    def classify(self, number: str | None) -> str | Rating:
        """What the number alone decides (docs/rating.md §6, up to `invalid_number`), remembered.

        The normalised number when the call is to be rated further, or the final
        Rating of a suppressed, excluded, internal or invalid number (a call the
        PBX marks local is internal whatever the number, except when suppressed
        or excluded: the caller checks that). Normalisation and patterns depend
        only on the number and the product, so the answer is kept per number.
        """
        norm = normalize(number, self.rules)
        normalized = norm.number
        if self.patterns and self.suppress.match(norm.cleaned, normalized):
            known: str | Rating = Rating("suppressed", normalized)
        elif norm.status == "excluded" or (
            self.patterns and self.exclude.match(norm.cleaned, normalized)
        ):
            known = Rating("excluded", normalized)
        elif norm.status == "internal":
            known = Rating("internal", normalized)
        elif norm.status == "invalid_number":
            known = _INVALID
        else:
            known = normalized
        numbers = self.numbers
        if len(numbers) >= NUMBER_CACHE:
            numbers.clear()  # bounded memory
        numbers[number] = known
        return known

    @classmethod
    def load(cls, session: Session, product: Product) -> ProductContext:
        return cls(
            product_id=product.id,
            name=product.name,
            metered=bool(product.metered),
            rules=NumberRules.from_product(product),
            exclude=PatternSet.parse(product.exclude),
            suppress=PatternSet.parse(product.suppress),
            decimals=product.decimals,
            factor=markup_factor(product.markup_percent or 0),
            free_seconds=(product.free_minutes or 0) * 60,
            bill_inbound=bool(product.bill_inbound),
            increments={
                "outbound": (product.increment_a, product.increment_b),
                "inbound": (product.inbound_increment_a, product.inbound_increment_b),
            },
            markup_percent=product.markup_percent or Decimal(0),
            versions=deck.versions(session, product.id),
        )

    def _rows(self, raw_rows, direction: str, source: str, version_id: int | None, factor: int):
        default_a, default_b = self.increments[direction]
        # One "A/B" text per increment, shared by the rows: a deck has a handful.
        texts: dict[tuple[int, int], str] = {}
        for prefix, description, rate, inc_a, inc_b, fee in raw_rows:
            a, b = inc_a or default_a, inc_b or default_b
            text_ab = texts.get((a, b))
            if text_ab is None:
                text_ab = texts[(a, b)] = f"{a}/{b}"
            yield RateRow(
                prefix,
                description or "",
                int(rate),
                int(fee or 0),
                a,
                b,
                source,
                version_id,
                factor,
                text_ab,
            )

    def matcher(self, session: Session, direction: str, at: int) -> PrefixMatcher:
        """The deck version in force at `at` for `direction`, with the overrides on top."""
        current = self.current.get(direction)
        if current is not None and current[0] <= at < current[1]:
            return current[2]
        version = deck.version_in_force(self.versions, direction, at)
        version_id = version.id if version else None
        key = (direction, version_id)
        found = self.matchers.get(key)
        if found is None:
            if direction not in self.overrides:
                self.overrides[direction] = list(
                    self._rows(
                        deck.override_rows(session, self.product_id, direction),
                        direction,
                        "override",
                        None,
                        MARKUP_DENOMINATOR,
                    )
                )
            rows = ()
            if version_id is not None:
                rows = self._rows(
                    deck.rate_rows(session, version_id, direction),
                    direction,
                    "deck",
                    version_id,
                    self.factor,
                )
            found = PrefixMatcher(rows, self.overrides[direction])
            self.matchers[key] = found
        # Remember for which starts this matcher holds, until the next version of the direction.
        lo = version.effective_from if version else -_FAR_FUTURE
        hi = next(
            (
                v.effective_from
                for v in self.versions
                if direction in v.directions and v.effective_from > at
            ),
            _FAR_FUTURE,
        )
        self.current[direction] = (lo, hi, found)
        return found

    def version_id_at(self, direction: str, at: int) -> int | None:
        version = deck.version_in_force(self.versions, direction, at)
        return version.id if version else None


@dataclass
class ServiceContext:
    product: ProductContext
    tz: ZoneInfo
    client_id: int


class _MonthCache:
    """Calendar month bounds (epoch seconds) of one time zone, remembered between calls."""

    __slots__ = ("hi", "key", "lo", "tz")

    def __init__(self, tz: ZoneInfo):
        self.tz = tz
        self.lo = self.hi = 0
        self.key = ""

    def month(self, ts: int) -> tuple[str, int, int]:
        if not self.lo <= ts < self.hi:
            local = datetime.fromtimestamp(ts, self.tz)
            first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            nxt = first.replace(year=first.year + (first.month == 12), month=first.month % 12 + 1)
            # Month starts are taken in local time, whatever the UTC offset that day.
            self.lo = int(datetime(first.year, first.month, 1, tzinfo=self.tz).timestamp())
            self.hi = int(datetime(nxt.year, nxt.month, 1, tzinfo=self.tz).timestamp())
            self.key = f"{first.year:04d}-{first.month:02d}"
        return self.key, self.lo, self.hi


class Rater:
    """Rates calls from values, with decks held in memory; build once per run.

    `session` is used to load products, services, decks and the free seconds
    already used in a month, each once; rating itself does no I/O.
    `free_exclude=(since, until)` leaves out of the free-minute count the CDRs
    that are being re-rated (those that started in that range).
    """

    def __init__(self, session: Session, *, free_exclude: tuple[int, int] | None = None):
        self.session = session
        self.free_exclude = free_exclude
        self._products: dict[int, ProductContext] = {}
        self._services: dict[int, ServiceContext] = {}
        self._months: dict[str, _MonthCache] = {}
        self._free_used: dict[tuple[int, str], int] = {}

    # --- contexts ---

    def product(self, product_id: int) -> ProductContext:
        ctx = self._products.get(product_id)
        if ctx is None:
            product = self.session.get(Product, product_id)
            if product is None:
                raise NotFound(f"no product with id {product_id}")
            ctx = ProductContext.load(self.session, product)
            self._products[product_id] = ctx
        return ctx

    def service(self, service_id: int) -> ServiceContext:
        ctx = self._services.get(service_id)
        if ctx is None:
            row = self.session.execute(
                select(Service.product_id, Service.client_id, Client.timezone)
                .join(Client, Client.id == Service.client_id)
                .where(Service.id == service_id)
            ).one_or_none()
            if row is None:
                raise NotFound(f"no service with id {service_id}")
            product_id, client_id, tz_name = row
            try:
                tz = ZoneInfo(tz_name or "UTC")
            except (ValueError, OSError):
                log.warning("client %s: time zone %r unknown, using UTC", client_id, tz_name)
                tz = ZoneInfo("UTC")
            ctx = ServiceContext(self.product(product_id), tz, client_id)
            self._services[service_id] = ctx
        return ctx

    # --- free minutes ---

    def free_used(self, service_id: int, tz: ZoneInfo, start: int) -> tuple[tuple[int, str], int]:
        """(key, seconds already used) of the service's month that contains `start`."""
        cache = self._months.get(tz.key)
        if cache is None:
            cache = self._months[tz.key] = _MonthCache(tz)
        month, lo, hi = cache.month(start)
        key = (service_id, month)
        used = self._free_used.get(key)
        if used is None:
            sql = (
                "SELECT COALESCE(SUM(free_seconds), 0) FROM cdrs WHERE service_id = :s "
                "AND start >= :lo AND start < :hi AND status = 'rated'"
            )
            params: dict[str, Any] = {"s": service_id, "lo": lo, "hi": hi}
            if self.free_exclude is not None:
                sql += " AND NOT (start >= :xlo AND start < :xhi)"
                params["xlo"], params["xhi"] = self.free_exclude
            used = int(self.session.execute(text(sql), params).scalar() or 0)
            self._free_used[key] = used
        return key, used

    # --- rating ---

    def rate_row(
        self,
        service_id: int,
        direction: str,
        number: str | None,
        billsec: int,
        start: datetime | int,
        answered: bool = True,
    ) -> Rating:
        """Rate one call of a service; `start` is an aware datetime or epoch seconds.

        Free minutes of the service's month are consumed as a side effect, so
        give the calls of one service in start order, each once.
        """
        ctx = self.service(service_id)
        return self.rate(
            ctx.product, direction, number, billsec, _epoch(start), answered, ctx, service_id
        )

    def rate(
        self,
        product: ProductContext,
        direction: str,
        number: str | None,
        billsec: int,
        start: int,
        answered: bool,
        service: ServiceContext | None = None,
        service_id: int | None = None,
    ) -> Rating:
        """Rate one call of `product` (no free minutes without a service)."""
        if (
            not product.patterns
            and number
            and number[0] == "+"
            and _INTERNATIONAL_LENGTHS[0] < len(number) <= _INTERNATIONAL_LENGTHS[1]
            and number.isascii()
            and number[1:].isdigit()
        ):
            # Already international and no pattern to try: normalize() would only drop
            # the +, and remembering a number costs more than that when calls go to
            # many numbers.
            known: str | Rating = number[1:]
        elif (
            not product.patterns
            and number
            and product.plain[0] <= len(number) <= MAX_DIGITS
            and number.isascii()
            and number.isdigit()
            and not number.startswith(product.plain[1])
        ):
            # Plain digits already in international form (a NANP 1+10 digits, say):
            # normalize() would give them back unchanged (plain_digits_kept).
            known = number
        else:
            known = product.numbers.get(number) or product.classify(number)
        if known.__class__ is str:
            normalized = known
            if direction == "local":
                return Rating("internal", normalized)
        elif direction == "local" and known[0] == "invalid_number":
            return _INTERNAL_INVALID
        else:
            return known  # suppressed, excluded, internal or invalid_number by the number alone
        if not answered or billsec <= 0:
            return Rating("unanswered", normalized)
        if not product.metered:
            return Rating("unmetered", normalized)
        direction = "inbound" if direction == "inbound" else "outbound"
        if direction == "inbound" and not product.bill_inbound:
            return Rating("inbound_not_billed", normalized)
        current = product.current.get(direction)
        if current is not None and current[0] <= start < current[1]:
            matcher = current[2]  # the common case, without a call
        else:
            matcher = product.matcher(self.session, direction, start)
        row = matcher.match(normalized)
        if row is None:
            return Rating(
                "no_rate",
                normalized,
                deck_version_id=product.version_id_at(direction, start),
                billable_seconds=None,
                free_seconds=None,
                cost=None,
            )
        billable = billable_seconds(billsec, row.a, row.b)
        free = 0
        if product.free_seconds and service is not None and service_id is not None:
            key, used = self.free_used(service_id, service.tz, start)
            free = min(max(product.free_seconds - used, 0), billable)
            if free:
                self._free_used[key] = used + free
        cost = cost_units(row.rate, row.connect_fee, billable - free, product.decimals, row.factor)
        # tuple.__new__ skips the generated keyword-handling __new__: this runs once per call.
        return _new_rating(
            Rating,
            (
                "rated",
                normalized,
                row.prefix,
                row.description,
                row.rate,
                row.connect_fee,
                row.increment,
                row.version_id,
                row.source,
                billable,
                free,
                cost,
            ),
        )


# The columns PullRater fills, in the order of the values `PullRater.rate_rows` gives.
PULL_COLUMNS = (*RATING_COLUMNS, "rated_at")
_PULL_UNRATED = (None,) * len(PULL_COLUMNS)
_MONEY_AT = tuple(PULL_COLUMNS.index(name) for name in ("rate", "connect_fee", "cost"))
# What PullRater reads of each call, in this order.
_PULL_READS = ("service_id", "direction", "number", "billsec", "start", "answer", "status")


def _pull_fields(row: dict[str, Any]) -> tuple:
    return tuple(row.get(key) for key in _PULL_READS)


class PullRater:
    """The `before_insert` hook of `voipctl pull-cdrs`: rates calls as they are stored.

        hook = PullRater(store)
        try:
            pull_cdrs(..., before_insert=hook)
        finally:
            hook.close()

    Three ways to use it: `rate_rows(rows)` gives, per row dict, the values of
    `columns` ready for the driver (money in integer units, `rated_at` epoch
    seconds); `rater_for(keys)` gives the same function for rows as tuples of
    `keys` (what pull-cdrs uses: it appends the values to each row's insert
    tuple); calling the hook fills the same columns into each row dict in place,
    money as Decimal (for a Core insert). Three kinds of call are left unrated
    for `voipctl rate`: calls of products with no deck loaded yet (docs/rating.md §5
    rates in the pull "when the product's deck is loaded"), calls of products
    with free minutes (a pull re-reads its overlap, and a duplicate dropped by
    the unique key must not use up free seconds), and calls that come out
    `no_rate` or `invalid_number` (so that `voipctl rate` reports them and exits
    1 once).
    """

    columns = PULL_COLUMNS

    def __init__(self, store: Store):
        self.session = store.session_factory()
        self.rater = Rater(self.session)

    def rate_rows(self, rows: list[dict[str, Any]]) -> list[tuple]:
        """The values of `columns` for each row dict (all None for a row left unrated)."""
        return self.rate_fields(map(_pull_fields, rows))

    def rater_for(self, keys: Sequence[str]) -> Callable[[list[tuple]], list[tuple]]:
        """`rate_rows` for rows given as tuples of the cdrs columns `keys`, in that order."""
        fields = operator.itemgetter(*(keys.index(key) for key in _PULL_READS))
        return lambda rows: self.rate_fields(map(fields, rows))

    def rate_fields(self, calls: Iterable[tuple]) -> list[tuple]:
        """The values of `columns` for each call given as a tuple of `_PULL_READS`.

        A call whose status is already set (by someone else) is left unrated here.
        """
        rated_at = int(datetime.now(UTC).timestamp())
        rater = self.rater
        rate = rater.rate
        contexts = rater._services
        service = rater.service
        failed = FAILED_STATUSES
        unrated = _PULL_UNRATED
        out: list[tuple] = []
        append = out.append
        try:
            for service_id, direction, number, billsec, start, answer, status in calls:
                if status is not None:
                    append(unrated)
                    continue
                ctx = contexts.get(service_id) or service(service_id)
                product = ctx.product
                if product.free_seconds or not product.versions:
                    append(unrated)
                    continue
                rating = rate(
                    product,
                    direction,
                    number,
                    billsec or 0,
                    start if start.__class__ is int else _epoch(start),
                    answer is not None,
                    ctx,
                    service_id,
                )
                append(unrated if rating[0] in failed else (*rating, rated_at))
        finally:
            # Decks stay in memory; the read transaction must not (it would hold the WAL).
            self.session.rollback()
        return out

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        # Every row gets every rating column (None when left unrated): one Core
        # executemany takes the keys of the first row for all of them.
        for row, values in zip(rows, self.rate_rows(rows), strict=True):
            if row.get("status") is None:
                values = list(values)
                for at in _MONEY_AT:
                    if values[at] is not None:
                        values[at] = money.from_units(values[at])
                row.update(zip(PULL_COLUMNS, values, strict=True))

    def close(self) -> None:
        self.session.close()


# --- the bulk job -----------------------------------------------------------------------------

_PENDING = f"({PENDING_CDR})"


@dataclass
class RateReport:
    """What one run of `voipctl rate` did."""

    counts: Counter = field(default_factory=Counter)  # status -> CDRs looked at
    entered: Counter = field(default_factory=Counter)  # no_rate / invalid_number entered now
    changed: int = 0  # CDRs whose stored rating changed
    adjusted: int = 0  # billed CDRs whose charge was corrected on the ledger
    difference: int = 0  # units: what the corrections added to the clients' charges
    rerate: bool = False
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def failures(self) -> int:
        return sum(self.entered.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "cdrs": self.total,
            "counts": {s: self.counts[s] for s in STATUSES if self.counts[s]},
            "entered": {s: self.entered[s] for s in FAILED_STATUSES if self.entered[s]},
            "changed": self.changed,
            "rerate": self.rerate,
            "ledger_adjusted": self.adjusted,
            "ledger_difference": money.fmt(self.difference, 2, units=True),
            "dry_run": self.dry_run,
        }

    def line(self) -> str:
        parts = [f"{s} {self.counts[s]}" for s in STATUSES if self.counts[s]]
        what = "re-rated" if self.rerate else "rated"
        line = f"rate: {self.total} CDRs {what}" + (": " + ", ".join(parts) if parts else "")
        if self.adjusted:
            line += (
                f"; {self.adjusted} billed CDRs corrected on the ledger, charges changed by "
                f"{money.fmt(self.difference, 2, units=True)}"
            )
        if self.dry_run:
            line += " (dry run: nothing written)"
        return line


def _driver(session: Session, sql: str) -> str:
    # Hot statements go straight to the DBAPI cursor: qmark for sqlite3, %s for psycopg.
    return sql.replace("?", "%s") if session.get_bind().dialect.name == "postgresql" else sql


@dataclass(frozen=True)
class _Span:
    """A service with calls to rate: how many, and the first and last start among them."""

    service_id: int
    first: int
    last: int
    count: int


def _services_to_rate(
    session: Session, client_id: int | None, rerate: tuple[int, int] | None
) -> list[_Span]:
    """Every service with CDRs to rate (pending ones, or those of the re-rate window)."""
    params: dict[str, Any] = {}
    table = "cdrs"
    if rerate is None:
        where = _PENDING
        table = cdrs_through(session, "ix_cdrs_pending")
    else:
        where = "start >= :lo AND start < :hi"
        params["lo"], params["hi"] = rerate
    if client_id is not None:
        where += " AND client_id = :c"
        params["c"] = client_id
    sql = (
        f"SELECT service_id, MIN(start), MAX(start), COUNT(*) FROM {table} WHERE {where} "
        "GROUP BY service_id"
    )
    return sorted(
        (
            _Span(int(s), int(lo), int(hi), int(n))
            for s, lo, hi, n in session.execute(text(sql), params)
        ),
        key=lambda span: span.service_id,
    )


def rate_cdrs(
    store: Store,
    *,
    client_id: int | None = None,
    rerate: tuple[datetime, datetime] | None = None,
    dry_run: bool = False,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> RateReport:
    """Rate every unrated CDR (or, with `rerate=(since, until)`, every CDR started in it).

    Calls of services with free minutes are read per service in start order
    (free minutes go to calls in the order they were made); all other calls are
    read in id order, which is the order they lie in the table, so a chunk's
    UPDATE rewrites few pages. A transaction holds up to `chunk` calls: they are
    read (locked FOR UPDATE on PostgreSQL), rated in memory and written back with
    one executemany UPDATE, together with the ledger corrections of billed CDRs.
    With `dry_run` each transaction is rolled back. The caller holds the job lock.
    """
    window = None if rerate is None else (_epoch(rerate[0]), _epoch(rerate[1]))
    report = RateReport(rerate=window is not None, dry_run=dry_run)
    # One connection for the whole run, so its page cache outlives each commit.
    # (Every SQLite connection has a large page cache, voipctl.store.engine: calls of
    # one service lie scattered through the table, and each page is written once.)
    conn = store.engine.connect()
    session = Session(bind=conn, expire_on_commit=False)
    try:
        services = _services_to_rate(session, client_id, window)
        rater = Rater(session, free_exclude=window)
        ordered = [
            span
            for span in services
            if window is not None or rater.service(span.service_id).product.free_seconds
        ]
        session.commit()
        batch = _Batch(session, rater, report, chunk, dry_run, progress)
        if len(ordered) < len(services):
            batch.by_id(client_id, skip={span.service_id for span in ordered})
        if ordered:
            batch.by_time(ordered, window)
        batch.finish()
    finally:
        session.rollback()
        session.close()
        conn.rollback()
        conn.close()
    return report


_ROW_COLUMNS = (
    "id, direction, number, billsec, start, answer, billed_entry_id, rerate_count, client_id, "
    f"service_id, {', '.join(RATING_COLUMNS)}"
)
_OLD = 10  # where the stored rating starts in a selected row
_UNRATED = (None,) * len(RATING_COLUMNS)


class _Batch:
    """Reads, rates and writes CDRs, committing every `chunk` calls."""

    def __init__(self, session, rater, report, chunk, dry_run, progress):
        self.session = session
        self.rater = rater
        self.report = report
        self.chunk = chunk
        self.dry_run = dry_run
        self.progress = progress
        self.pending = 0  # calls rated in the open transaction
        lock = " FOR UPDATE" if session.get_bind().dialect.name == "postgresql" else ""
        self.lock = lock
        self.update_sql = _driver(
            session,
            f"UPDATE cdrs SET {', '.join(c + ' = ?' for c in RATING_COLUMNS)}, rated_at = ? "
            "WHERE id = ?",
        )

    def _cursor(self):
        return self.session.connection().connection.driver_connection.cursor()

    def _rated(self, count: int) -> None:
        self.pending += count
        if self.progress is not None and count:
            self.progress(count)
        if self.pending >= self.chunk:
            self.finish()

    def finish(self) -> None:
        if self.dry_run:
            self.session.rollback()
        else:
            self.session.commit()
        self.pending = 0

    def by_id(self, client_id: int | None, skip: set[int]) -> None:
        """Pending calls in id order, read through ix_cdrs_pending.

        A call that becomes no_rate in this run lies behind the read position, so
        it is not read a second time.
        """
        table = cdrs_through(self.session, "ix_cdrs_pending")
        sql = f"SELECT {_ROW_COLUMNS} FROM {table} WHERE {_PENDING} AND id > ?"
        if client_id is not None:
            sql += f" AND client_id = {int(client_id)}"
        sql = _driver(self.session, sql + " ORDER BY id LIMIT ?" + self.lock)
        last = 0
        while True:
            cursor = self._cursor()
            cursor.execute(sql, (last, self.chunk))
            rows = cursor.fetchall()
            if not rows:
                break
            last = rows[-1][0]
            if skip:
                rows = [row for row in rows if row[9] not in skip]
            self._rate(rows, cursor)
            self._rated(len(rows))

    def by_time(self, spans: list[_Span], window: tuple[int, int] | None) -> None:
        """Calls in start order per service, for free minutes and re-rating.

        Time is cut into slices of about `chunk` calls, and each slice is read
        service by service: the calls of a slice lie close together in the
        table (they were stored in time order), so a transaction rewrites few
        pages, while each service still sees its calls in start order.
        """
        lo = window[0] if window else min(span.first for span in spans)
        hi = window[1] if window else max(span.last for span in spans) + 1
        total = sum(span.count for span in spans)
        step = max(3600, (hi - lo) * self.chunk // max(total, 1))
        cursors = {span.service_id: (lo, -1) for span in spans}
        sql = _driver(
            self.session,
            f"SELECT {_ROW_COLUMNS} FROM cdrs "
            "WHERE service_id = ? AND (start, id) > (?, ?) AND start < ?"
            + ("" if window else f" AND {_PENDING}")
            + " ORDER BY start, id LIMIT ?"
            + self.lock,
        )
        start = lo
        while start < hi:
            until = min(start + step, hi)
            for span in spans:
                if span.first < until and span.last >= start:
                    cursors[span.service_id] = self._service_slice(
                        sql, span.service_id, cursors[span.service_id], until
                    )
            start = until

    def _service_slice(
        self, sql: str, service_id: int, last: tuple[int, int], until: int
    ) -> tuple[int, int]:
        """Rate one service's calls after `last` (start, id) and before `until`."""
        while True:
            # Services with few calls share a transaction: commits cost more than rows.
            limit = self.chunk - self.pending
            cursor = self._cursor()
            cursor.execute(sql, (service_id, last[0], last[1], until, limit))
            rows = cursor.fetchall()
            if rows:
                last = (rows[-1][4], rows[-1][0])
                self._rate(rows, cursor)
            self._rated(len(rows))
            if len(rows) < limit:
                return last

    def _rate(self, rows: list[tuple], cursor: Any) -> None:
        rated_at = int(datetime.now(UTC).timestamp())
        rater = self.rater
        rate = rater.rate
        contexts = rater._services
        service = rater.service
        report = self.report
        counts = report.counts
        updates = []
        corrections = []
        for row in rows:
            service_id = row[9]
            ctx = contexts.get(service_id) or service(service_id)
            new = rate(
                ctx.product,
                row[1],
                row[2],
                row[3] or 0,
                row[4],
                row[5] is not None,
                ctx,
                service_id,
            )
            counts[new[0]] += 1
            if row[_OLD] is None and row[6] is None:  # never rated nor billed: nothing to compare
                old = _UNRATED
            else:
                old = row[_OLD:]
                if new == old:
                    continue
            if new[0] in FAILED_STATUSES and old[0] != new[0]:
                report.entered[new[0]] += 1
            updates.append((*new, rated_at, row[0]))
            if row[6] is not None:
                old_cost = old[11] or 0
                new_cost = new[11] or 0
                if old_cost != new_cost:
                    corrections.append((row, old_cost, new_cost))
        if updates:
            cursor.executemany(self.update_sql, updates)
            report.changed += len(updates)
        for row, old_cost, new_cost in corrections:
            _correct_charge(self.session, row[9], row, old_cost, new_cost, cursor)
            report.adjusted += 1
            report.difference += new_cost - old_cost


def _correct_charge(
    session: Session, service_id: int, row: tuple, old_cost: int, new_cost: int, cursor: Any
) -> None:
    """Reverse what a billed CDR was charged and charge its new cost, in the chunk's transaction.

    References are `rerate:<cdr_id>:<n>:reversal|charge` with n the CDR's re-rate
    count, written in the same transaction: a crash leaves both or neither, and
    a run after a commit sees the new cost and posts nothing.
    """
    cdr_id, billed_entry_id, count, client_id = row[0], row[6], row[7] or 0, row[8]
    n = count + 1
    note = (
        f"re-rating of CDR {cdr_id}: was {money.fmt(old_cost, 2, units=True)}, "
        f"now {money.fmt(new_cost, 2, units=True)}"
    )
    entry_id = billed_entry_id
    if old_cost:
        posted = ledger.post(
            session,
            client_id=client_id,
            kind="reversal",
            amount=money.from_units(old_cost),
            reference=f"rerate:{cdr_id}:{n}:reversal",
            note=note,
            service_id=service_id,
            cdr_count=1,
            reverses_id=billed_entry_id,
        )
        entry_id = posted.entry.id
    if new_cost:
        posted = ledger.post(
            session,
            client_id=client_id,
            kind="charge",
            amount=-money.from_units(new_cost),
            reference=f"rerate:{cdr_id}:{n}:charge",
            note=note,
            service_id=service_id,
            cdr_count=1,
        )
        entry_id = posted.entry.id
    cursor.executemany(
        _driver(session, "UPDATE cdrs SET billed_entry_id = ?, rerate_count = ? WHERE id = ?"),
        [(entry_id, n, cdr_id)],
    )
