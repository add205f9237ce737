"""Products, clients and services: what the operator registers, validated once, here.

Every function works in the caller's session (the command owns the
transaction) and raises UsageError / NotFound for input that cannot work, so a
bad value is refused before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy import select
from sqlalchemy.orm import Session

from voipctl import money, providers
from voipctl.errors import NotFound, UsageError
from voipctl.providers.fields import parse_fields
from voipctl.redact import redact_url
from voipctl.store.models import Client, Invoice, LedgerEntry, Product, Service

# --- shared checks ---------------------------------------------------------------------------

# Ids beyond the column's integer type would reach PostgreSQL as an overflow error.
BIGINT_MAX = 2**63 - 1  # clients.id, cdrs.id
INT_MAX = 2**31 - 1  # services.id


def id_fits(value: int, maximum: int = BIGINT_MAX) -> bool:
    """True when `value` can be an id of a column whose largest value is `maximum`."""
    return 0 < value <= maximum


def now() -> datetime:
    return datetime.now(UTC)


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def check_timezone(name: str) -> str:
    """An IANA time zone name (`America/Toronto`), refused with exit 2 otherwise."""
    # Membership first: ZoneInfo() alone would also open odd paths given as names.
    if name in _zone_names():
        try:
            ZoneInfo(name)
            return name
        except (ValueError, OSError):
            pass
    raise UsageError(f"time zone {name!r} is not an IANA name like America/Toronto or UTC")


def check_amount(
    value: Decimal | str, what: str, *, positive: bool = False, nonnegative: bool = False
) -> Decimal:
    """An exact amount; `positive` / `nonnegative` refuse the amounts that make no sense."""
    try:
        amount = money.parse(value, field=what)
    except money.MoneyError as exc:
        raise UsageError(str(exc)) from None
    if abs(amount) >= Decimal(9_000_000_000):
        raise UsageError(f"{what}: {amount} is too large")
    if positive and amount <= 0:
        raise UsageError(f"{what}: must be more than 0, got {amount}")
    if nonnegative and amount < 0:
        raise UsageError(f"{what}: must not be negative, got {amount}")
    return amount


def _digits(value: str, what: str, *, max_len: int, first_nonzero: bool = False) -> str:
    value = value.strip()
    if not re.fullmatch(rf"[0-9]{{1,{max_len}}}", value):
        raise UsageError(f"{what}: {value!r} is not 1 to {max_len} digits")
    if first_nonzero and value[0] == "0":
        raise UsageError(f"{what}: {value!r} must not start with 0")
    return value


def _int_range(value: int, what: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise UsageError(f"{what}: {value} is not between {low} and {high}")
    return value


# --- products --------------------------------------------------------------------------------

_PATTERN = re.compile(r"[0-9xX*#+]+")


def normalize_patterns(text: str, what: str) -> str:
    """Exclude/suppress patterns (docs/rating.md §3): comma-separated, `x` any one digit."""
    patterns = [p.strip() for p in text.split(",") if p.strip()]
    for pattern in patterns:
        if not _PATTERN.fullmatch(pattern):
            raise UsageError(
                f"{what}: pattern {pattern!r} may hold only digits, x (any one digit), * and #, "
                'e.g. "911,1800xxxxxxx,*xx"'
            )
    return ",".join(p.lower() for p in patterns)


def default_exit_code(country_code: str) -> str:
    """docs/rating.md §1: 011 in NANP (country code 1), else 00."""
    return "011" if country_code == "1" else "00"


PRODUCT_SETTINGS = (
    "metered",
    "country_code",
    "exit_code",
    "national_prefix",
    "prepend_country_code",
    "nanp_10_digit",
    "markup_percent",
    "free_minutes",
    "bill_inbound",
    "increment",
    "inbound_increment",
    "max_internal_digits",
    "area_code",
    "decimals",
    "exclude",
    "suppress",
    "currency",
)


def _product_changes(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate product settings given by the operator into model columns."""
    unknown = set(settings) - set(PRODUCT_SETTINGS)
    if unknown:
        raise UsageError(f"unknown product setting(s): {', '.join(sorted(unknown))}")
    cols: dict[str, Any] = {}
    for key, value in settings.items():
        if key in ("metered", "prepend_country_code", "nanp_10_digit", "bill_inbound"):
            cols[key] = bool(value)
        elif key == "country_code":
            cols[key] = _digits(str(value), "country code", max_len=3, first_nonzero=True)
        elif key == "exit_code":
            cols[key] = _digits(str(value), "exit code", max_len=6)
        elif key == "national_prefix":
            cols[key] = None if value is None else _digits(str(value), "national prefix", max_len=6)
        elif key == "area_code":
            if value is not None and not re.fullmatch(r"[2-9][0-9]{2}", str(value).strip()):
                raise UsageError(f"area code: {value!r} is not a NANP area code like 519")
            cols[key] = None if value is None else str(value).strip()
        elif key == "markup_percent":
            pct = check_amount(value, "markup", nonnegative=True)
            if pct != pct.quantize(Decimal("0.0001")) or pct > 100_000:
                raise UsageError(f"markup: {pct} must have at most 4 decimals and be below 100000")
            cols[key] = pct
        elif key == "free_minutes":
            cols[key] = _int_range(int(value), "free minutes", 0, 10_000_000)
        elif key == "decimals":
            cols[key] = _int_range(int(value), "decimals", 0, money.SCALE)
        elif key == "max_internal_digits":
            cols[key] = _int_range(int(value), "max internal digits", 0, 15)
        elif key in ("increment", "inbound_increment"):
            first, then = value
            for part in (first, then):
                _int_range(int(part), key.replace("_", " "), 1, 3600)
            cols[f"{key}_a"], cols[f"{key}_b"] = int(first), int(then)
        elif key in ("exclude", "suppress"):
            cols[key] = normalize_patterns(str(value or ""), key)
        elif key == "currency":
            cols[key] = check_currency(value)
    return cols


def check_currency(value: Any) -> str:
    """A 3-letter ISO currency code, upper-cased."""
    code = str(value).strip().upper()
    if not _CURRENCY.fullmatch(code):
        raise UsageError(f"currency {value!r} is not a 3-letter ISO code like CAD")
    return code


def deck_currency(product: Product, default: str | None) -> str | None:
    """The currency a product's deck is priced in: its own, else the configuration's."""
    return product.currency or default


def check_service_currency(client: Client, product: Product, default: str | None) -> None:
    """Refuse a service whose client pays in another currency than its product's deck."""
    deck = deck_currency(product, default)
    if deck is not None and deck != client.currency:
        raise UsageError(
            f"client {client.id} pays in {client.currency} but product {product.name!r} is "
            f"priced in {deck}: use a product whose deck is in {client.currency}"
        )


def currency_mismatches(session: Session, default: str | None) -> list[str]:
    """Every active service whose client's currency is not its product's deck currency."""
    rows = session.execute(
        select(Service.id, Client.id, Client.currency, Product.name, Product.currency)
        .join(Client, Client.id == Service.client_id)
        .join(Product, Product.id == Service.product_id)
        .where(Service.active.is_(True))
        .order_by(Service.id)
    )
    found = []
    for service_id, client_id, client_currency, product_name, product_currency in rows:
        deck = product_currency or default
        if deck is not None and deck != client_currency:
            found.append(
                f"service {service_id}: client {client_id} pays in {client_currency}, "
                f"product {product_name!r} is priced in {deck}"
            )
    return found


def get_product(session: Session, name: str) -> Product:
    """The product called `name`, or NotFound."""
    product = session.scalar(select(Product).where(Product.name == name))
    if product is None:
        known = ", ".join(session.scalars(select(Product.name).order_by(Product.name))) or "none"
        raise NotFound(f"no product {name!r} (products: {known})")
    return product


def add_product(session: Session, name: str, **settings: Any) -> Product:
    """Create a product; settings left out take docs/rating.md §1's defaults."""
    name = name.strip()
    if not name or len(name) > 100:
        raise UsageError("product name must be 1 to 100 characters")
    if session.scalar(select(Product.id).where(Product.name == name)) is not None:
        raise UsageError(f"product {name!r} already exists (change it with `voipctl product set`)")
    cols = _product_changes(settings)
    country = cols.setdefault("country_code", "1")
    cols.setdefault("exit_code", default_exit_code(country))
    cols.setdefault("nanp_10_digit", country == "1")
    product = Product(
        name=name,
        metered=cols.pop("metered", True),
        prepend_country_code=cols.pop("prepend_country_code", False),
        markup_percent=cols.pop("markup_percent", Decimal(0)),
        free_minutes=cols.pop("free_minutes", 0),
        bill_inbound=cols.pop("bill_inbound", False),
        increment_a=cols.pop("increment_a", 60),
        increment_b=cols.pop("increment_b", 60),
        inbound_increment_a=cols.pop("inbound_increment_a", 60),
        inbound_increment_b=cols.pop("inbound_increment_b", 60),
        decimals=cols.pop("decimals", 4),
        exclude=cols.pop("exclude", ""),
        suppress=cols.pop("suppress", ""),
        max_internal_digits=cols.pop("max_internal_digits", 6),
        created_at=now(),
        **cols,
    )
    _check_product(product)
    session.add(product)
    session.flush()
    return product


def update_product(session: Session, name: str, **settings: Any) -> Product:
    """Change the given settings of a product.

    A new country code carries the exit code and the NANP 10-digit rule along
    when they still hold the old country's defaults (an explicit value wins).
    """
    product = get_product(session, name)
    cols = _product_changes(settings)
    new_country = cols.get("country_code")
    if new_country and new_country != product.country_code:
        if "exit_code" not in cols and product.exit_code == default_exit_code(product.country_code):
            cols["exit_code"] = default_exit_code(new_country)
        if "nanp_10_digit" not in cols and product.nanp_10_digit == (product.country_code == "1"):
            cols["nanp_10_digit"] = new_country == "1"
    for key, value in cols.items():
        setattr(product, key, value)
    _check_product(product)
    session.flush()
    return product


def _check_product(product: Product) -> None:
    if product.prepend_country_code and not product.national_prefix:
        raise UsageError("--prepend-country-code needs --national-prefix (e.g. 0)")


def list_products(session: Session) -> list[Product]:
    return list(session.scalars(select(Product).order_by(Product.name)))


def product_view(product: Product) -> dict[str, Any]:
    """A product as docs/cli.md shows it (JSON keys)."""
    return {
        "id": product.id,
        "name": product.name,
        "metered": product.metered,
        "country_code": product.country_code,
        "exit_code": product.exit_code,
        "national_prefix": product.national_prefix,
        "prepend_country_code": product.prepend_country_code,
        "nanp_10_digit": product.nanp_10_digit,
        "markup_percent": money.fmt(product.markup_percent, 0),
        "free_minutes": product.free_minutes,
        "bill_inbound": product.bill_inbound,
        "increment": f"{product.increment_a}/{product.increment_b}",
        "inbound_increment": f"{product.inbound_increment_a}/{product.inbound_increment_b}",
        "max_internal_digits": product.max_internal_digits,
        "area_code": product.area_code,
        "decimals": product.decimals,
        "exclude": product.exclude,
        "suppress": product.suppress,
        "currency": product.currency,
        "created_at": product.created_at,
    }


# --- clients ---------------------------------------------------------------------------------

VOIP_SUSPENDED = ("none", "yes", "no")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _client_changes(fields: Mapping[str, Any]) -> dict[str, Any]:
    cols: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("first_name", "last_name"):
            value = str(value).strip()
            if not value:
                raise UsageError(f"{key.replace('_', ' ')} must not be empty")
            cols[key] = value
        elif key == "company":
            cols[key] = str(value or "").strip()
        elif key == "email":
            value = str(value).strip()
            if not _EMAIL.fullmatch(value):
                raise UsageError(f"email {value!r} is not an address like name@example.com")
            cols[key] = value
        elif key == "currency":
            cols[key] = check_currency(value)
        elif key == "low_balance_threshold":
            cols[key] = None if value is None else check_amount(value, "low balance threshold")
        elif key == "credit_limit":
            cols[key] = check_amount(value, "credit limit", nonnegative=True)
        elif key == "auto_topup_amount":
            cols[key] = (
                None if value is None else check_amount(value, "auto top-up", nonnegative=True)
            )
        elif key in ("has_voip_service", "manual_voip_suspend", "cc_auth_on_file"):
            cols[key] = bool(value)
        elif key == "voip_suspended":
            if value not in VOIP_SUSPENDED:
                raise UsageError(f"voip suspended: {value!r} is not one of none, yes, no")
            cols[key] = value
        elif key == "timezone":
            cols[key] = check_timezone(str(value))
        elif key == "cc_auth_date":
            cols[key] = value
        else:
            raise UsageError(f"unknown client field {key!r}")
    return cols


def get_client(session: Session, client_id: int) -> Client:
    """The client with this id, or NotFound (exit 2)."""
    # Out-of-range ids cannot exist; asking the database would be an overflow error.
    client = session.get(Client, client_id) if id_fits(client_id) else None
    if client is None:
        raise NotFound(f"no client {client_id} (add it with `voipctl client add {client_id} ...`)")
    return client


def add_client(
    session: Session,
    client_id: int,
    *,
    first_name: str,
    last_name: str,
    email: str,
    currency: str,
    **fields: Any,
) -> Client:
    """Register a client under the operator's own id (their billing system's client id)."""
    if not id_fits(client_id):
        raise UsageError(f"client id {client_id} must be a positive whole number")
    if session.get(Client, client_id) is not None:
        raise UsageError(f"client {client_id} already exists (change it with `voipctl client set`)")
    cols = _client_changes(
        {
            "first_name": first_name,
            "last_name": last_name,
            "email": email,
            "currency": currency,
            **fields,
        }
    )
    stamp = now()
    client = Client(
        id=client_id,
        company=cols.pop("company", ""),
        has_voip_service=cols.pop("has_voip_service", False),
        voip_suspended=cols.pop("voip_suspended", "none"),
        manual_voip_suspend=cols.pop("manual_voip_suspend", False),
        credit_limit=cols.pop("credit_limit", Decimal(0)),
        timezone=cols.pop("timezone", "UTC"),
        cc_auth_on_file=cols.pop("cc_auth_on_file", False),
        low_balance_alerted=False,
        created_at=stamp,
        updated_at=stamp,
        **cols,
    )
    session.add(client)
    session.flush()
    return client


def update_client(session: Session, client_id: int, **fields: Any) -> Client:
    """Change the given fields; `low_balance_threshold=None` clears the threshold."""
    client = get_client(session, client_id)
    cols = _client_changes(fields)
    if cols.get("currency", client.currency) != client.currency and _has_money(session, client.id):
        raise UsageError(
            f"client {client.id} already has ledger entries or invoices in {client.currency}: "
            "its currency cannot change"
        )
    if "low_balance_threshold" in cols and cols["low_balance_threshold"] is None:
        # No threshold means no alerts; the latch starts afresh if one is set again.
        cols["low_balance_alerted"] = False
    for key, value in cols.items():
        setattr(client, key, value)
    client.updated_at = now()
    session.flush()
    return client


def _has_money(session: Session, client_id: int) -> bool:
    for model in (LedgerEntry, Invoice):
        if session.scalar(select(model.id).where(model.client_id == client_id).limit(1)):
            return True
    return False


def client_view(client: Client) -> dict[str, Any]:
    """A client's own fields as docs/cli.md names them (money as exact strings)."""
    return {
        "id": client.id,
        "first_name": client.first_name,
        "last_name": client.last_name,
        "company": client.company,
        "email": client.email,
        "currency": client.currency,
        "timezone": client.timezone,
        "has_voip_service": client.has_voip_service,
        "low_balance_threshold": money.fmt(client.low_balance_threshold, 2),
        "voip_suspended": client.voip_suspended,
        "manual_voip_suspend": client.manual_voip_suspend,
        "credit_limit": money.fmt(client.credit_limit, 2),
        "auto_topup_amount": money.fmt(client.auto_topup_amount, 2),
        "cc_auth_on_file": client.cc_auth_on_file,
        "cc_auth_date": client.cc_auth_date,
        "low_balance_alerted": client.low_balance_alerted,
        "created_at": client.created_at,
        "updated_at": client.updated_at,
    }


def list_clients(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.id)))


# --- services --------------------------------------------------------------------------------


def _service_extras(server_type: str, extras: Mapping[str, Any]) -> dict[str, Any]:
    """The extras of a service, checked by their plugin's rules.

    An extra only means something on one kind of server: refused elsewhere, so a
    value typed for the wrong server is not silently kept and never used.
    """
    known = providers.service_extras()
    cols: dict[str, Any] = {}
    for key, value in extras.items():
        if key not in known:
            raise UsageError(f"unknown service field {key!r}")
        wanted, extra = known[key]
        value = None if value is None else str(value).strip() or None
        if value is not None and server_type != wanted:
            raise UsageError(f"{extra.option} is for {wanted} servers, not {server_type}")
        if value is not None and extra.check is not None:
            value = extra.check(value)
        cols[key] = value
    return cols


def _active_others(session: Session, service: Service) -> list[Service]:
    """The other active services on the service's server, oldest first."""
    return list(
        session.scalars(
            select(Service)
            .where(
                Service.server == service.server,
                Service.active.is_(True),
                Service.id != (service.id or -1),
            )
            .order_by(Service.id)
        )
    )


def _claims_overlap(session: Session, service: Service) -> None:
    """Two active services that bill the same calls would bill them twice: refuse.

    Tenants are domain names: compared without case. A service with no billed
    extensions bills the whole tenant; the message says which service bills what.
    """
    if not service.tenant:
        return
    key = service.tenant.casefold()
    mine = set(service.extensions or [])
    for other in _active_others(session, service):
        if not other.tenant or other.tenant.casefold() != key:
            continue
        theirs = set(other.extensions or [])
        if mine and theirs and not mine & theirs:
            continue
        who = f"service {other.id} (client {other.client_id})"
        where = f"on server {service.server}: calls would be billed twice"
        if mine and theirs:
            shared = ", ".join(sorted(mine & theirs))
            raise UsageError(f"{who} already bills {shared} of {other.tenant} {where}")
        if theirs:
            raise UsageError(
                f"{who} already bills {', '.join(sorted(theirs))} of {other.tenant}, and this "
                f"service would bill the whole tenant {service.tenant} {where}"
            )
        this = f"{', '.join(sorted(mine))} of it" if mine else "it whole too"
        raise UsageError(
            f"{who} already bills the whole tenant {other.tenant}, and this service would "
            f"bill {this} {where}"
        )


def _provider_claims(session: Session, service: Service) -> None:
    """The provider's own rule of which calls are a service's (LES.NET: peers and DIDs)."""
    providers.plugin(service.server_type).claims(service, _active_others(session, service))


# The suspend levers one service would share with another on the same server: the
# key each lever acts on (docs/billing.md, "Shared levers"). Per-extension levers are
# never shared: two services never bill the same extension (_claims_overlap).
_LEVER_KEYS = {
    "gateway": lambda s: s.gateway_uuid and ("gateway", s.gateway_uuid.lower()),
    "domain": lambda s: s.tenant and ("tenant", s.tenant),
    "trunk": lambda s: s.tenant and s.trunk_id and ("trunk", f"{s.trunk_id} of {s.tenant}"),
}


def lever_key(service: Service, lever: str | None) -> tuple[str, str] | None:
    """(what, which) the service's suspend lever acts on when another could share it."""
    key = _LEVER_KEYS.get(lever or "")
    return (key(service) or None) if key else None


def _shares_lever(session: Session, service: Service, lever: str | None) -> None:
    """Refuse a second service on the lever of another: suspending one cuts both."""
    mine = lever_key(service, lever)
    if mine is None:
        return
    others = session.scalars(
        select(Service)
        .where(
            Service.server == service.server,
            Service.active.is_(True),
            Service.id != (service.id or -1),
        )
        .order_by(Service.id)
    )
    for other in others:
        if lever_key(other, lever) == mine:
            raise UsageError(
                f"service {other.id} (client {other.client_id}) is already suspended through "
                f"{mine[0]} {mine[1]} on server {service.server}: one lever cannot serve "
                f'two services (suspend = "{lever}")'
            )


def shared_levers(session: Session, levers: Mapping[str, str]) -> list[tuple[Service, Service]]:
    """Pairs of active services on one lever, per server (`levers`: server -> suspend)."""
    seen: dict[tuple[str, tuple[str, str]], Service] = {}
    pairs = []
    for service in session.scalars(
        select(Service).where(Service.active.is_(True)).order_by(Service.id)
    ):
        key = lever_key(service, levers.get(service.server))
        if key is None:
            continue
        first = seen.setdefault((service.server, key), service)
        if first is not service:
            pairs.append((first, service))
    return pairs


def get_service(session: Session, service_id: int) -> Service:
    """The service with this id, or NotFound."""
    service = session.get(Service, service_id) if id_fits(service_id, INT_MAX) else None
    if service is None:
        raise NotFound(f"no service {service_id}")
    return service


def add_service(
    session: Session,
    *,
    client_id: int,
    product: str,
    server: str,
    server_type: str,
    domain: str,
    billed: str = "",
    lever: str | None = None,
    default_currency: str | None = None,
    **extras: Any,
) -> Service:
    """A new service of a client on a configured server, its product fields parsed.

    `lever` is the server's `suspend` setting: a service whose lever another
    active service already uses is refused.
    `default_currency` is the configuration's `[billing] currency`, the deck currency of a
    product that has none of its own; a client paying in another currency is refused.
    """
    client = get_client(session, client_id)
    prod = get_product(session, product)
    check_service_currency(client, prod, default_currency)
    parsed = parse_fields(server_type, domain, billed)
    service = Service(
        client_id=client.id,
        product_id=prod.id,
        server=server,
        server_type=server_type,
        domain_field=domain.strip(),
        billed_field=(billed or "").strip(),
        suspended=False,
        manual_action_required=False,
        active=True,
        created_at=now(),
        **parsed,
        **_service_extras(server_type, extras),
    )
    _claims_overlap(session, service)
    _provider_claims(session, service)
    _shares_lever(session, service, lever)
    session.add(service)
    session.flush()
    return service


def update_service(
    session: Session,
    service_id: int,
    *,
    domain: str | None = None,
    billed: str | None = None,
    product: str | None = None,
    lever: str | None = None,
    default_currency: str | None = None,
    **extras: Any,
) -> Service:
    """Change a service's fields; the product fields are parsed again as a pair.

    A new product is refused if its deck currency is not the client's (see add_service).
    """
    service = get_service(session, service_id)
    if not service.active:
        raise UsageError(f"service {service_id} was removed; add a new one instead")
    if domain is not None or billed is not None:
        new_domain = service.domain_field if domain is None else domain.strip()
        new_billed = service.billed_field if billed is None else billed.strip()
        for key, value in parse_fields(service.server_type, new_domain, new_billed).items():
            setattr(service, key, value)
        service.domain_field, service.billed_field = new_domain, new_billed
    if product is not None:
        prod = get_product(session, product)
        check_service_currency(get_client(session, service.client_id), prod, default_currency)
        service.product_id = prod.id
    for key, value in _service_extras(service.server_type, extras).items():
        setattr(service, key, value)
    _claims_overlap(session, service)
    _provider_claims(session, service)
    _shares_lever(session, service, lever)
    session.flush()
    return service


def remove_service(session: Session, service_id: int) -> tuple[Service, bool]:
    """End a service: no more pulls or charges; its CDRs and ledger stay.

    Returns (service, changed); removing a removed service changes nothing.
    """
    service = get_service(session, service_id)
    if not service.active:
        return service, False
    service.active = False
    service.ended_at = now()
    session.flush()
    return service, True


def list_services(
    session: Session, client_id: int | None = None, *, include_ended: bool = False
) -> list[Service]:
    query = select(Service).order_by(Service.id)
    if client_id is not None:
        get_client(session, client_id)
        query = query.where(Service.client_id == client_id)
    if not include_ended:
        query = query.where(Service.active.is_(True))
    return list(session.scalars(query))


def product_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    ids = set(ids)
    if not ids:
        return {}
    rows = session.execute(select(Product.id, Product.name).where(Product.id.in_(ids)))
    return {pid: name for pid, name in rows}


def _shown_extra(service: Service, extra: providers.Extra, show_secrets: bool) -> Any:
    value = getattr(service, extra.key)
    return value if show_secrets or not extra.secret else redact_url(value)


def service_view(
    service: Service, product_name: str, *, show_secrets: bool = False
) -> dict[str, Any]:
    """A service as docs/cli.md shows it: `id`, `server`, `product`, `suspended` and its fields.

    The CDR link's user-info and query string are masked unless `show_secrets`.
    """
    return {
        "id": service.id,
        "client_id": service.client_id,
        "product": product_name,
        "server": service.server,
        "server_type": service.server_type,
        "domain": service.domain_field,
        "billed": service.billed_field,
        "tenant": service.tenant,
        "peer_id": service.peer_id,
        "main_did": service.main_did,
        "dids": list(service.dids or []),
        "extensions": list(service.extensions or []),
        **{
            extra.shown: _shown_extra(service, extra, show_secrets)
            for _, extra in providers.service_extras().values()
        },
        "suspended": service.suspended,
        "suspended_by": service.suspended_by,
        "manual_action_required": service.manual_action_required,
        "active": service.active,
        "created_at": service.created_at,
        "ended_at": service.ended_at,
    }
