"""`voipctl product ...`: the VoIP packages and their rating settings (docs/rating.md §1)."""

from __future__ import annotations

from collections.abc import Callable

import click

from voipctl import catalog
from voipctl.cli.app import get_app
from voipctl.cli.options import INCREMENT, WHOLE, format_option
from voipctl.cli.output import render, render_one


def _none_or(text: str) -> str | None:
    return None if text.strip().lower() in ("none", "") else text


def product_options(fn: Callable) -> Callable:
    """Every rating setting of docs/cli.md, written once for `add` and `set` (None: not given)."""
    options = [
        click.option(
            "--metered/--unmetered",
            default=None,
            help="Charge calls per minute (default), or keep CDRs and charge 0.",
        ),
        click.option("--country-code", metavar="CC", help="Country of the PBX (default 1, NANP)."),
        click.option(
            "--exit-code",
            metavar="DIGITS",
            help="International dialling prefix (default 011 when the country code is 1, else 00).",
        ),
        click.option(
            "--national-prefix",
            metavar="DIGITS",
            help="Trunk prefix to strip, e.g. 0 ('none' clears it); see --prepend-country-code.",
        ),
        click.option(
            "--prepend-country-code/--no-prepend-country-code",
            default=None,
            help="Replace a leading national prefix by the country code.",
        ),
        click.option(
            "--nanp-10-digit/--no-nanp-10-digit",
            default=None,
            help="Prepend 1 to 10-digit numbers starting 2-9 (default on when country code is 1).",
        ),
        click.option("--markup", metavar="PCT", help="Percent added to deck rates (default 0)."),
        click.option(
            "--free-minutes",
            type=WHOLE,
            metavar="N",
            help="Free minutes per service per calendar month (default 0).",
        ),
        click.option(
            "--bill-inbound/--no-bill-inbound",
            default=None,
            help="Rate inbound calls against inbound rates (default off).",
        ),
        click.option(
            "--increment",
            type=INCREMENT,
            help="Default outbound billing increment A/B, e.g. 60/6 (default 60/60).",
        ),
        click.option(
            "--inbound-increment",
            type=INCREMENT,
            help="Default inbound billing increment A/B (default 60/60).",
        ),
        click.option(
            "--decimals",
            type=WHOLE,
            metavar="N",
            help="Round each call's cost half-up to N decimals (default 4).",
        ),
        click.option(
            "--exclude",
            metavar="PATTERNS",
            help='Numbers never billed, e.g. "911,1800xxxxxxx,*xx" (x: any one digit).',
        ),
        click.option(
            "--suppress",
            metavar="PATTERNS",
            help="Numbers neither billed nor shown by default, same syntax as --exclude.",
        ),
        click.option(
            "--max-internal-digits",
            type=WHOLE,
            metavar="N",
            help="Numbers of N digits or fewer are internal calls (default 6).",
        ),
        click.option(
            "--area-code",
            metavar="NXX",
            help="NANP home area code for 7-digit numbers ('none' clears it).",
        ),
        click.option(
            "--currency",
            metavar="CUR",
            help="Currency the deck is priced in (default: [billing] currency of the "
            "configuration); only clients paying in it can have the product.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _settings(options: dict) -> dict:
    """The options that were given, under the library's setting names."""
    names = {"markup": "markup_percent"}
    settings = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in ("national_prefix", "area_code"):
            value = _none_or(value)
        settings[names.get(key, key)] = value
    return settings


_LIST_COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("metered", "metered"),
    ("country_code", "cc"),
    ("exit_code", "exit"),
    ("markup_percent", "markup%"),
    ("free_minutes", "free min"),
    ("increment", "increment"),
    ("inbound_increment", "in incr"),
    ("bill_inbound", "bill in"),
    ("decimals", "decimals"),
    ("currency", "cur"),
]


@click.group()
def product():
    """VoIP packages ("products") and their rating settings."""


@product.command("add")
@click.argument("name")
@product_options
@format_option
def product_add(name, fmt, **options):
    """Create a product; settings not given take the defaults (country code 1, 60/60, ...).

    \b
    Example: voipctl product add "Canada Metered" --increment 6/6 --free-minutes 100
    """
    app = get_app()
    settings = _settings(options)
    settings.setdefault("currency", app.config.billing.currency)
    with app.store().transaction() as session:
        view = catalog.product_view(catalog.add_product(session, name, **settings))
    render_one(view, fmt)


@product.command("set")
@click.argument("name")
@product_options
@format_option
def product_set(name, fmt, **options):
    """Change settings of a product; settings not given stay as they are.

    \b
    Example: voipctl product set "Canada Metered" --markup 15 --exclude "911,*xx"
    """
    with get_app().store().transaction() as session:
        view = catalog.product_view(catalog.update_product(session, name, **_settings(options)))
    render_one(view, fmt)


@product.command("list")
@format_option
def product_list(fmt):
    """List the products.

    \b
    Example: voipctl product list --format csv
    """
    with get_app().store().transaction() as session:
        rows = [catalog.product_view(p) for p in catalog.list_products(session)]
    render(rows, _LIST_COLUMNS, fmt)


@product.command("show")
@click.argument("name")
@format_option
def product_show(name, fmt):
    """Show every setting of one product.

    \b
    Example: voipctl product show "Canada Metered" --format json
    """
    with get_app().store().transaction() as session:
        view = catalog.product_view(catalog.get_product(session, name))
    render_one(view, fmt)


COMMANDS = [product]
