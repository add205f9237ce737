"""`voipctl whmcs ...`: WHMCS as the billing backend (sync of clients and services, postings)."""

from __future__ import annotations

import click

from voipctl.billing.whmcs import WhmcsBackend
from voipctl.billing.whmcs_sync import sync
from voipctl.cli.app import get_app
from voipctl.cli.options import dry_run_option, format_option, metrics_option
from voipctl.cli.output import render, say
from voipctl.cli.runner import run_job
from voipctl.errors import ConfigError
from voipctl.jobs.report import JobReport
from voipctl.jobs.runner import RunState
from voipctl.store.locks import job_lock

CHANGE_COLUMNS = [(k, k) for k in ("kind", "key", "action", "field", "old", "new")]


def _backend() -> WhmcsBackend:
    config = get_app().config
    if config.billing.backend != "whmcs":
        raise ConfigError(
            f'{config.source}: billing.backend is "{config.billing.backend}"; '
            'the whmcs commands need [billing] backend = "whmcs"'
        )
    return WhmcsBackend(config)


def _failures(messages: list[str]) -> int:
    for message in messages:
        say(f"voipctl: error: {message}", err=True)
    return 1 if messages else 0


@click.group()
def whmcs():
    """WHMCS as the system of record for credit, invoices, client fields and emails."""


@whmcs.command("sync")
@metrics_option("whmcs-sync")
@dry_run_option
@format_option
def whmcs_sync(dry_run, fmt):
    """Import WHMCS's clients, their custom fields and their VoIP services.

    Idempotent: a second run changes nothing. With --dry-run, prints the
    differences and writes nothing. Run it before the jobs (cron), so that
    thresholds, overrides and new services are current.

    \b
    Example: voipctl whmcs sync --dry-run
    """
    backend = _backend()
    store = get_app().store()

    def work(run: RunState) -> JobReport:
        report = sync(store, backend, dry_run=dry_run)
        run.summary.update(
            clients=report.clients, services=report.services, changes=len(report.changes)
        )
        for failure in report.failures:
            run.fail(failure)
        if dry_run:
            # The table of differences is a dry run's output (no lock, nothing recorded).
            render([change.__dict__ for change in report.changes], CHANGE_COLUMNS, fmt)
        return JobReport(
            job="whmcs-sync",
            # A dry run shows the differences instead of a summary line.
            summary=None
            if dry_run
            else f"whmcs sync: {report.clients} clients, {report.services} VoIP services, "
            f"{len(report.changes)} changes",
            failures=list(report.failures),
            data=dict(run.summary),
            dry_run=dry_run,
        )

    return run_job("whmcs-sync", work, dry_run=dry_run)


@whmcs.command("post")
@dry_run_option
def whmcs_post(dry_run):
    """Post usage charged in voipctl but not yet in WHMCS (autobill does this after charging).

    Open postings of an interrupted run are looked up in WHMCS first and sent
    only if WHMCS has no trace of them. Shares autobill's lock.

    \b
    Example: voipctl whmcs post --dry-run
    """
    app = get_app()
    backend = _backend()
    store = app.store()
    if dry_run:
        report = backend.post_usage(store, dry_run=True)
        for posting in report.planned:
            say(f"would post: {posting.describe()}")
        return 0
    with job_lock(store, "autobill"):
        report = backend.post_usage(store)
    app.summary(f"whmcs post: {len(report.posted)} postings")
    return _failures(report.failures)


COMMANDS = [whmcs]
