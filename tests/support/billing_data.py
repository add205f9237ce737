"""Clients, services, credit and rated calls for the billing job tests, written directly.

Calls go in through Core in bulk (the kill tests need tens of thousands); the
rest through the ORM.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import insert
from sqlalchemy.orm import Session

from voipctl.billing import ledger
from voipctl.store.engine import Store
from voipctl.store.models import Cdr, Client, Invoice, Product, Service

T0 = datetime(2026, 3, 1, tzinfo=UTC)
# Every call starts at its own second: no two test calls look like one call stored twice.
_second = itertools.count()


def add_client(session: Session, client_id: int, **fields) -> Client:
    values = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"client{client_id}@example.com",
        "currency": "CAD",
        "has_voip_service": True,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    client = Client(id=client_id, **values)
    session.add(client)
    session.flush()
    return client


def add_product(session: Session, name: str = "Metered", *, metered: bool = True) -> Product:
    product = Product(name=name, metered=metered, created_at=T0)
    session.add(product)
    session.flush()
    return product


def add_service(session: Session, client_id: int, product_id: int, **fields) -> Service:
    values = {
        "server": "vodia1",
        "server_type": "vodia",
        "domain_field": f"c{client_id}.pbx.example.com | 5195550100",
        "tenant": f"c{client_id}.pbx.example.com",
        "dids": ["5195550100"],
        "extensions": ["8300"],
        "created_at": T0,
    }
    values.update(fields)
    service = Service(client_id=client_id, product_id=product_id, **values)
    session.add(service)
    session.flush()
    return service


def topup(session: Session, client_id: int, amount: str, reference: str) -> None:
    ledger.post(
        session, client_id=client_id, kind="topup", amount=Decimal(amount), reference=reference
    )


def add_invoice(session: Session, client_id: int, amount: str, number: str) -> None:
    session.add(
        Invoice(
            client_id=client_id,
            number=number,
            amount=Decimal(amount),
            due_date=None,
            status="unpaid",
            created_at=T0,
        )
    )
    session.flush()


def call_row(
    service: Service, cost: Decimal, *, status: str = "rated", prefix: str = "call"
) -> dict:
    """One rated call of `service` (starting at a second of its own) as a `cdrs` row."""
    i = next(_second)
    start = T0 + timedelta(seconds=i)
    return {
        "server": service.server,
        "provider_id": f"{prefix}-{service.id}-{i}",
        "service_id": service.id,
        "client_id": service.client_id,
        "direction": "outbound",
        "number": "15195550100",
        "start": start,
        "billsec": 60,
        "pulled_at": start,
        "status": status,
        "cost": cost if status == "rated" else None,
        "billable_seconds": 60,
        "rerate_count": 0,
    }


def add_calls(
    store: Store,
    service: Service,
    costs: list[Decimal],
    *,
    status: str = "rated",
    prefix: str = "call",
) -> None:
    """Rated calls of one service with the given costs, inserted through Core in chunks."""
    rows = [call_row(service, cost, status=status, prefix=prefix) for cost in costs]
    with store.transaction() as session:
        for chunk in range(0, len(rows), 5000):
            session.execute(insert(Cdr), rows[chunk : chunk + 5000])


def random_costs(rng: random.Random, n: int) -> list[Decimal]:
    """Costs with every digit down to the 9th place, so any rounding would show."""
    return [Decimal(rng.randint(0, 5 * 10**8)).scaleb(-9) for _ in range(n)]
