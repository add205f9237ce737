"""Support commands: `cdrs`, `explain`, `statement`."""

from __future__ import annotations

import click

from voipctl.cli.app import get_app
from voipctl.cli.options import format_option, parse_day_or_time
from voipctl.cli.output import render
from voipctl.support import cdrs as cdr_view
from voipctl.support.common import UTC_ZONE, client_zone, load_client

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
@click.argument("client_id", metavar="CLIENT", type=int)
@click.option("--service", "service_id", type=int, help="Only this service of the client.")
@click.option("--from", "date_from", metavar="DATE", help="First day (client's time zone).")
@click.option("--to", "date_to", metavar="DATE", help="Last day, inclusive.")
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
@click.option("--limit", type=click.IntRange(min=1), help="At most N calls (the newest).")
@click.option("--utc", is_flag=True, help="Show times in UTC, not the client's time zone.")
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
    fmt,
    raw,
):
    """A client's calls, newest first, with how each was rated and whether it was billed.

    Times are shown in the client's time zone (with the UTC offset, so the hour
    repeated when DST ends shows two distinct calls); --from/--to are whole days
    there. The table ends with a totals line; CSV and JSON carry rows alone.

    Example: voipctl cdrs 42 --from 2026-11-01 --to 2026-11-30 --number '1519*'
    """
    store = get_app().store()
    with store.session() as session:
        client = load_client(session, client_id)
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
        columns = [
            (key, f"start ({shown_zone.key})" if key == "start_local" else header)
            for key, header in cdr_view.TABLE_COLUMNS
        ]
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
            render(shown, columns, fmt, footer=f"total: {totals.line()}")


COMMANDS = [cdrs]
