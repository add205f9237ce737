"""Clients, services and calls for the support tests, written through the ORM."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from voipctl.store.models import Cdr, Client, Product, Service

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_ids = itertools.count(1)


def utc(text: str) -> datetime:
    """`2026-11-01 05:30:00` -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def add_client(session: Session, client_id: int = 42, timezone: str = "UTC") -> Client:
    client = Client(
        id=client_id,
        first_name="Ada",
        last_name="Lovelace",
        email=f"client{client_id}@example.com",
        currency="CAD",
        timezone=timezone,
        created_at=T0,
        updated_at=T0,
    )
    session.add(client)
    session.flush()
    return client


def add_product(session: Session, name: str = "Standard", **settings) -> Product:
    product = Product(name=name, created_at=T0, **settings)
    session.add(product)
    session.flush()
    return product


def add_service(session: Session, client: Client, product: Product, **fields) -> Service:
    service = Service(
        client_id=client.id,
        product_id=product.id,
        server=fields.pop("server", "fusion1"),
        server_type="fusionpbx",
        domain_field=fields.pop("domain_field", f"client{client.id}.pbx.example.com"),
        created_at=T0,
        **fields,
    )
    session.add(service)
    session.flush()
    return service


def add_cdr(session: Session, service: Service, start: datetime, **fields) -> Cdr:
    """One call; rating columns given as fields (status, normalized, prefix, cost, ...)."""
    n = next(_ids)
    number = fields.pop("number", "15195550100")
    defaults = {
        "server": service.server,
        "provider_id": f"call-{n}",
        "direction": "outbound",
        "caller": "5195550000",
        "billsec": 61,
        "raw": json.dumps({"uuid": f"call-{n}", "destination_number": number}),
        "pulled_at": start,
    }
    defaults.update(fields)
    cdr = Cdr(
        service_id=service.id,
        client_id=service.client_id,
        number=number,
        start=start,
        **defaults,
    )
    session.add(cdr)
    session.flush()
    return cdr


def rated(cost: str, *, prefix: str = "1519", billable: int = 66, **more) -> dict:
    """Rating columns of a rated call."""
    fields = {
        "status": "rated",
        "normalized": more.pop("normalized", "15195550100"),
        "prefix": prefix,
        "description": more.pop("description", "Canada - Ontario"),
        "rate": Decimal(more.pop("rate", "0.01")),
        "increment": more.pop("increment", "6/6"),
        "billable_seconds": billable,
        "free_seconds": more.pop("free_seconds", 0),
        "cost": Decimal(cost),
    }
    fields.update(more)
    return fields
