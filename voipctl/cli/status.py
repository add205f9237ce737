"""`voipctl status`: the jobs, the servers and the backlog; exit 1 when something is stale."""

from __future__ import annotations

import click

from voipctl import status as status_lib
from voipctl.cli.app import get_app
from voipctl.cli.output import render, say, to_json
from voipctl.cli.runner import run_job
from voipctl.jobs.report import JobReport
from voipctl.jobs.runner import RunState

JOB_COLUMNS = [
    ("job", "job"),
    ("started", "last run"),
    ("took", "took"),
    ("result", "result"),
    ("did", "did"),
    ("last_success", "last success"),
    ("every", "stale after"),
]
SERVER_COLUMNS = [
    ("server", "server"),
    ("type", "type"),
    ("services", "services"),
    ("last_success", "last good pull"),
    ("newest_call", "newest call"),
    ("stored", "calls stored"),
    ("every", "stale after"),
    ("error", "last error"),
]


def _did(job: status_lib.JobStatus) -> str:
    # Per server (pull-cdrs) only the calls stored, so the table stays narrow; JSON has all.
    parts = []
    for name, labels, value in job.figures():
        if "server" in labels:
            if name == "calls":
                parts.append(f"{labels['server']}: {value} calls")
        else:
            parts.append(f"{name.replace('_', ' ')} {value}")
    return ", ".join(parts)


def _table(status: status_lib.Status) -> None:
    say("jobs")
    rows = [
        {
            "job": j.job,
            "started": status_lib.stamp(j.last_started_at),
            "took": "" if j.duration_s is None else f"{j.duration_s:.1f}s",
            "result": j.last_status or "",
            "did": _did(j),
            "last_success": status_lib.stamp(j.last_success_at),
            "every": status_lib.span(j.interval_minutes) if j.interval_minutes else "-",
        }
        for j in status.jobs
    ]
    render(rows, JOB_COLUMNS, "table")
    say("\nservers")
    rows = [
        {
            "server": s.server,
            "type": s.type or "",
            "services": s.active_services,
            "last_success": status_lib.stamp(s.last_success_at),
            "newest_call": status_lib.stamp(s.newest_call_at),
            "stored": s.cdrs_stored_total,
            "every": status_lib.span(s.interval_minutes) if s.interval_minutes else "-",
            "error": s.last_error or "",
        }
        for s in status.servers
    ]
    render(rows, SERVER_COLUMNS, "table")
    assert status.backlog is not None
    say("\nbacklog")
    shown = {
        "unrated": "calls not rated yet",
        "no_rate": "calls in no_rate",
        "invalid_number": "calls in invalid_number",
        "unbilled": "rated calls not billed",
        "emails_pending": "emails waiting",
        "emails_failed": "emails failing",
    }
    width = max(len(v) for v in shown.values())
    for key, label in shown.items():
        item = status.backlog[key]
        since = f" since {status_lib.stamp(item.since)}" if item.count else ""
        say(f"  {label.ljust(width)}  {item.count}{since}")
    say(f"  {'services: manual action'.ljust(width)}  {status.manual_action_services}")
    say(f"  {'clients suspended'.ljust(width)}  {status.suspended_clients}")
    say("\nproblems")
    for problem in status.problems:
        say(f"  {problem.line}")
    if not status.problems:
        say("  none: nothing is stale")


@click.command("status")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "prometheus"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--notify",
    is_flag=True,
    help="Mail email.operator once when a problem appears and once when it clears.",
)
def status(fmt, notify):
    """Is billing working? Each job's last run, each server's last pull, the backlog.

    Exits 1 when something is stale: a job with no successful run within its
    interval, a server with no successful pull within its own, a backlog older
    than its limit ([status] in the configuration); one line per problem (with
    -q, only those lines, and with --notify not even those: the email tells).

    \b
    Example: voipctl status --format json
    """
    app = get_app()
    store = app.store()
    config = app.config

    def work(_state: RunState | None) -> JobReport:
        failures: list[str] = []
        if notify:
            result, notified = status_lib.notify(store, config)
            delivery = notified.delivery
            failures = list(delivery.errors) if delivery is not None else []
        else:
            with store.transaction() as session:
                result = status_lib.gather(session, config)
        # The status itself is the output (table, JSON, Prometheus), not a summary line.
        if fmt == "json":
            click.echo(to_json(result.as_dict()))
        elif fmt == "prometheus":
            click.echo(status_lib.exposition(status_lib.families(result)), nl=False)
        elif app.verbosity >= 0:
            _table(result)
        elif not notify:
            for problem in result.problems:
                say(problem.line)
        return JobReport(job="status", failures=failures, problems=len(result.problems))

    # It reads and takes no lock: no record of its own in job_runs.
    return run_job("status", work, record=False, lock=False)


COMMANDS = [status]
