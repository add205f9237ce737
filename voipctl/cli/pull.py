"""`voipctl pull-cdrs`: parse the options, run the job, print what it did."""

from __future__ import annotations

import sys
from zoneinfo import ZoneInfo

import click

from voipctl.cli.app import get_app
from voipctl.cli.options import (
    ID,
    WHEN,
    client_option,
    dry_run_option,
    metrics_option,
    parse_day_or_time,
)
from voipctl.cli.output import ServerProgress
from voipctl.cli.runner import run_job
from voipctl.jobs.pull_cdrs import pull_cdrs
from voipctl.jobs.pull_cdrs import retry_rejected as retry_rejected_records
from voipctl.jobs.report import JobReport
from voipctl.jobs.runner import RunState

# --since/--until dates are UTC days (no client is involved).
_UTC_ZONE = ZoneInfo("UTC")


@click.command("pull-cdrs")
@metrics_option("pull-cdrs")
@click.option("--server", "server_name", metavar="NAME", help="Only this configured server.")
@client_option
@click.option("--service", "service_id", type=ID, metavar="ID", help="Only this service.")
@click.option(
    "--since",
    type=WHEN,
    help="Read from this time instead of the watermark: a date or ISO time (UTC unless it "
    "has an offset), today, yesterday, or 3d, 12h, 30m ago.",
)
@click.option(
    "--until",
    type=WHEN,
    help="Read calls that started before this time (a date: through its end); as --since.",
)
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
    status 1); --retry-rejected reads the set-aside records again. Each
    server has its own lock: a server another run is pulling is skipped with
    one line, and the run exits 75 only when all of its servers are held.

    \b
    Example: voipctl pull-cdrs --server vodia1 --since 2026-11-01
    """
    app = get_app()
    if retry_rejected:
        if client_id is not None or service_id is not None or since or until or dry_run:
            raise click.UsageError(
                "--retry-rejected takes --server only (not --client, --service, "
                "--since, --until or --dry-run)"
            )

        def retry(_state: RunState | None) -> JobReport:
            # It takes the lock itself, only when there are records to read again.
            retried = retry_rejected_records(app.store(), app.config, server=server_name)
            return JobReport(
                job="pull-cdrs",
                summary=retried.summary_line(),
                notes=list(retried.still),
                failures=list(retried.errors),
                always=True,  # asked for by hand: always said
            )

        return run_job("pull-cdrs", retry, record=False, lock=False)
    since_at = parse_day_or_time(since, _UTC_ZONE, end=False) if since else None
    until_at = parse_day_or_time(until, _UTC_ZONE, end=True) if until else None
    if since_at and until_at and since_at >= until_at:
        raise click.UsageError("--since must be before --until")
    config = app.config
    store = app.store()
    if server_name is not None:
        config.server(server_name)  # an unknown --server is a usage error, before the lock
    # Progress on a terminal only, and never with -q (docs/install.md, "Quiet and progress").
    progress = ServerProgress() if sys.stderr.isatty() and app.verbosity >= 0 else None

    def work(_state: RunState | None) -> JobReport:
        # pull_cdrs takes each server's lock and records its run itself.
        try:
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
        finally:
            if progress is not None:
                progress.close()
        return JobReport(
            job="pull-cdrs",
            summary=report.summary_line(),
            notes=report.set_aside,
            remarks=report.skipped,
            failures=list(report.failures),
            data={s.server: s.as_dict() for s in report.servers},
            dry_run=dry_run,
        )

    return run_job("pull-cdrs", work, dry_run=dry_run, record=False, lock=False)


COMMANDS = [pull_cdrs_command]
