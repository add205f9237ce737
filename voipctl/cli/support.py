"""Support commands: `cdrs`, `explain`, `statement`."""

from __future__ import annotations

import shutil

import click

from voipctl import money
from voipctl.catalog import get_client
from voipctl.cli.app import get_app
from voipctl.cli.options import (
    ID,
    WHEN,
    WholeType,
    document_format_option,
    format_option,
    parse_day_or_time,
)
from voipctl.cli.output import inert_values, render, render_one, say, say_text
from voipctl.support import cdrs as cdr_view
from voipctl.support import explain as explaining
from voipctl.support import statement as statements
from voipctl.support.common import UTC_ZONE, client_zone, local_time

raw_option = click.option(
    "--raw",
    is_flag=True,
    help="CSV: print cells exactly as stored, without the quote that keeps a spreadsheet "
    "from running =, +, -, @ cells as formulas (for machine use).",
)


def _period(date_from, date_to, zone):
    start = parse_day_or_time(date_from, zone, end=False) if date_from else None
    end = parse_day_or_time(date_to, zone, end=True) if date_to else None
    return start, end


@click.command("cdrs")
@click.argument("client_id", metavar="CLIENT", type=ID)
@click.option("--service", "service_id", type=ID, help="Only this service of the client.")
@click.option(
    "--from",
    "--since",
    "date_from",
    type=WHEN,
    help="First day or time (client's time zone): a date, ISO time, today, yesterday, 3d, 12h.",
)
@click.option("--to", "--until", "date_to", type=WHEN, help="Last day, inclusive; as --from.")
@click.option("--direction", type=click.Choice(cdr_view.DIRECTIONS), help="Only this direction.")
@click.option(
    "--number",
    "number",
    metavar="PATTERN",
    help="Raw or normalised number; * stands for any digits (1519*, *0100).",
)
@click.option(
    "--status",
    type=click.Choice([*cdr_view.STATUSES, cdr_view.UNRATED]),
    help="Only calls in this rating status (unrated: not rated yet).",
)
@click.option("--all", "show_all", is_flag=True, help="Show suppressed calls too.")
@click.option("--limit", type=WholeType(low=1), help="At most N calls (the newest).")
@click.option("--utc", is_flag=True, help="Show times in UTC, not the client's time zone.")
@click.option("--wide", is_flag=True, help="Table: every column, whatever the terminal's width.")
@click.option(
    "--columns",
    "column_names",
    metavar="A,B,...",
    help="Table: these columns, in this order (id, start, service, direction, caller, "
    "number, normalized, billsec, billable, time, status, prefix, destination, cost, billed).",
)
@format_option
@raw_option
def cdrs(
    client_id,
    service_id,
    date_from,
    date_to,
    direction,
    number,
    status,
    show_all,
    limit,
    utc,
    wide,
    column_names,
    fmt,
    raw,
):
    """A client's calls, newest first, with how each was rated and whether it was billed.

    Times are shown in the client's time zone (with the UTC offset, so the hour
    repeated when DST ends shows two distinct calls); --from/--to are whole days
    there. The table ends with a totals line; CSV and JSON carry rows alone.
    The table shows id, start, direction, number, destination, billable time,
    cost and status, cut to the terminal's width (COLUMNS); --wide or --columns
    show others. CSV and JSON always carry every column.

    \b
    Example: voipctl cdrs 42 --from 2026-11-01 --to 2026-11-30 --number '1519*'
    """
    store = get_app().store()
    with store.transaction() as session:
        client = get_client(session, client_id)
        zone = client_zone(client)
        start, end = _period(date_from, date_to, zone)
        query = cdr_view.CdrQuery(
            client_id=client_id,
            service_id=service_id,
            start=start,
            end=end,
            direction=direction,
            number=number,
            status=status,
            show_all=show_all,
            limit=limit,
        )
        shown_zone = UTC_ZONE if utc else zone

        def headed(pairs):
            return [
                (key, f"start ({shown_zone.key})" if key == "start_local" else header)
                for key, header in pairs
            ]

        columns = headed(cdr_view.TABLE_COLUMNS)
        names = [n.strip() for n in column_names.split(",")] if column_names else None
        table = headed(cdr_view.table_columns(names, wide))
        rows = cdr_view.iter_cdrs(session, query)
        if fmt == "json":
            render((), columns, fmt, json_rows=(cdr_view.json_row(r) for r in rows))
        elif fmt == "csv":
            render((cdr_view.display_row(r, shown_zone) for r in rows), columns, fmt, raw=raw)
        else:
            totals = cdr_view.Totals()
            shown = []
            for row in rows:
                totals.add(row)
                shown.append(cdr_view.display_row(row, shown_zone))
            fit = not (wide or column_names)
            render(
                shown,
                table,
                fmt,
                footer=f"total: {totals.line()}",
                width=shutil.get_terminal_size().columns if fit else None,
                shrink=cdr_view.SHRINKABLE,
            )


_ENTRY_COLUMNS = [
    ("created_at", "date"),
    ("kind", "kind"),
    ("amount", "amount"),
    ("balance", "balance"),
    ("reference", "reference"),
    ("note", "note"),
]
_USAGE_COLUMNS = [
    ("prefix", "prefix"),
    ("description", "destination"),
    ("calls", "calls"),
    ("minutes", "minutes"),
    ("cost", "cost"),
]


@click.command("statement")
@click.argument("client_id", metavar="CLIENT", type=ID)
@click.option(
    "--from",
    "--since",
    "date_from",
    type=WHEN,
    help="First day (default: the 1st): a date, ISO time, today, yesterday, 3d, 12h.",
)
@click.option("--to", "--until", "date_to", type=WHEN, help="Last day, inclusive (default: today).")
@format_option
@raw_option
def statement(client_id, date_from, date_to, fmt, raw):
    """Opening balance, every top-up, charge, adjustment and reversal, closing balance,
    and the period's calls summed per destination.

    Days are whole days in the client's time zone; the default period is this
    month so far. CSV prints two blocks: the ledger (with opening and closing
    rows), a blank line, then the usage.

    \b
    Example: voipctl statement 42 --from 2026-11-01 --to 2026-11-30 --format csv
    """
    store = get_app().store()
    with store.transaction() as session:
        client = get_client(session, client_id)
        zone = client_zone(client)
        start, end = _period(date_from, date_to, zone)
        stmt = statements.build_statement(session, client, start, end)
        if fmt == "json":
            render_one(stmt.to_json(), fmt)
            return
        usage = [statements.usage_row(u) for u in stmt.usage]
        opening = {"kind": "opening", "balance": money.fmt(stmt.opening, statements.PLACES)}
        closing = {"kind": "closing", "balance": money.fmt(stmt.closing, statements.PLACES)}
        opening["created_at"] = local_time(stmt.start, zone)
        closing["created_at"] = local_time(stmt.end, zone)
        entries = [statements.entry_row(entry, bal, zone) for entry, bal in stmt.entries]
        if fmt == "csv":
            render([opening, *entries, closing], _ENTRY_COLUMNS, fmt, raw=raw)
            say("")
            render(usage, _USAGE_COLUMNS, fmt, raw=raw)
            return
        name = " ".join(p for p in (client.first_name, client.last_name) if p)
        say(f"Statement of client {client.id} ({name}), {client.currency}")
        say(f"Period: {stmt.period_label()}")
        say(f"Opening balance: {opening['balance']}")
        say("")
        render(entries, _ENTRY_COLUMNS, fmt)
        say("")
        say(f"Closing balance: {closing['balance']}")
        say("")
        say("Usage by destination (rated calls)")
        total = statements.usage_row(stmt.usage_total)
        footer = f"total: {total['calls']} calls, {total['minutes']} minutes, cost {total['cost']}"
        render(usage, _USAGE_COLUMNS, fmt, footer=footer)


@click.command("explain")
@click.argument("cdr_id", metavar="CDR_ID", type=ID)
@document_format_option
def explain(cdr_id, fmt):
    """The whole story of one call: the provider's record, how it was rated, the free
    minutes it used, the ledger entry that billed it and any re-rating.

    \b
    Example: voipctl explain 123456 --format json
    """
    app = get_app()
    store = app.store()
    with store.transaction() as session:
        doc = explaining.explain_cdr(session, cdr_id, app.config)
    if fmt == "json":
        render_one(doc, fmt)
    else:
        # Values (names, numbers, provider ids, the provider's record) are made inert
        # before they are laid out in lines, so none can forge a line of its own.
        say_text(explaining.explain_text(inert_values(doc)))


COMMANDS = [cdrs, statement, explain]
