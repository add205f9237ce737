"""Rating in the pull: `PullRater`, the `before_insert` hook of `voipctl pull-cdrs`."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from voipctl import money
from voipctl.rating.load import SessionSource
from voipctl.rating.rater import FAILED_STATUSES, RATING_COLUMNS, Rater, epoch_seconds
from voipctl.store.engine import Store

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
        self.rater = Rater(SessionSource(self.session))

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
        contexts = rater.contexts
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
                    start if start.__class__ is int else epoch_seconds(start),
                    answer is not None,
                    ctx,
                    service_id,
                )
                append(unrated if rating.status in failed else (*rating, rated_at))
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
