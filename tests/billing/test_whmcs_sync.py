"""`voipctl whmcs sync` against the fake WHMCS: import, idempotence, dry run, updates, errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.fakes.whmcs_env import write_config
from voipctl import catalog
from voipctl.billing.whmcs import WhmcsBackend
from voipctl.config import load_config
from voipctl.store.models import Client, Service


@pytest.fixture
def seeded(store, whmcs):
    with store.transaction() as session:
        catalog.add_product(session, "VoIP Basic")
        catalog.add_product(session, "SIP Trunk")
    whmcs.add_client(
        42,
        credit="20.00",
        firstname="Ann",
        lastname="Lee",
        companyname="Acme",
        email="ann@acme.example",
        custom={
            "Has VoIP Service": "on",
            "Low Balance Threshold": "5.00",
            "VoIP Suspended": "",
            "Manual VoIP Suspend": "",
            "Credit Limit": "",
            "Time Zone": "America/Toronto",
        },
    )
    whmcs.add_client(43, custom={"Has VoIP Service": "on", "Low Balance Threshold": ""})
    whmcs.add_client(44)  # no VoIP service: not imported
    whmcs.add_service(
        42,
        "VoIP Basic",
        "vodia1",
        **{"Tenant / DIDs": "acme.example.com | 5195550100", "Extensions": "8300"},
    )
    whmcs.add_service(44, "Web Hosting", "web1", **{"Tenant / DIDs": "x"})
    whmcs.add_service(
        43,
        "SIP Trunk",
        "les1",
        **{"Tenant / DIDs": "D4E3CD2BFC791 | 12046664021", "CDR Link": "https://les/cdr/1"},
    )
    return whmcs


def _changes(cli, whmcs_config) -> list[dict]:
    r = cli("whmcs", "sync", "--dry-run", "--format", "json", config=whmcs_config)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_dry_run_shows_the_import_and_writes_nothing(cli, whmcs_config, seeded, store):
    changes = _changes(cli, whmcs_config)
    assert {(c["kind"], c["key"], c["action"]) for c in changes} == {
        ("client", "42", "add"),
        ("client", "43", "add"),
        ("service", "42/501", "add"),
        ("service", "43/503", "add"),
    }
    assert {"kind": "client", "key": "42", "action": "add", "field": "low_balance_threshold",
            "old": "", "new": "5.00"} in changes  # fmt: skip
    with store.transaction() as session:
        assert session.scalar(select(Client.id)) is None


def test_sync_imports_clients_fields_and_voip_services_idempotently(
    cli, whmcs_config, seeded, store
):
    r = cli("-v", "whmcs", "sync", config=whmcs_config)
    assert r.exit_code == 0, r.output
    assert "2 clients, 2 VoIP services" in r.stdout
    with store.transaction() as session:
        ann = session.get(Client, 42)
        assert (ann.first_name, ann.last_name, ann.company, ann.email, ann.currency) == (
            "Ann",
            "Lee",
            "Acme",
            "ann@acme.example",
            "CAD",
        )
        assert ann.has_voip_service is True
        assert ann.low_balance_threshold == Decimal("5.00")
        assert ann.voip_suspended == "none" and ann.manual_voip_suspend is False
        assert ann.credit_limit == 0 and ann.timezone == "America/Toronto"
        assert session.get(Client, 43).low_balance_threshold is None
        assert session.get(Client, 44) is None
        services = {s.client_id: s for s in session.scalars(select(Service))}
        assert services[42].server == "vodia1" and services[42].tenant == "acme.example.com"
        assert services[42].extensions == ["8300"]
        assert services[43].peer_id == "D4E3CD2BFC791"
        assert services[43].cdr_link == "https://les/cdr/1"
    assert _changes(cli, whmcs_config) == []
    r = cli("whmcs", "sync", config=whmcs_config)
    assert r.exit_code == 0
    with store.transaction() as session:
        assert len(list(session.scalars(select(Service)))) == 2


def test_changes_in_whmcs_are_shown_then_applied(cli, whmcs_config, seeded, store):
    assert cli("whmcs", "sync", config=whmcs_config).exit_code == 0
    seeded.set_custom(42, "Low Balance Threshold", "2.50")
    seeded.set_custom(42, "Manual VoIP Suspend", "on")
    seeded.services[501].customfields["Extensions"] = "8301"
    seeded.services[503].status = "Terminated"
    changes = {(c["key"], c["action"], c["field"], c["old"], c["new"]) for c in _changes(
        cli, whmcs_config)}  # fmt: skip
    assert changes == {
        ("42", "update", "low_balance_threshold", "5.00", "2.50"),
        ("42", "update", "manual_voip_suspend", "no", "yes"),
        ("42/501", "update", "billed", "8300", "8301"),
        ("43/503", "end", "active", "yes", "no"),
    }
    assert cli("whmcs", "sync", config=whmcs_config).exit_code == 0
    assert _changes(cli, whmcs_config) == []
    with store.transaction() as session:
        services = {s.client_id: s for s in session.scalars(select(Service))}
        assert services[42].extensions == ["8301"]
        assert services[43].active is False


def test_a_bad_service_is_reported_and_the_rest_synced(cli, whmcs_config, seeded, store):
    seeded.add_service(42, "VoIP Basic", "pbx-unknown", **{"Tenant / DIDs": "b.example | 1"})
    r = cli("whmcs", "sync", config=whmcs_config)
    assert r.exit_code == 1
    assert "WHMCS service 504 of client 42: server 'pbx-unknown' is not configured" in r.stderr
    with store.transaction() as session:
        assert {c.id for c in session.scalars(select(Client))} == {42, 43}


def test_a_bad_field_value_names_client_and_field(cli, whmcs_config, seeded, store):
    seeded.set_custom(43, "Low Balance Threshold", "lots")
    r = cli("whmcs", "sync", config=whmcs_config)
    assert r.exit_code == 1
    assert 'client 43: custom field "id:12"' in r.stderr and "'lots'" in r.stderr
    with store.transaction() as session:
        assert session.get(Client, 43) is None and session.get(Client, 42) is not None


def test_field_names_need_ids_because_whmcs_gives_ids_only(cli, tmp_path, whmcs, seeded):
    path = write_config(tmp_path / "names.toml", whmcs)
    path.write_text(path.read_text().replace('has_voip_service = "id:11"', ""))
    path.write_text(
        path.read_text().replace(
            "[whmcs.fields]", '[whmcs.fields]\nhas_voip_service = "Has VoIP Service"'
        )
    )
    r = cli("whmcs", "sync", config=path)
    assert r.exit_code == 2
    assert 'whmcs.fields.has_voip_service = "Has VoIP Service"' in r.stderr
    assert 'write "id:N"' in r.stderr


def test_voipctls_own_suspension_write_back_is_not_an_override(cli, whmcs_config, seeded, store):
    assert cli("whmcs", "sync", config=whmcs_config).exit_code == 0
    backend = WhmcsBackend(load_config(str(whmcs_config)))
    with store.transaction() as session:
        backend.suspension_changed(session, 42, True)
    assert seeded.custom(42, "VoIP Suspended") == "yes"
    assert _changes(cli, whmcs_config) == []
    seeded.set_custom(42, "VoIP Suspended", "no")  # the operator overrides in WHMCS
    assert cli("whmcs", "sync", config=whmcs_config).exit_code == 0
    with store.transaction() as session:
        assert session.get(Client, 42).voip_suspended == "no"


def test_sync_refuses_a_local_backend(cli, tmp_path, whmcs):
    path = write_config(tmp_path / "local.toml", whmcs)
    path.write_text(path.read_text().replace('backend = "whmcs"', 'backend = "local"'))
    r = cli("whmcs", "sync", config=path)
    assert r.exit_code == 2
    assert 'need [billing] backend = "whmcs"' in r.stderr


# --- currency: in WHMCS mode the client's currency is WHMCS's (GetClientsDetails currency_code)


def test_a_whmcs_client_paying_in_another_currency_gets_no_service(
    cli, whmcs_config, seeded, store
):
    seeded.clients[43].currency_code = "USD"  # the products follow [billing] currency = "CAD"
    r = cli("whmcs", "sync", config=whmcs_config)
    assert r.exit_code == 1
    assert r.stderr.strip() == (
        "voipctl: error: WHMCS service 503 of client 43: client 43 pays in USD but product "
        "'SIP Trunk' is priced in CAD: use a product whose deck is in USD"
    )
    with store.transaction() as session:
        assert session.get(Client, 43).currency == "USD"
        assert sorted(session.scalars(select(Service.client_id))) == [42]


def test_service_add_in_whmcs_mode_checks_the_currency_whmcs_has(cli, whmcs_config, seeded, store):
    assert cli("whmcs", "sync", config=whmcs_config).exit_code == 0
    seeded.clients[42].currency_code = "USD"  # changed in WHMCS since the sync
    add = ("service", "add", "--client", "42", "--product", "VoIP Basic", "--server", "vodia1")
    add += ("--domain", "acme2.example.com | 5195550101")
    r = cli(*add, config=whmcs_config)
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        "voipctl: error: client 42 pays in USD in WHMCS but in CAD in voipctl: "
        "run `voipctl whmcs sync` first"
    )
    assert seeded.requests[-1] == (
        "GetClientsDetails",
        {"clientid": "42", "action": "GetClientsDetails", "responsetype": "json"},
    )
    seeded.clients[42].currency_code = "CAD"
    r = cli(*add, config=whmcs_config)
    assert r.exit_code == 0, r.output
