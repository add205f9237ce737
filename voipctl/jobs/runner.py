"""What every job does around its work: the lock, a job_runs row, and the outcome.

    with job_run(store, "autobill", dry_run=dry_run) as run:
        ...                      # the job's work
        run.summary["charged"] = 12
        run.fail("vodia1: credentials refused")   # done with failures -> exit 1

A dry run takes no lock and records no run: it writes nothing at all. `lock=False`
is for a caller that holds the job's lock already (the CLI's job runner).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from voipctl.errors import EXIT_FAILURES, EXIT_OK
from voipctl.store.engine import Store
from voipctl.store.locks import job_lock
from voipctl.store.models import JobRun


@dataclass
class RunState:
    job: str
    dry_run: bool
    summary: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    run_id: int | None = None

    def fail(self, message: str) -> None:
        """Record a failure: the job goes on, and exits 1 at the end."""
        self.failures.append(message)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILURES if self.failures else EXIT_OK


@contextmanager
def job_run(
    store: Store, job: str, *, dry_run: bool = False, lock: bool = True
) -> Iterator[RunState]:
    """Hold the job's lock (not on a dry run, nor when the caller holds it) and record
    the run in job_runs."""
    state = RunState(job=job, dry_run=dry_run)
    held = nullcontext() if dry_run or not lock else job_lock(store, job)
    with held:
        if not dry_run:
            with store.transaction() as session:
                row = JobRun(
                    job=job,
                    started_at=datetime.now(UTC),
                    status="running",
                    host=socket.gethostname(),
                    pid=os.getpid(),
                )
                session.add(row)
                session.flush()
                state.run_id = row.id
        status = "failed"
        try:
            yield state
            status = "failed" if state.failures else "ok"
        finally:
            if state.run_id is not None:
                summary = dict(state.summary)
                if state.failures:
                    summary["failures"] = state.failures[:50]
                with store.transaction() as session:
                    session.execute(
                        update(JobRun)
                        .where(JobRun.id == state.run_id)
                        .values(finished_at=datetime.now(UTC), status=status, summary=summary)
                    )
