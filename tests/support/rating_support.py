"""Builders for the rating tests: products, clients, services and CDRs written directly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from pathlib import Path

from sqlalchemy import insert, select

from tests.support.support_data import add_client, add_product, add_service
from voipctl.store.models import Cdr, Client, Product

NOW = datetime(2026, 1, 1, tzinfo=UTC)
_ids = count(1)

# The deck of docs/rating.md §5's worked examples.
SPEC_DECK = """prefix,rate,increment,connect fee
1,0.02,60/6,0
1519,0.01,6/6,0
44,0.05,1/1,0.10
4420,0.03,30/6,0
49,0.06,90/60,0
"""

UK = {
    "country_code": "44",
    "exit_code": "00",
    "national_prefix": "0",
    "prepend_country_code": True,
    "nanp_10_digit": False,
}


def make_product(session, name: str = "R", **settings) -> Product:
    return add_product(session, name, **settings)


def setup_account(store, *, product: str = "R", client_id: int = 42, timezone="UTC", **settings):
    """A product, a client and one service; returns (product_id, service_id)."""
    with store.transaction() as session:
        prod = session.scalar(select(Product).where(Product.name == product))
        if prod is None:
            prod = make_product(session, product, **settings)
        client = session.get(Client, client_id) or add_client(session, client_id, timezone)
        service = add_service(session, client, prod, domain_field=f"d{next(_ids)}.example.com")
        return prod.id, service.id


def add_cdrs(store, service_id: int, client_id: int, calls) -> list[int]:
    """Insert CDRs: each call is (number, billsec, start[, direction[, answered]])."""
    rows = []
    for call in calls:
        number, billsec, start = call[:3]
        direction = call[3] if len(call) > 3 else "outbound"
        answered = call[4] if len(call) > 4 else billsec > 0
        rows.append(
            {
                "server": "fusion1",
                "provider_id": f"p{next(_ids)}",
                "service_id": service_id,
                "client_id": client_id,
                "direction": direction,
                "number": number,
                "start": start,
                "answer": start if answered else None,
                "billsec": billsec,
                "pulled_at": NOW,
            }
        )
    with store.transaction() as session:
        result = session.execute(insert(Cdr).returning(Cdr.id), rows)
        ids = [r[0] for r in result]
    return sorted(ids)


def cdrs(store, ids=None) -> list[Cdr]:
    with store.transaction() as session:
        query = select(Cdr).order_by(Cdr.start, Cdr.id)
        if ids is not None:
            query = query.where(Cdr.id.in_(ids))
        return list(session.scalars(query))


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def d(text: str) -> Decimal:
    return Decimal(text)
