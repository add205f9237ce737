"""The rater: from one call's values to its rating (docs/rating.md §6), free minutes included.

`Rater` rates one call at a time from values, with every deck needed held in
memory. It is built once per run on a source of products, decks and free
seconds (`voipctl.rating.load.SessionSource(session)` for the store), and is
what `voipctl pull-cdrs`
(through `voipctl.rating.pull.PullRater`) and `voipctl rate`
(`voipctl.jobs.rate`) use::

    rater = Rater(SessionSource(session))
    rating = rater.rate_row(service_id, "outbound", "+15195550100", 61, start, answered=True)
    values = rating.columns(rated_at)   # {"status": ..., "cost": units, ...} for a bulk insert

`Rating` holds money as integer units (what `Money` columns store), so the
values go straight into a Core/driver bulk insert of `cdrs`. Calls of one
service must be given in start order for free minutes to be consumed in order.
The rater holds no session and runs no SQL: the source is asked for products,
services, decks and the free seconds already used, each once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from zoneinfo import ZoneInfo

from voipctl import money
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

if TYPE_CHECKING:
    from voipctl.store.models import Product

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


def epoch_seconds(value: datetime | int) -> int:
    return value if isinstance(value, int) else int(value.timestamp())


class DeckSource(Protocol):
    """Where a product's deck rows come from: (prefix, description, rate, a, b, fee) tuples."""

    def override_rows(self, product_id: int, direction: str) -> Iterable[tuple]: ...

    def rate_rows(self, version_id: int, direction: str) -> Iterable[tuple]: ...


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
    def from_product(cls, product: Product, versions: list[deck.VersionInfo]) -> ProductContext:
        """The context of `product` (a row already read) with its deck `versions`."""
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
            versions=versions,
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

    def matcher(self, decks: DeckSource, direction: str, at: int) -> PrefixMatcher:
        """The deck version in force at `at` for `direction`, with the overrides on top.

        Rows are asked of `decks` once per version and direction, then held here.
        """
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
                        decks.override_rows(self.product_id, direction),
                        direction,
                        "override",
                        None,
                        MARKUP_DENOMINATOR,
                    )
                )
            rows = ()
            if version_id is not None:
                rows = self._rows(
                    decks.rate_rows(version_id, direction),
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


class Source(DeckSource, Protocol):
    """What a `Rater` asks for, each thing once per run (`voipctl.rating.load` reads a store)."""

    def product(self, product_id: int) -> ProductContext:
        """The product's context; NotFound for an unknown id."""

    def service(self, service_id: int) -> tuple[int, int, ZoneInfo]:
        """(product id, client id, client time zone); NotFound for an unknown id."""

    def free_used(self, service_id: int, lo: int, hi: int) -> int:
        """Free seconds the service's rated calls started in [lo, hi) used already."""


class Rater:
    """Rates calls from values, with decks held in memory; build once per run.

    It holds no session: `source` gives it products, services, decks and the
    free seconds already used in a month, each once, and rating itself does no
    I/O (`voipctl.rating.load.SessionSource` reads them from the store).
    `contexts` maps the service ids loaded so far to their `ServiceContext`:
    callers rating many calls read it first and call `service()` only on a miss
    (a dict lookup per call instead of a method call); only `service()` fills it.
    """

    def __init__(self, source: Source):
        self.source = source
        self._products: dict[int, ProductContext] = {}
        self.contexts: dict[int, ServiceContext] = {}
        self._months: dict[str, _MonthCache] = {}
        self._free_used: dict[tuple[int, str], int] = {}

    # --- contexts ---

    def product(self, product_id: int) -> ProductContext:
        ctx = self._products.get(product_id)
        if ctx is None:
            ctx = self.source.product(product_id)
            self._products[product_id] = ctx
        return ctx

    def service(self, service_id: int) -> ServiceContext:
        ctx = self.contexts.get(service_id)
        if ctx is None:
            product_id, client_id, tz = self.source.service(service_id)
            ctx = ServiceContext(self.product(product_id), tz, client_id)
            self.contexts[service_id] = ctx
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
            used = self.source.free_used(service_id, lo, hi)
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
            ctx.product, direction, number, billsec, epoch_seconds(start), answered, ctx, service_id
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
        elif direction == "local" and known.status == "invalid_number":
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
            matcher = product.matcher(self.source, direction, start)
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
