"""`voipctl whmcs sync`: WHMCS's clients, their custom fields and VoIP services into the store.

A VoIP service is a WHMCS service (GetClientsProducts) whose product maps to a
voipctl product (`whmcs.products`, a name mapping to itself); its product
custom fields (`whmcs.service_fields`) give the domain and billed fields and the
per-server extras, parsed by the same code as `voipctl service add`. The
clients synced are the owners of those services and every client already in
voipctl. Running it twice changes nothing the second time; a dry run does the
same work in a transaction that is rolled back.

A WHMCS service has no home in voipctl's schema, so it is matched to voipctl's
service of the same client and server by its domain field, or else by its
tenant or peer (the domain field was edited). Services in voipctl that WHMCS
does not list are left alone; Terminated or Cancelled ones are ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from voipctl import catalog, money, providers
from voipctl.billing.whmcs import WhmcsBackend, last_field_write, parse_flag
from voipctl.billing.whmcs_api import records
from voipctl.config import WHMCS_CLIENT_FIELDS
from voipctl.errors import ConfigError, DataError, VoipctlError
from voipctl.providers.fields import parse_fields
from voipctl.store.engine import Store
from voipctl.store.models import Client, Product, Service

log = logging.getLogger(__name__)

ACTIVE = ("Active", "Suspended")
ENDED = ("Terminated", "Cancelled", "Fraud")


def _extras(server_type: str) -> dict[str, str]:
    """`[whmcs] service_fields` key -> extra, of one server type: as `service add` takes them."""
    return {extra.whmcs_key: extra.key for extra in providers.plugin(server_type).extras}


class _RollBack(Exception):  # noqa: N818 - control flow, never escapes this module
    """Ends a dry run's transaction without committing it."""


@dataclass(frozen=True)
class Change:
    """One difference between WHMCS and voipctl, applied (or shown by a dry run)."""

    kind: str  # client | service
    key: str  # client id, or "client/WHMCS service id"
    action: str  # add | update | end
    field: str
    old: str
    new: str


@dataclass
class SyncReport:
    changes: list[Change] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    clients: int = 0
    services: int = 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return money.fmt(value) or ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _amount(raw: str, what: str) -> Decimal:
    cleaned = raw.strip().replace("$", "").replace(",", "")
    try:
        return money.parse(cleaned, field=what)
    except money.MoneyError as exc:
        raise DataError(str(exc)) from None


def client_columns(
    session: Session, backend: WhmcsBackend, details: dict[str, Any]
) -> dict[str, Any]:
    """The voipctl client columns a WHMCS client record stands for."""
    client_id = int(details.get("id") or details.get("client_id") or details.get("userid"))
    first = str(details.get("firstname") or "").strip()
    last = str(details.get("lastname") or "").strip()
    company = str(details.get("companyname") or "").strip()
    cols: dict[str, Any] = {
        "first_name": first or company or "-",
        "last_name": last or "-",
        "company": company,
        "email": str(details.get("email") or "").strip(),
        "currency": str(details.get("currency_code") or "").strip().upper(),
    }
    state_field = backend.field_id("suspension_state", details)
    for key in WHMCS_CLIENT_FIELDS:
        field_id = backend.field_id(key, details)
        if field_id is None:
            continue
        raw = backend.field_value(details, field_id).strip()
        what = f'client {client_id}: custom field "{backend.whmcs.fields[key]}"'
        if key in ("has_voip_service", "manual_voip_suspend", "cc_auth_on_file"):
            cols[key] = parse_flag(raw)
        elif key == "auto_topup_amount":
            cols[key] = _amount(raw, what) if raw else None
        elif key == "cc_auth_date":
            try:
                cols[key] = date.fromisoformat(raw) if raw else None
            except ValueError:
                raise DataError(f"{what}: {raw!r} is not a date (YYYY-MM-DD)") from None
        elif key == "low_balance_threshold":
            cols[key] = _amount(raw, what) if raw else None
        elif key == "credit_limit":
            cols[key] = _amount(raw, what) if raw else Decimal(0)
        elif key == "timezone":
            cols[key] = raw or "UTC"
        elif key == "voip_suspended":
            lowered = raw.lower()
            if field_id == state_field and lowered == (
                last_field_write(session, client_id, field_id) or ""
            ):
                # voipctl's own write-back of the suspension state, not an operator override.
                continue
            if lowered in ("", "none", "auto"):
                cols[key] = "none"
            elif lowered in ("yes", "on"):
                cols[key] = "yes"
            elif lowered == "no":
                cols[key] = "no"
            else:
                raise DataError(f"{what}: {raw!r} is not none, yes or no")
    return cols


def _product_fields(service: dict[str, Any]) -> tuple[dict[str, str], dict[int, str]]:
    by_name: dict[str, str] = {}
    by_id: dict[int, str] = {}
    for entry in records(service, "customfields", "customfield"):
        value = str(entry.get("value") or "").strip()
        if entry.get("name"):
            by_name[str(entry["name"])] = value
        if str(entry.get("id") or "").isdigit():
            by_id[int(entry["id"])] = value
    return by_name, by_id


def _service_value(backend: WhmcsBackend, key: str, service: dict[str, Any]) -> str:
    spec = (backend.whmcs.service_fields.get(key) or "").strip()
    if not spec:
        return ""
    by_name, by_id = _product_fields(service)
    if spec.lower().startswith("id:"):
        try:
            return by_id.get(int(spec[3:]), "")
        except ValueError:
            raise ConfigError(f"whmcs.service_fields.{key}: {spec!r} is not id:N") from None
    return by_name.get(spec, "")


@dataclass
class WhmcsService:
    """A VoIP service as WHMCS lists it, mapped to voipctl's names."""

    whmcs_id: int
    client_id: int
    product: str
    server: str
    server_type: str
    status: str
    domain: str
    billed: str
    extras: dict[str, str | None]

    @property
    def key(self) -> str:
        return f"{self.client_id}/{self.whmcs_id}"


def voip_services(store: Store, backend: WhmcsBackend, report: SyncReport) -> list[WhmcsService]:
    """WHMCS's services whose products are voipctl products, mapped; bad ones reported."""
    with store.session_factory() as session:
        known = set(session.scalars(select(Product.name)))
    whmcs = backend.whmcs
    servers = backend.config.servers
    found = []
    for raw in backend.api.paged("GetClientsProducts", {}, "products", "product"):
        product = whmcs.products.get(str(raw.get("name")), str(raw.get("name")))
        if product not in known:
            continue
        where = f"WHMCS service {raw.get('id')} of client {raw.get('clientid')}"
        server = whmcs.servers.get(str(raw.get("servername")), str(raw.get("servername")))
        if server not in servers:
            report.failures.append(
                f"{where}: server {server!r} is not configured (add it under [servers] "
                "or map the WHMCS server name in whmcs.servers)"
            )
            continue
        server_type = servers[server].type
        domain = _service_value(backend, "domain", raw)
        if not domain and raw.get("status") in ACTIVE:
            report.failures.append(
                f'{where}: product field "{whmcs.service_fields.get("domain")}" is empty'
            )
            continue
        found.append(
            WhmcsService(
                whmcs_id=int(raw["id"]),
                client_id=int(raw["clientid"]),
                product=product,
                server=server,
                server_type=server_type,
                status=str(raw.get("status") or ""),
                domain=domain,
                billed=_service_value(backend, "billed", raw),
                extras={
                    column: _service_value(backend, key, raw) or None
                    for key, column in _extras(server_type).items()
                },
            )
        )
    return found


def _match(session: Session, wanted: WhmcsService) -> Service | None:
    candidates = list(
        session.scalars(
            select(Service).where(
                Service.client_id == wanted.client_id,
                Service.server == wanted.server,
                Service.active.is_(True),
            )
        )
    )
    for service in candidates:
        if service.domain_field == wanted.domain:
            return service
    try:
        parsed = parse_fields(wanted.server_type, wanted.domain, wanted.billed)
    except VoipctlError:
        return None
    key = parsed["tenant"] or parsed["peer_id"]
    for service in candidates:
        if key and (service.tenant or service.peer_id) == key:
            return service
    return None


def _sync_client(
    session: Session, backend: WhmcsBackend, details: dict[str, Any], report: SyncReport
) -> None:
    cols = client_columns(session, backend, details)
    client_id = int(details.get("id") or details.get("client_id") or details.get("userid"))
    key = str(client_id)
    client = session.get(Client, client_id)
    if client is None:
        catalog.add_client(session, client_id, **cols)
        report.changes.extend(
            Change("client", key, "add", name, "", _text(value)) for name, value in cols.items()
        )
        return
    changed = {name: value for name, value in cols.items() if getattr(client, name) != value}
    if changed:
        before = {name: _text(getattr(client, name)) for name in changed}
        catalog.update_client(session, client_id, **changed)
        report.changes.extend(
            Change("client", key, "update", name, before[name], _text(value))
            for name, value in changed.items()
        )


def _sync_service(
    session: Session, wanted: WhmcsService, report: SyncReport, currency: str
) -> None:
    """`currency`: the configuration's, the deck currency of products without their own."""
    service = _match(session, wanted)
    if wanted.status in ENDED:
        if service is not None:
            catalog.remove_service(session, service.id)
            report.changes.append(Change("service", wanted.key, "end", "active", "yes", "no"))
        return
    if wanted.status not in ACTIVE:
        return  # Pending: not provisioned yet
    if service is None:
        catalog.add_service(
            session,
            client_id=wanted.client_id,
            product=wanted.product,
            server=wanted.server,
            server_type=wanted.server_type,
            domain=wanted.domain,
            billed=wanted.billed,
            default_currency=currency,
            **wanted.extras,
        )
        shown = {"product": wanted.product, "server": wanted.server, "domain": wanted.domain}
        shown["billed"] = wanted.billed
        report.changes.extend(
            Change("service", wanted.key, "add", name, "", value) for name, value in shown.items()
        )
        return
    product_name = session.scalar(select(Product.name).where(Product.id == service.product_id))
    current = {
        "domain": service.domain_field,
        "billed": service.billed_field,
        "product": product_name,
        **{column: getattr(service, column) for column in wanted.extras},
    }
    target = {
        "domain": wanted.domain,
        "billed": wanted.billed,
        "product": wanted.product,
        **wanted.extras,
    }
    changed = {k: v for k, v in target.items() if (current[k] or None) != (v or None)}
    if changed:
        catalog.update_service(session, service.id, default_currency=currency, **changed)
        report.changes.extend(
            Change("service", wanted.key, "update", k, _text(current[k]), _text(v))
            for k, v in changed.items()
        )


def sync(store: Store, backend: WhmcsBackend, *, dry_run: bool = False) -> SyncReport:
    """Bring voipctl's clients and VoIP services in line with WHMCS; one transaction per
    client (rolled back on a dry run). A client that fails is reported; the others go on."""
    report = SyncReport()
    services = voip_services(store, backend, report)
    with store.session_factory() as session:
        client_ids = set(session.scalars(select(Client.id)))
    client_ids |= {s.client_id for s in services}
    by_client: dict[int, list[WhmcsService]] = {}
    for service in services:
        by_client.setdefault(service.client_id, []).append(service)
    for client_id in sorted(client_ids):
        try:
            details = backend.details(client_id)
        except VoipctlError as exc:
            report.failures.append(str(exc))
            continue
        mark = len(report.changes)
        try:
            with store.transaction() as session:
                _sync_client(session, backend, details, report)
                for wanted in by_client.get(client_id, []):
                    try:
                        with session.begin_nested():
                            _sync_service(session, wanted, report, backend.config.billing.currency)
                    except VoipctlError as exc:
                        report.failures.append(
                            f"WHMCS service {wanted.whmcs_id} of client {client_id}: {exc}"
                        )
                if dry_run:
                    raise _RollBack
        except _RollBack:
            pass
        except ConfigError:
            raise
        except VoipctlError as exc:
            del report.changes[mark:]
            report.failures.append(f"client {client_id}: {exc}")
            continue
        report.clients += 1
        report.services += len(by_client.get(client_id, []))
    return report
