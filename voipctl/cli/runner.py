"""The one place a job command runs its job: the lock, the job_runs record, what is
printed and the exit status (docs/cli.md; docs/internals.md, "One shape for every job").

    return run_job("autobill", work, dry_run=dry_run)

`work` does the job and returns its `JobReport`. With `record` (the default) the
runner opens the job_runs record, which takes the job's lock, and hands `work`
its `RunState`; a job that records its own run (pull-cdrs, rate) is run with
`record=False`: the runner takes the lock and the job records its run under it.
`lock=False` is for what has no lock (status) or takes its own only when it has
work to do (pull-cdrs --retry-rejected). A dry run takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import click

from voipctl.cli.app import get_app
from voipctl.cli.output import say, to_json
from voipctl.jobs.report import JobReport
from voipctl.jobs.runner import RunState, job_run
from voipctl.store.locks import job_lock


def run_job(
    job: str,
    work: Callable[[RunState | None], JobReport],
    *,
    dry_run: bool = False,
    record: bool = True,
    lock: bool = True,
    json: bool = False,
) -> int:
    """Run `work` as the job `job`, print its report and return its exit status."""
    app = get_app()
    if record:
        with job_run(app.store(), job, dry_run=dry_run) as state:
            report = work(state)
    else:
        held = job_lock(app.store(), job) if lock and not dry_run else nullcontext()
        with held:
            report = work(None)
    show(report, json=json)
    return report.exit_code


def show(report: JobReport, *, json: bool = False) -> None:
    """Details and summary on stdout, failures on stderr: one format for every job.

    The summary goes out on a terminal or with -v and never with -q, except on a
    dry run or a run asked for by hand (`always`), which say it always; with
    `json` the report's JSON form takes the summary's place.
    """
    app = get_app()
    for line in report.details:
        say(line)
    if json:
        click.echo(to_json(report.as_dict()))
    elif report.summary is not None:
        if report.dry_run or report.always:
            say(report.summary)
        else:
            app.summary(report.summary)
    for line in [*report.remarks, *report.notes]:
        say(line, err=True)
    for failure in report.failures:
        say(f"voipctl: error: {failure}", err=True)
