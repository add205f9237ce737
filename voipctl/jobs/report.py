"""The one shape every job's run comes back in, for the CLI's job runner to print.

A job (pull-cdrs, rate, autobill, ...) does its work and describes it as a
`JobReport`: the one summary line, the failures, the exit status and the
figures as JSON. The runner (voipctl/cli/runner.py) decides what of it is shown
where; the job never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voipctl.errors import EXIT_FAILURES, EXIT_OK


@dataclass
class JobReport:
    """What one run of a job did.

    `summary` is the whole line, job name first (`autobill: 3 charges, ...`), or
    None where the job prints no summary (suspend, status). `failures` are shown
    one a line as `voipctl: error: ...`; `notes` are stderr lines already worded
    for the operator (records set aside), shown as they are; both make the exit
    status 1, and so do `problems` (stale items status shows in its own output).
    `remarks` are stderr lines that leave the status alone (a server another run
    was pulling, skipped: that run pulls it).
    `details` are stdout lines printed before the summary (what a dry run would
    do, each decision with -v). `always` prints the summary even when cron runs
    the job (a run asked for by hand). `data` is the job's figures.
    """

    job: str
    summary: str | None = None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    problems: int = 0
    dry_run: bool = False
    always: bool = False

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURES if self.failures or self.notes or self.problems else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """The run's figures as JSON (what `rate --format json` prints)."""
        return dict(self.data)


def summary_of(job: str, figures: str, *, dry_run: bool) -> str:
    """`JOB: FIGURES`, or `JOB (dry run): FIGURES`: the billing jobs' summary line."""
    return f"{job} (dry run): {figures}" if dry_run else f"{job}: {figures}"
