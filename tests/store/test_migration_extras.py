"""0007_extras on a database made at 0001 with services of every type: nothing lost.

Built with alembic at revision 0001, filled through the 0001 tables, upgraded to
head, then read back through the ORM (and downgraded, then read back again).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import BACKEND
from voipctl.store import open_store
from voipctl.store.migrate import alembic_config, current_revision, head_revision, upgrade
from voipctl.store.models import Service

EXTRA_COLUMNS = ("gateway_uuid", "trunk_id", "first_name", "inbound_search", "cdr_link")
GATEWAY = "2f0a9e3c-5d1b-4c4e-9a57-0b7c8d1e2f30"
LINK = "https://portal.les.test/cdr/11330_0000.txt?token=abc"
SERVICES = [
    {
        "id": 1,
        "server": "fusion1",
        "server_type": "fusionpbx",
        "domain_field": "mcon.wat7.ictvoip.ca | 5192229000",
        "billed_field": "2112 | 2113",
        "tenant": "mcon.wat7.ictvoip.ca",
        "peer_id": None,
        "main_did": "5192229000",
        "dids": ["5192229000"],
        "extensions": ["2112", "2113"],
        "gateway_uuid": GATEWAY,
        "trunk_id": None,
        "first_name": None,
        "inbound_search": None,
        "cdr_link": None,
        "suspended": True,
    },
    {
        "id": 2,
        "server": "vodia1",
        "server_type": "vodia",
        "domain_field": "rucken.wat1.ictvoip.ca | 5484815577 | 5197830020",
        "billed_field": "8300",
        "tenant": "rucken.wat1.ictvoip.ca",
        "peer_id": None,
        "main_did": "5484815577",
        "dids": ["5484815577", "5197830020"],
        "extensions": ["8300"],
        "gateway_uuid": None,
        "trunk_id": "7",
        "first_name": "Ada",
        "inbound_search": "5197830020",
        "cdr_link": None,
        "suspended": False,
    },
    {
        "id": 3,
        "server": "lesnet",
        "server_type": "lesnet",
        "domain_field": "D4E3CD2BFC791 | 12046664021",
        "billed_field": "",
        "tenant": None,
        "peer_id": "D4E3CD2BFC791",
        "main_did": "12046664021",
        "dids": ["12046664021"],
        "extensions": ["12046664021"],
        "gateway_uuid": None,
        "trunk_id": None,
        "first_name": None,
        "inbound_search": None,
        "cdr_link": LINK,
        "suspended": False,
    },
    {
        # A Vodia service with none of its extras set: `extras` is an empty table.
        "id": 4,
        "server": "vodia1",
        "server_type": "vodia",
        "domain_field": "other.wat1.ictvoip.ca | 5484815500",
        "billed_field": "",
        "tenant": "other.wat1.ictvoip.ca",
        "peer_id": None,
        "main_did": "5484815500",
        "dids": ["5484815500"],
        "extensions": [],
        "gateway_uuid": None,
        "trunk_id": None,
        "first_name": None,
        "inbound_search": None,
        "cdr_link": None,
        "suspended": False,
    },
]
EXPECTED_EXTRAS = {
    1: {"gateway_uuid": GATEWAY},
    2: {"first_name": "Ada", "inbound_search": "5197830020", "trunk_id": "7"},
    3: {"cdr_link": LINK},
    4: {},
}


def _filler(column: sa.Column):
    """A value for a NOT NULL column the test does not care about."""
    if isinstance(column.type, sa.Boolean):
        return False
    if isinstance(column.type, sa.Integer):
        return 0
    if isinstance(column.type, sa.JSON):
        return []
    length = getattr(column.type, "length", None) or 10
    return "x"[:length]


def _row(table: sa.Table, **given) -> dict:
    row = {c.name: _filler(c) for c in table.columns if not c.nullable and c.name not in given}
    return {**row, **given}


@pytest.fixture
def old_store(tmp_path, request):
    """A store migrated to 0001 only, holding one client, one product and SERVICES."""
    if BACKEND == "sqlite":
        url = f"sqlite:///{tmp_path / 'at-0001.db'}"
    else:
        url = request.getfixturevalue("pg_server").create("m")
    store = open_store(url)
    command.upgrade(alembic_config(store), "0001")
    assert current_revision(store) == "0001"
    meta = sa.MetaData()
    with store.engine.begin() as conn:
        clients, products, services = (
            sa.Table(name, meta, autoload_with=conn) for name in ("clients", "products", "services")
        )
        conn.execute(sa.insert(clients), [_row(clients, id=42, currency="CAD")])
        conn.execute(sa.insert(products), [_row(products, id=1, name="std")])
        conn.execute(
            sa.insert(services),
            [_row(services, client_id=42, product_id=1, active=True, **s) for s in SERVICES],
        )
    yield store
    store.dispose()


def _as_read(service: Service) -> dict:
    return {key: getattr(service, key) for key in SERVICES[0]}


def test_upgrade_from_0001_keeps_every_service_field(old_store):
    assert upgrade(old_store) == ("0001", head_revision())
    columns = {c["name"] for c in sa.inspect(old_store.engine).get_columns("services")}
    assert "extras" in columns
    assert not columns & set(EXTRA_COLUMNS)
    with Session(old_store.engine) as session:
        services = list(session.scalars(select(Service).order_by(Service.id)))
        assert [_as_read(s) for s in services] == SERVICES
        assert {s.id: s.extras for s in services} == EXPECTED_EXTRAS


def test_downgrade_puts_the_columns_back(old_store):
    upgrade(old_store)
    command.downgrade(alembic_config(old_store), "0003_rejected")
    with old_store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT id, {', '.join(EXTRA_COLUMNS)} FROM services ORDER BY id")
        ).all()
    assert [tuple(r) for r in rows] == [(s["id"], *(s[c] for c in EXTRA_COLUMNS)) for s in SERVICES]


def test_extras_are_checked_when_written():
    with pytest.raises(ValueError, match=r"^unknown service extra\(s\) colour$"):
        Service(extras={"colour": "red"})
    with pytest.raises(ValueError, match=r"^service extra trunk_id: text expected, not int$"):
        Service(trunk_id=7)
    service = Service(trunk_id="7", cdr_link=None)
    assert service.extras == {"trunk_id": "7"}
    service.trunk_id = None
    assert service.extras == {}
    assert service.gateway_uuid is None
