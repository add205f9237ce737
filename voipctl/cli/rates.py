"""`voipctl rates ...` (decks, overrides, quotes) and the `voipctl rate` job."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import click

from voipctl import money
from voipctl.catalog import get_product
from voipctl.cli.app import get_app
from voipctl.cli.options import (
    COUNT,
    INCREMENT,
    MONEY,
    WHEN,
    SignedArgsCommand,
    client_option,
    dry_run_option,
    format_option,
    metrics_option,
    parse_day_or_time,
)
from voipctl.cli.output import render, render_one, say, to_json
from voipctl.cli.runner import run_job
from voipctl.jobs import rate as rate_job
from voipctl.jobs.report import JobReport
from voipctl.jobs.runner import RunState
from voipctl.rating import deck, quote

UTC_ZONE = ZoneInfo("UTC")
DIRECTION = click.Choice(["outbound", "inbound"])


def _at(value: str | None) -> datetime:
    return parse_day_or_time(value, UTC_ZONE, end=False) if value else datetime.now(UTC)


class _ProgressLine:
    """A running count on stderr (rated calls, imported rates), on a terminal only (docs/cli.md)."""

    def __init__(self, label: str = "rate", unit: str = "CDRs") -> None:
        self.label = label
        self.unit = unit
        self.done = 0

    def __call__(self, count: int) -> None:
        self.done += count
        click.echo(f"\r{self.label}: {self.done:,} {self.unit}", err=True, nl=False)

    def close(self) -> None:
        if self.done:
            click.echo("", err=True)


def _warn(message: str) -> None:
    say(f"voipctl: warning: {message}", err=True)


@click.group()
def rates():
    """Rate decks of a product: import, overrides, listing and quotes."""


@rates.command("import")
@click.argument("product")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--effective",
    metavar="ISO-DATE",
    help="When the new rates come into force (default now; a date is midnight UTC).",
)
@dry_run_option
@format_option
def rates_import(product, file, effective, dry_run, fmt):
    """Import a deck CSV as a new version of PRODUCT's rates.

    The file replaces only the directions it contains. Any bad row fails the
    whole import with FILE:LINE on stderr, and the previous rates stay in force.

    \b
    Example: voipctl rates import Standard deck-2026-01.csv --effective 2026-01-01
    """
    app = get_app()
    on_terminal = sys.stderr.isatty() and app.verbosity >= 0
    counter = _ProgressLine("rates import", "rates") if on_terminal else None
    try:
        result = deck.import_deck_file(
            app.store(),
            product,
            file,
            effective_from=_at(effective),
            dry_run=dry_run,
            progress=counter,
        )
    finally:
        if counter is not None:
            counter.close()
    for name in result.unknown_columns:
        _warn(f"{file}:1: column {name!r} is not a deck column; ignored")
    if fmt == "json":
        click.echo(to_json(result.as_dict()))
        return
    by_direction = ", ".join(f"{n} {d}" for d, n in result.rows.items())
    if dry_run:
        say(
            f"dry run: {file} would import {sum(result.rows.values())} rates ({by_direction}) "
            f"for {product}, effective {result.effective_from.isoformat()}; nothing written"
        )
    else:
        say(
            f"deck version {result.version_id} of {product}: {sum(result.rows.values())} rates "
            f"({by_direction}), effective {result.effective_from.isoformat()}"
        )


@rates.command("override", cls=SignedArgsCommand)
@click.argument("product")
@click.argument("prefix")
@click.argument("rate", type=MONEY, required=False)
@click.option("--increment", type=INCREMENT, help="A/B increment (default: the product's).")
@click.option("--connect-fee", type=MONEY, default=Decimal(0), help="Per-call connect fee.")
@click.option("--description", default="", help="Shown with the rate.")
@click.option(
    "--direction",
    type=DIRECTION,
    default="outbound",
    show_default=True,
    help="Which calls the override prices: outbound (dialled) or inbound (received).",
)
@click.option("--remove", is_flag=True, help="Remove the override of PREFIX.")
@format_option
def rates_override(
    product, prefix, rate, increment, connect_fee, description, direction, remove, fmt
):
    """Set (or --remove) a custom rate for PREFIX that beats the deck; no markup applies.

    \b
    Example: voipctl rates override Standard 1212 0.015 --increment 1/1
    """
    app = get_app()
    with app.store().transaction() as session:
        prod = get_product(session, product)
        if remove:
            removed_id = deck.remove_override(session, prod, prefix, direction)
            if fmt == "json":
                # --format json gets a document here too, for scripts that read every answer.
                removed = {"product": product, "direction": direction, "prefix": prefix}
                click.echo(to_json({"id": removed_id, **removed, "removed": True}))
            else:
                say(f"override {direction} {prefix} of {product} removed")
            return
        if rate is None:
            raise click.UsageError("RATE is required unless --remove is given")
        row = deck.set_override(
            session,
            prod,
            prefix,
            rate,
            direction=direction,
            increment=increment,
            connect_fee=connect_fee,
            description=description,
        )
        view = {
            "id": row.id,
            "product": product,
            "direction": row.direction,
            "prefix": row.prefix,
            "rate": money.fmt(row.rate, 2),
            "increment": f"{row.increment_a}/{row.increment_b}" if row.increment_a else None,
            "connect_fee": money.fmt(row.connect_fee, 2),
            "description": row.description,
        }
    if fmt == "json":
        click.echo(to_json(view))
    else:
        render_one(view, fmt)


_RATE_COLUMNS = [
    ("direction", "direction"),
    ("prefix", "prefix"),
    ("description", "description"),
    ("rate", "rate"),
    ("increment", "increment"),
    ("connect_fee", "connect fee"),
    ("source", "source"),
    ("version", "version"),
]


@rates.command("list")
@click.argument("product")
@click.option("--prefix", "prefix", metavar="P", help="Only prefixes starting with P.")
@click.option("--at", type=WHEN, help="The rates in force at this time (default now); as --since.")
@format_option
def rates_list(product, prefix, at, fmt):
    """List the rates of PRODUCT in force (deck and overrides), longest match wins.

    \b
    Example: voipctl rates list Standard --prefix 1519 --format csv
    """
    app = get_app()
    with app.store().transaction() as session:
        prod = get_product(session, product)
        rows = list(quote.rates_in_force(session, prod, _at(at), prefix=prefix))
    render(rows, _RATE_COLUMNS, fmt)


@rates.command("versions")
@click.argument("product")
@format_option
def rates_versions(product, fmt):
    """List the deck versions of PRODUCT, and which is in force per direction.

    \b
    Example: voipctl rates versions Standard
    """
    app = get_app()
    with app.store().transaction() as session:
        prod = get_product(session, product)
        rows = quote.version_rows(session, prod, datetime.now(UTC))
    render(
        rows,
        [
            ("id", "id"),
            ("effective_from", "effective from (UTC)"),
            ("directions", "directions"),
            ("rows", "rows"),
            ("in_force", "in force"),
            ("source", "source"),
        ],
        fmt,
    )


@rates.command("quote")
@click.argument("product")
@click.argument("number")
@click.argument("seconds", type=COUNT)
@click.option(
    "--direction",
    type=DIRECTION,
    default="outbound",
    show_default=True,
    help="Price the call as outbound (dialled) or inbound (received).",
)
@click.option("--at", type=WHEN, help="Rates in force at this time (default now); as --since.")
@format_option
def rates_quote(product, number, seconds, direction, at, fmt):
    """What a call of SECONDS to NUMBER costs on PRODUCT (no free minutes applied).

    \b
    Example: voipctl rates quote Standard +15195550100 61 --format json
    """
    app = get_app()
    with app.store().transaction() as session:
        prod = get_product(session, product)
        doc = quote.quote(session, prod, number, seconds, direction=direction, at=_at(at))
    if fmt == "json":
        click.echo(to_json(doc))
    else:
        render_one(doc, fmt)


@click.command("rate")
@metrics_option("rate")
@client_option
@click.option("--rerate", is_flag=True, help="Rate CDRs of --from..--to again (billed: corrected).")
@click.option(
    "--from",
    "--since",
    "from_",
    type=WHEN,
    help="First day to re-rate (inclusive): a date, ISO time, today, yesterday, 3d, 12h.",
)
@click.option("--to", "--until", "to", type=WHEN, help="Last day to re-rate (inclusive).")
@dry_run_option
@format_option
def rate(client_id, rerate, from_, to, dry_run, fmt):
    """Rate every unrated CDR (and no_rate / invalid_number ones again).

    Exits 1 when calls entered no_rate or invalid_number in this run. With
    --rerate, rates the calls of --from..--to again with the rates in force at
    each call's start; calls already billed get a reversal and a new charge.

    \b
    Example: voipctl rate --rerate --from 2026-01-01 --to 2026-01-31 --client 42
    """
    app = get_app()
    if rerate and not (from_ and to):
        raise click.UsageError("--rerate needs --from DATE and --to DATE")
    if (from_ or to) and not rerate:
        raise click.UsageError("--from and --to go with --rerate")
    store = app.store()
    window = None
    if rerate:
        tz = rate_job.client_zone(store, client_id) if client_id is not None else UTC_ZONE
        window = (parse_day_or_time(from_, tz, end=False), parse_day_or_time(to, tz, end=True))
        if window[0] >= window[1]:
            raise click.UsageError("--from must be before --to")
    counter = _ProgressLine() if sys.stderr.isatty() and app.verbosity >= 0 else None

    def work(_state: RunState | None) -> JobReport:
        # The rate job records its run under the lock the runner holds.
        try:
            report = rate_job.run(
                store,
                client_id=client_id,
                rerate=window,
                dry_run=dry_run,
                progress=counter,
                locked=True,
            )
        finally:
            if counter is not None:
                counter.close()
        failures = []
        if report.failures:
            entered = ", ".join(f"{n} entered {s}" for s, n in sorted(report.entered.items()))
            failures.append(
                f"rate: {entered}; see `voipctl cdrs CLIENT --status no_rate` (or invalid_number)"
            )
        return JobReport(
            job="rate",
            summary=report.line(),
            failures=failures,
            data=report.as_dict(),
            dry_run=dry_run,
        )

    return run_job("rate", work, dry_run=dry_run, record=False, json=fmt == "json")


COMMANDS = [rates, rate]
