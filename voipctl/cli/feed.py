"""`voipctl feed inspect`: tell a file feed's layout and propose its configuration."""

from __future__ import annotations

import click

from voipctl.cli.app import get_app
from voipctl.cli.options import format_option
from voipctl.cli.output import inert, render, say, say_text, to_json
from voipctl.jobs.feed_inspect import inspect_feed

COLUMNS = [
    ("line", "line"),
    ("start", "start (UTC)"),
    ("direction", "direction"),
    ("caller", "caller"),
    ("number", "number"),
    ("seconds", "seconds"),
    ("service", "service"),
    ("status", "status"),
    ("cost", "cost"),
    ("reason", "reason"),
]


@click.group("feed")
def feed():
    """File feeds whose layout is configuration (LES.NET's CDR file)."""


@feed.command("inspect")
@click.option("--server", "server_name", metavar="NAME", required=True, help="A configured server.")
@click.option(
    "--product", metavar="NAME", help="Rate rows of no service with this product's rates."
)
@format_option
@click.argument("source", metavar="FILE|URL")
def feed_inspect(server_name, product, fmt, source):
    """Tell a CDR file's layout from its first lines and propose its configuration.

    Reads the first 20 lines (a URL through the server's HTTP client, only its
    first part), shows the delimiter, header, date format and time zone it
    found, prints a [servers.NAME.cdr_format] block to paste into the
    configuration, and reads and rates each row with it as pull-cdrs and rate
    would (nothing is written). A row the block cannot read names its line and
    column. Exits 1 when a row cannot be read, 2 when the server has no file
    feed.

    \b
    Example: voipctl feed inspect --server les1 https://portal.les.net/cdr/11330_0000.txt
    """
    app = get_app()
    found = inspect_feed(app.store(), app.config, server_name, source, product=product)
    refused = sum(1 for row in found.rows if row.get("status") == "refused")
    if fmt == "json":
        click.echo(
            to_json(
                {
                    "server": found.server,
                    "source": found.source,
                    "lines": found.lines,
                    "detected": dict(found.layout.facts),
                    "notes": found.layout.notes,
                    "table": found.layout.table,
                    "settings": found.layout.settings,
                    "rows": found.rows,
                }
            )
        )
        return 1 if refused else 0
    if fmt == "csv":
        render(found.rows, COLUMNS, "csv")
        return 1 if refused else 0
    say(f"feed inspect: {found.server}: {inert(found.source)} (first {found.lines} lines)")
    width = max(len(what) for what, _ in found.layout.facts)
    for what, value in found.layout.facts:
        say(f"{what.ljust(width)}: {inert(value)}")
    for note in found.layout.notes:
        say(f"note: {inert(note)}")
    say("")
    say("Proposed configuration:")
    say_text(found.block, nl=False)
    say("")
    say("The first rows read and rated with it:")
    render(found.rows, COLUMNS, "table")
    return 1 if refused else 0


COMMANDS = [feed]
