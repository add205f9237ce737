"""Clients, services and money: `client`, `service`, `credit`, `balance`, `invoice`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from voipctl import catalog, money, providers
from voipctl.billing import accounts, ledger
from voipctl.billing.backend import backend_for
from voipctl.cli.app import get_app
from voipctl.cli.options import ID, MONEY, SignedArgsCommand, format_option
from voipctl.cli.output import render, render_one, say
from voipctl.errors import ConfigError, UsageError
from voipctl.providers.fields import FORMS


class MoneyOrNone(click.ParamType):
    """An exact amount, or `none` to clear the field."""

    name = "AMOUNT|none"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
            return "none"
        return MONEY.convert(value, param, ctx)


MONEY_OR_NONE = MoneyOrNone()
YES_NO = click.Choice(["yes", "no"])
DAY = click.DateTime(formats=["%Y-%m-%d"])


def _local_times(view: dict[str, Any], tz: str, fmt: str) -> dict[str, Any]:
    """Tables and CSV show times in the client's time zone; JSON keeps UTC."""
    if fmt == "json":
        return view
    zone = ZoneInfo(tz)
    return {k: v.astimezone(zone) if isinstance(v, datetime) else v for k, v in view.items()}


def _tz_of(session, client_id: int) -> str:
    return catalog.get_client(session, client_id).timezone


# --- client ----------------------------------------------------------------------------------


def client_options(required: bool) -> Callable[[Callable], Callable]:
    """The client fields of docs/billing.md, for `client add` (names required) and `client set`."""

    def decorate(fn: Callable) -> Callable:
        options = [
            click.option("--first-name", required=required, help="First name."),
            click.option("--last-name", required=required, help="Last name."),
            click.option("--email", required=required, help="Where the alerts go."),
            click.option("--company", help="Company name."),
            click.option(
                "--currency",
                metavar="CODE",
                help="3-letter currency code (default: [billing] currency of the configuration).",
            ),
            click.option(
                "--low-balance-threshold",
                type=MONEY_OR_NONE,
                help="Alert when credit falls to or below this ('none': no alerts).",
            ),
            click.option(
                "--has-voip-service/--no-has-voip-service",
                default=None,
                help="Let autosuspend manage this client (default no).",
            ),
            click.option(
                "--credit-limit",
                type=MONEY,
                help="Allowance below zero before suspension (default 0).",
            ),
            click.option(
                "--timezone",
                metavar="IANA-NAME",
                help="e.g. America/Toronto (default UTC): display, day boundaries, free minutes.",
            ),
            click.option(
                "--auto-topup-amount",
                type=MONEY_OR_NONE,
                help="What auto-topup charges when credit runs low ('none' clears it).",
            ),
            click.option(
                "--cc-auth-on-file",
                type=YES_NO,
                help="yes: auto-topup may charge the card on file.",
            ),
            click.option(
                "--cc-auth-date",
                type=DAY,
                help="Date of the card authorisation (ages out for auto-topup).",
            ),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _client_fields(options: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if value == "none" and key in ("low_balance_threshold", "auto_topup_amount"):
            value = None
        elif key in ("manual_voip_suspend", "cc_auth_on_file"):
            value = value == "yes"
        elif key == "cc_auth_date":
            value = value.date()
        fields[key] = value
    return fields


_CLIENT_FIELDS = [
    ("id", "id"),
    ("first_name", "first name"),
    ("last_name", "last name"),
    ("company", "company"),
    ("email", "email"),
    ("currency", "currency"),
    ("timezone", "time zone"),
    ("credit", "credit"),
    ("unbilled", "unbilled calls"),
    ("available", "available credit"),
    ("owing", "owing"),
    ("low_balance_threshold", "low balance threshold"),
    ("credit_limit", "credit limit"),
    ("has_voip_service", "has VoIP service"),
    ("voip_suspended", "VoIP suspended"),
    ("manual_voip_suspend", "manual VoIP suspend"),
    ("auto_topup_amount", "auto top-up amount"),
    ("cc_auth_on_file", "CC auth on file"),
    ("cc_auth_date", "CC auth date"),
    ("created_at", "created"),
    ("updated_at", "updated"),
    ("services", "services"),
    ("auto_topups", "automatic top-ups"),
]


def _show_client(session, client_id: int, fmt: str) -> None:
    view = accounts.client_detail(session, backend_for(get_app().config), client_id)
    if fmt != "json":
        view["services"] = [
            {k: s[k] for k in ("id", "server", "product", "tenant", "main_did", "suspended")}
            for s in view["services"]
        ]
    render_one(_local_times(view, view["timezone"], fmt), fmt, fields=_CLIENT_FIELDS)


@click.group()
def client():
    """Clients (customers) and their VoIP fields."""


@client.command("add")
@click.argument("client_id", metavar="ID", type=ID)
@client_options(required=True)
@format_option
def client_add(client_id, fmt, **options):
    """Register a client under its id in your billing system.

    \b
    Example: voipctl client add 42 --first-name Ann --last-name Lee --email ann@example.com \\
      --currency CAD --low-balance-threshold 5.00 --has-voip-service --timezone America/Toronto
    """
    app = get_app()
    fields = _client_fields(options)
    fields.setdefault("currency", app.config.billing.currency)
    with app.store().transaction() as session:
        catalog.add_client(session, client_id, **fields)
        _show_client(session, client_id, fmt)


@client.command("set")
@click.argument("client_id", metavar="ID", type=ID)
@client_options(required=False)
@click.option(
    "--voip-suspended",
    type=click.Choice(catalog.VOIP_SUSPENDED),
    help="Override: none lets autosuspend decide, yes keeps suspended, no keeps active.",
)
@click.option("--manual-voip-suspend", type=YES_NO, help="yes suspends all VoIP services.")
@format_option
def client_set(client_id, fmt, **options):
    """Change a client's fields; fields not given stay as they are.

    \b
    Example: voipctl client set 42 --low-balance-threshold none --voip-suspended no
    """
    fields = _client_fields(options)
    if not fields:
        raise UsageError("client set: nothing to change (see voipctl client set --help)")
    with get_app().store().transaction() as session:
        catalog.update_client(session, client_id, **fields)
        _show_client(session, client_id, fmt)


_CLIENT_LIST = [
    ("id", "id"),
    ("name", "name"),
    ("company", "company"),
    ("currency", "cur"),
    ("credit", "credit"),
    ("available", "available"),
    ("owing", "owing"),
    ("low_balance_threshold", "threshold"),
    ("has_voip_service", "voip"),
    ("services", "services"),
    ("suspended_services", "suspended"),
]


@client.command("list")
@click.option("--suspended", is_flag=True, help="Only clients with a suspended service.")
@click.option(
    "--below-threshold",
    is_flag=True,
    help="Only clients whose available credit is at or below their low balance threshold.",
)
@click.option("--owing", is_flag=True, help="Only clients with unpaid invoices due.")
@format_option
def client_list(suspended, below_threshold, owing, fmt):
    """List clients with their credit and owing.

    \b
    Example: voipctl client list --below-threshold --format csv
    """
    app = get_app()
    with app.store().transaction() as session:
        rows = accounts.client_summaries(
            session,
            backend_for(app.config),
            suspended=suspended,
            below_threshold=below_threshold,
            owing=owing,
        )
    render(rows, _CLIENT_LIST, fmt)


@client.command("show")
@click.argument("client_id", metavar="ID", type=ID)
@format_option
def client_show(client_id, fmt):
    """Show a client: fields, credit, owing and services.

    \b
    Example: voipctl client show 42 --format json
    """
    with get_app().store().transaction() as session:
        _show_client(session, client_id, fmt)


# --- service ---------------------------------------------------------------------------------

_FIELD_HELP = "; ".join(
    f"{form.label.split()[0]}: {form.form!r}"
    for (_, which), form in FORMS.items()
    if which == "domain"
)
_BILLED_HELP = "; ".join(
    f"{form.label.split()[0]}: {form.form!r}"
    for (_, which), form in FORMS.items()
    if which == "billed"
)


def service_extra_options(fn: Callable) -> Callable:
    """The options of every provider's service extras (`--gateway`, `--cdr-link`, ...)."""
    options = [
        click.option(extra.option, extra.key, metavar=extra.metavar, help=extra.help)
        for _, extra in providers.service_extras().values()
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _extras(options: dict[str, Any]) -> dict[str, Any]:
    known = providers.service_extras()
    return {k: v for k, v in options.items() if k in known and v is not None}


_SERVICE_FIELDS = [
    ("id", "id"),
    ("client_id", "client"),
    ("product", "product"),
    ("server", "server"),
    ("server_type", "type"),
    ("domain", "domain field"),
    ("billed", "billed field"),
    ("tenant", "tenant"),
    ("peer_id", "peer"),
    ("main_did", "main DID"),
    ("dids", "DIDs"),
    ("extensions", "billed"),
    *((extra.shown, extra.label) for _, extra in providers.service_extras().values()),
    ("suspended", "suspended"),
    ("suspended_by", "suspended by"),
    ("manual_action_required", "manual action required"),
    ("active", "active"),
    ("created_at", "created"),
    ("ended_at", "ended"),
]


def _show_service(session, service, fmt: str, *, show_secrets: bool = False) -> None:
    name = catalog.product_names(session, [service.product_id]).get(service.product_id, "?")
    view = catalog.service_view(service, name, show_secrets=show_secrets)
    tz = _tz_of(session, service.client_id)
    render_one(_local_times(view, tz, fmt), fmt, fields=_SERVICE_FIELDS)


@click.group()
def service():
    """VoIP services of clients, with their product fields."""


@service.command("add")
@click.option("--client", "client_id", type=ID, required=True, help="The client's id.")
@click.option("--product", required=True, help="Product name.")
@click.option("--server", "server_name", required=True, help="A server of the configuration.")
@click.option("--domain", required=True, metavar="FIELD", help=f"Domain field: {_FIELD_HELP}.")
@click.option("--billed", default="", metavar="FIELD", help=f"Billed field: {_BILLED_HELP}.")
@service_extra_options
@format_option
def service_add(client_id, product, server_name, domain, billed, fmt, **options):
    """Add a service; the fields are written as in ictVoIP (spaces around | optional).

    \b
    Example: voipctl service add --client 42 --product "Canada Metered" --server fusion1 \\
      --domain "mcon.wat7.ictvoip.ca | 5192229000" --billed "2112 | 2113"
    """
    app = get_app()
    config = app.config
    if server_name not in config.servers:
        known = ", ".join(sorted(config.servers)) or "none are configured"
        raise ConfigError(
            f"--server {server_name}: no such server in {config.source} (servers: {known})"
        )
    server_type = config.servers[server_name].type
    with app.store().transaction() as session:
        _check_whmcs_currency(config, catalog.get_client(session, client_id))
        created = catalog.add_service(
            session,
            client_id=client_id,
            product=product,
            server=server_name,
            server_type=server_type,
            domain=domain,
            billed=billed,
            lever=config.servers[server_name].suspend,
            default_currency=config.billing.currency,
            **_extras(options),
        )
        _show_service(session, created, fmt)
    _warn_missing_lever(config.servers[server_name], created)


def _check_whmcs_currency(config, client) -> None:
    """With WHMCS as the billing backend, the client's currency is WHMCS's: a client whose
    currency changed there since the last `whmcs sync` is refused until it is synced."""
    if config.billing.backend != "whmcs":
        return
    from voipctl.billing.whmcs import WhmcsBackend  # noqa: PLC0415 - only in WHMCS mode

    backend = WhmcsBackend(config)
    try:
        code = str(backend.details(client.id).get("currency_code") or "").strip().upper()
    finally:
        backend.api.close()
    if code != client.currency:
        raise UsageError(
            f"client {client.id} pays in {code or 'no currency'} in WHMCS but in "
            f"{client.currency} in voipctl: run `voipctl whmcs sync` first"
        )


def _warn_missing_lever(server, svc) -> None:
    """A service the server's suspend lever cannot reach is worth saying at once, not at 2 a.m."""
    column = providers.plugin(server.type).lever_extras.get(server.suspend)
    extra = providers.service_extras()[column][1] if column else None
    option = f"{extra.option} {extra.metavar}" if extra else None
    if column and not getattr(svc, column):
        say(
            f"voipctl: warning: server {svc.server} suspends by {server.suspend}, and service "
            f"{svc.id} has none: add it with `voipctl service set {svc.id} {option}`",
            err=True,
        )


@service.command("set")
@click.argument("service_id", metavar="ID", type=ID)
@click.option("--domain", metavar="FIELD", help="New domain field (parsed again with --billed).")
@click.option("--billed", metavar="FIELD", help="New billed field.")
@click.option("--product", help="Move the service to another product.")
@service_extra_options
@format_option
def service_set(service_id, domain, billed, product, fmt, **options):
    """Change a service; an empty value ("") clears --gateway, --trunk and the like.

    \b
    Example: voipctl service set 7 --billed "2112 | 2113 | 2114"
    """
    app = get_app()
    with app.store().transaction() as session:
        current = catalog.get_service(session, service_id)
        server = app.config.servers.get(current.server)
        changed = catalog.update_service(
            session,
            service_id,
            domain=domain,
            billed=billed,
            product=product,
            lever=server.suspend if server is not None else None,
            default_currency=get_app().config.billing.currency,
            **_extras(options),
        )
        _show_service(session, changed, fmt)
    server = get_app().config.servers.get(changed.server)
    if server is not None:
        _warn_missing_lever(server, changed)


@service.command("remove")
@click.argument("service_id", metavar="ID", type=ID)
@format_option
def service_remove(service_id, fmt):
    """End a service: no more pulls or charges; its CDRs and ledger entries stay.

    \b
    Example: voipctl service remove 7
    """
    with get_app().store().transaction() as session:
        ended, changed = catalog.remove_service(session, service_id)
        if fmt == "json":
            _show_service(session, ended, fmt)
        elif changed:
            say(f"service {service_id} removed")
        else:
            say(f"service {service_id} was already removed: nothing changed")


_SERVICE_LIST = [
    ("id", "id"),
    ("client_id", "client"),
    ("product", "product"),
    ("server", "server"),
    ("tenant", "tenant"),
    ("peer_id", "peer"),
    ("main_did", "main DID"),
    ("extensions", "billed"),
    ("suspended", "suspended"),
    ("active", "active"),
]


@service.command("list")
@click.option("--client", "client_id", type=ID, help="Only this client's services.")
@click.option("--all", "include_ended", is_flag=True, help="Include removed services.")
@format_option
def service_list(client_id, include_ended, fmt):
    """List services (active ones unless --all).

    \b
    Example: voipctl service list --client 42
    """
    with get_app().store().transaction() as session:
        services = catalog.list_services(session, client_id, include_ended=include_ended)
        names = catalog.product_names(session, (s.product_id for s in services))
        rows = [catalog.service_view(s, names.get(s.product_id, "?")) for s in services]
    render(rows, _SERVICE_LIST, fmt)


@service.command("show")
@click.argument("service_id", metavar="ID", type=ID)
@click.option(
    "--show-secrets",
    is_flag=True,
    help="Print the CDR link whole (user:password and query string are masked by default).",
)
@format_option
def service_show(service_id, show_secrets, fmt):
    """Show one service with its parsed product fields.

    \b
    Example: voipctl service show 7 --format json
    """
    with get_app().store().transaction() as session:
        service = catalog.get_service(session, service_id)
        _show_service(session, service, fmt, show_secrets=show_secrets)


# --- credit and balance ----------------------------------------------------------------------


def _local_ledger_only() -> None:
    if get_app().config.billing.backend != "local":
        raise UsageError(
            'credit and invoices live in WHMCS when [billing] backend = "whmcs": '
            "record them there, not with voipctl"
        )


def _report_posted(session, posted: ledger.Posted, what: str, fmt: str) -> None:
    entry = posted.entry
    credit = money.fmt(ledger.balance(session, entry.client_id), 4)
    if fmt == "json":
        view = accounts.entry_view(entry)
        view.update(already_recorded=not posted.created, credit=credit)
        render_one(view, fmt)
        if not posted.created:
            say(
                f"voipctl: reference {entry.reference} was already recorded: nothing written",
                err=True,
            )
        return
    amount = money.fmt(entry.amount, 2)
    if posted.created:
        say(
            f"{what} of {amount} recorded for client {entry.client_id} "
            f"(reference {entry.reference}); credit now {credit}"
        )
    else:
        say(
            f"reference {entry.reference} was already recorded for client {entry.client_id} "
            f"({amount}): nothing written; credit {credit}"
        )


@click.group()
def credit():
    """Prepaid credit: top-ups and adjustments, each a ledger entry."""


@credit.command("add", cls=SignedArgsCommand)
@click.argument("client_id", metavar="CLIENT", type=ID)
@click.argument("amount", type=MONEY)
@click.option(
    "--reference",
    metavar="REF",
    help="Idempotency key, e.g. the payment id: the same reference is taken once.",
)
@click.option("--note", default="", help="Free text kept with the entry.")
@format_option
def credit_add(client_id, amount, reference, note, fmt):
    """Record a top-up. Run again with the same --reference, nothing is added twice.

    \b
    Example: voipctl credit add 42 10.00 --reference T1
    """
    _local_ledger_only()
    with get_app().store().transaction() as session:
        posted = accounts.add_credit(session, client_id, amount, reference=reference, note=note)
        _report_posted(session, posted, "top-up", fmt)


@credit.command("adjust", cls=SignedArgsCommand)
@click.argument("client_id", metavar="CLIENT", type=ID)
@click.argument("amount", metavar="SIGNED-AMOUNT", type=MONEY)
@click.option("--note", required=True, help="Why the credit is adjusted (kept in the ledger).")
@click.option("--reference", metavar="REF", help="Idempotency key (default: a new one).")
@format_option
def credit_adjust(client_id, amount, note, reference, fmt):
    """Correct a client's credit up or down; a negative amount is typed as is.

    \b
    Example: voipctl credit adjust 42 -5.00 --note "refund of duplicate top-up"
    """
    _local_ledger_only()
    with get_app().store().transaction() as session:
        posted = accounts.adjust_credit(session, client_id, amount, note=note, reference=reference)
        _report_posted(session, posted, "adjustment", fmt)


@click.command("balance")
@click.argument("client_id", metavar="CLIENT", type=ID)
@format_option
def balance(client_id, fmt):
    """Show a client's credit (exact) and the amount owing.

    \b
    Example: voipctl balance 42 --format json
    """
    app = get_app()
    with app.store().transaction() as session:
        view = accounts.balance_view(session, backend_for(app.config), client_id)
    render_one(view, fmt)


# --- invoice ---------------------------------------------------------------------------------

_INVOICE_LIST = [
    ("number", "number"),
    ("client_id", "client"),
    ("amount", "amount"),
    ("due", "due"),
    ("status", "status"),
    ("owing", "owing"),
    ("paid_at", "paid"),
]


def _invoice_out(session, invoice, fmt: str) -> None:
    view = accounts.invoice_view(invoice)
    render_one(_local_times(view, _tz_of(session, invoice.client_id), fmt), fmt)


@click.group()
def invoice():
    """Invoices recorded from the billing system: unpaid and due means owing."""


@invoice.command("add", cls=SignedArgsCommand)
@click.argument("client_id", metavar="CLIENT", type=ID)
@click.argument("amount", type=MONEY)
@click.option("--number", metavar="N", help="Invoice number (default: a new unique one).")
@click.option("--due", type=DAY, help="Due date YYYY-MM-DD (default: due at once).")
@format_option
def invoice_add(client_id, amount, number, due, fmt):
    """Record an unpaid invoice; the same number again is taken once.

    \b
    Example: voipctl invoice add 42 3.50 --number 1001 --due 2026-12-01
    """
    _local_ledger_only()
    with get_app().store().transaction() as session:
        recorded, created = accounts.add_invoice(
            session, client_id, amount, number=number, due=due.date() if due else None
        )
        if not created:
            say(
                f"voipctl: invoice {recorded.number} was already recorded: nothing written",
                err=True,
            )
        _invoice_out(session, recorded, fmt)


@invoice.command("pay")
@click.argument("number")
@format_option
def invoice_pay(number, fmt):
    """Mark an invoice paid (a payment made outside voipctl; credit is not touched).

    \b
    Example: voipctl invoice pay 1001
    """
    _local_ledger_only()
    with get_app().store().transaction() as session:
        paid, changed = accounts.pay_invoice(session, number)
        if not changed:
            say(f"voipctl: invoice {number} was already paid: nothing changed", err=True)
        _invoice_out(session, paid, fmt)


@invoice.command("list")
@click.option("--client", "client_id", type=ID, help="Only this client's invoices.")
@click.option("--unpaid", is_flag=True, help="Only unpaid invoices.")
@format_option
def invoice_list(client_id, unpaid, fmt):
    """List invoices; `owing` marks those unpaid and due.

    \b
    Example: voipctl invoice list --client 42 --unpaid
    """
    with get_app().store().transaction() as session:
        if client_id is not None:
            catalog.get_client(session, client_id)  # a mistyped id is an error, not "(none)"
        zones: dict[int, str] = {}
        rows = []
        for i in accounts.list_invoices(session, client_id, unpaid=unpaid):
            if i.client_id not in zones:
                zones[i.client_id] = _tz_of(session, i.client_id)
            # Like `invoice show`: the paid time in the client's zone (JSON: UTC).
            rows.append(_local_times(accounts.invoice_view(i), zones[i.client_id], fmt))
    render(rows, _INVOICE_LIST, fmt)


COMMANDS = [client, service, credit, balance, invoice]
