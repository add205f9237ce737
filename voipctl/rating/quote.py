"""What support and operators ask of a deck: a quote, the rates in force, the versions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.rating import deck
from voipctl.rating.load import SessionSource
from voipctl.rating.rater import FAILED_STATUSES, ProductContext, Rater
from voipctl.store.models import Product


def quote(
    session: Session,
    product: Product,
    number: str,
    seconds: int,
    *,
    direction: str = "outbound",
    at: datetime,
) -> dict[str, Any]:
    """`rates quote`: the JSON document of docs/cli.md for a call of `seconds` to `number`.

    Rated exactly as `voipctl rate` would at `at`, except that no free minutes
    apply (a quote has no service and no month).
    """
    rater = Rater(SessionSource(session))
    ctx = rater.product(product.id)
    rating = rater.rate(ctx, direction, number, seconds, int(at.timestamp()), seconds > 0)
    cost = None
    # A call that could not be rated has no cost to quote (null), unlike a free one (0).
    if rating.status not in FAILED_STATUSES:
        cost = money.fmt(rating.cost or 0, product.decimals, units=True)
    return {
        "number": number,
        "normalized": rating.normalized,
        "status": rating.status,
        "prefix": rating.prefix,
        "description": rating.description,
        "rate": None if rating.rate is None else money.fmt(rating.rate, 2, units=True),
        "increment": rating.increment,
        "billable_seconds": rating.billable_seconds,
        "cost": cost,
    }


def rates_in_force(
    session: Session, product: Product, at: datetime, *, prefix: str | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of both directions in force at `at`: the deck version's rows and the overrides.

    On the same prefix the override is shown (it is what rating uses).
    """
    decks = SessionSource(session)
    ctx = ProductContext.from_product(product, deck.versions(session, product.id))
    wanted = (prefix or "").strip().lstrip("+")
    epoch = int(at.timestamp())
    for direction in deck.DIRECTIONS:
        matcher = ctx.matcher(decks, direction, epoch)
        for row in matcher.rows():
            if wanted and not row.prefix.startswith(wanted):
                continue
            yield {
                "direction": direction,
                "prefix": row.prefix,
                "description": row.description,
                "rate": money.fmt(row.rate, 2, units=True),
                "increment": row.increment,
                "connect_fee": money.fmt(row.connect_fee, 2, units=True),
                "source": row.source,
                "version": row.version_id,
            }


def version_rows(session: Session, product: Product, now: datetime) -> list[dict[str, Any]]:
    """Every deck version of `product`, newest first, with the directions it has in force now."""
    infos = deck.versions(session, product.id)
    epoch = int(now.timestamp())
    in_force: dict[int, list[str]] = {}
    for direction in deck.DIRECTIONS:
        current = deck.version_in_force(infos, direction, epoch)
        if current is not None:
            in_force.setdefault(current.id, []).append(direction)
    result = session.execute(
        text(
            "SELECT id, effective_from, directions, row_count, source, imported_at "
            "FROM deck_versions WHERE product_id = :p ORDER BY effective_from DESC, id DESC"
        ),
        {"p": product.id},
    )
    rows = []
    for vid, eff, dirs, count, source, imported in result:
        rows.append(
            {
                "id": vid,
                "effective_from": datetime.fromtimestamp(eff, now.tzinfo),
                "directions": dirs,
                "rows": count,
                "in_force": ",".join(in_force.get(vid, [])) or "no",
                "source": source,
                "imported_at": datetime.fromtimestamp(imported, now.tzinfo),
            }
        )
    return rows
