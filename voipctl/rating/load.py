"""What a `Rater` needs, read from the store: products, services, decks, free seconds used."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from voipctl.errors import NotFound
from voipctl.rating import deck
from voipctl.rating.rater import ProductContext
from voipctl.store.models import Client, Product, Service

log = logging.getLogger(__name__)


class SessionSource:
    """A `Rater`'s source on a session (the `Rater` asks each thing once per run).

    `free_exclude=(since, until)` leaves out of the free-minute count the CDRs
    that are being re-rated (those that started in that range).
    """

    def __init__(self, session: Session, *, free_exclude: tuple[int, int] | None = None):
        self.session = session
        self.free_exclude = free_exclude

    def product(self, product_id: int) -> ProductContext:
        product = self.session.get(Product, product_id)
        if product is None:
            raise NotFound(f"no product with id {product_id}")
        return ProductContext.from_product(product, deck.versions(self.session, product.id))

    def service(self, service_id: int) -> tuple[int, int, ZoneInfo]:
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
        return product_id, client_id, tz

    def free_used(self, service_id: int, lo: int, hi: int) -> int:
        sql = (
            "SELECT COALESCE(SUM(free_seconds), 0) FROM cdrs WHERE service_id = :s "
            "AND start >= :lo AND start < :hi AND status = 'rated'"
        )
        params: dict[str, Any] = {"s": service_id, "lo": lo, "hi": hi}
        if self.free_exclude is not None:
            sql += " AND NOT (start >= :xlo AND start < :xhi)"
            params["xlo"], params["xhi"] = self.free_exclude
        return int(self.session.execute(text(sql), params).scalar() or 0)

    def override_rows(self, product_id: int, direction: str) -> Iterable[tuple]:
        return deck.override_rows(self.session, product_id, direction)

    def rate_rows(self, version_id: int, direction: str) -> Iterable[tuple]:
        return deck.rate_rows(self.session, version_id, direction)
