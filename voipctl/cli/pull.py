"""`voipctl pull-cdrs`: parse the options, run the job, print what it did."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from zoneinfo import ZoneInfo

import click

from voipctl.cli.app import get_app
from voipctl.cli.options import ID, client_option, dry_run_option, parse_day_or_time
from voipctl.cli.output import say
from voipctl.jobs.pull_cdrs import pull_cdrs
from voipctl.jobs.pull_cdrs import retry_rejected as retry_rejected_records

# --since/--until dates are UTC days (no client is involved).
_UTC_ZONE = ZoneInfo("UTC")


@click.command("pull-cdrs")
@click.option("--server", "server_name", metavar="NAME", help="Only this configured server.")
@client_option
@click.option("--service", "service_id", type=ID, metavar="ID", help="Only this service.")
@click.option(
    "--since",
    metavar="ISO",
    help="Read from this time (UTC unless it has an offset) instead of the watermark.",
)
@click.option("--until", metavar="ISO", help="Read calls that started before this time.")
@click.option(
    "--retry-rejected",
    is_flag=True,
    help="Read the set-aside records again (after a fix) instead of pulling; with --server only.",
)
@dry_run_option
def pull_cdrs_command(server_name, client_id, service_id, since, until, retry_rejected, dry_run):
    """Pull new call records from every configured server into the database.

    Each active service is read from where the last run stopped, minus the
    server's overlap window; calls already stored are skipped by their
    provider id. Calls are rated as they are stored where the product's deck
    has a rate; calls of products with free minutes, and those without a rate
    or with an invalid number, are left for `voipctl rate`. A failing server
    is reported on stderr and the others still run (exit status 1). A record
    that cannot be read or stored is set aside and named once on stderr (exit
    status 1); --retry-rejected reads the set-aside records again.

    Example: voipctl pull-cdrs --server vodia1 --since 2026-11-01
    """
    app = get_app()
    if retry_rejected:
        if client_id is not None or service_id is not None or since or until or dry_run:
            raise click.UsageError(
                "--retry-rejected takes --server only (not --client, --service, "
                "--since, --until or --dry-run)"
            )
        retried = retry_rejected_records(app.store(), app.config, server=server_name)
        for line in [*retried.still, *retried.errors]:
            say(line if line.startswith("pull-cdrs:") else f"voipctl: error: {line}", err=True)
        say(retried.summary_line())  # asked for by hand: always said
        return retried.exit_code
    since_at = parse_day_or_time(since, _UTC_ZONE, end=False) if since else None
    until_at = parse_day_or_time(until, _UTC_ZONE, end=True) if until else None
    if since_at and until_at and since_at >= until_at:
        raise click.BadParameter("--since must be before --until")
    config = app.config
    store = app.store()
    show_bar = sys.stderr.isatty() and app.verbosity >= 0
    bar_context = (
        click.progressbar(length=0, label="pulling calls", file=sys.stderr, show_pos=True)
        if show_bar
        else nullcontext()
    )
    with bar_context as bar:

        def progress(server: str, count: int) -> None:
            if bar is not None:
                bar.label = f"pulling calls from {server}"
                bar.length = (bar.length or 0) + count  # open-ended: count what came in
                bar.update(count)

        report = pull_cdrs(
            store,
            config,
            server=server_name,
            client_id=client_id,
            service_id=service_id,
            since=since_at,
            until=until_at,
            dry_run=dry_run,
            progress=progress,
            rate=True,
        )
    for line in report.set_aside:
        say(line, err=True)
    for failure in report.failures:
        say(f"voipctl: error: {failure}", err=True)
    if dry_run:
        say(report.summary_line())
    else:
        app.summary(report.summary_line())
    return report.exit_code


COMMANDS = [pull_cdrs_command]
