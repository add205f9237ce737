"""`voipctl rate`: rate what is unrated, or re-rate a period, under the job's lock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from voipctl.errors import NotFound
from voipctl.jobs.runner import job_run
from voipctl.rating.engine import RateReport, rate_cdrs
from voipctl.store.engine import Store
from voipctl.store.models import Client


def client_zone(store: Store, client_id: int) -> ZoneInfo:
    """The client's time zone, for --from/--to days; NotFound for an unknown client."""
    with store.transaction() as session:
        client = session.get(Client, client_id)
        if client is None:
            raise NotFound(f"no client {client_id}")
        return ZoneInfo(client.timezone or "UTC")


def run(
    store: Store,
    *,
    client_id: int | None = None,
    rerate: tuple[datetime, datetime] | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    locked: bool = False,
) -> RateReport:
    """Hold the `rate` lock (exit 75 when another run has it) and rate, or re-rate.

    The run is recorded in job_runs with the report as its summary; calls that
    entered no_rate or invalid_number make it a run with failures. `locked`: the
    caller holds the lock already (the CLI's job runner).
    """
    with job_run(store, "rate", dry_run=dry_run, lock=not locked) as state:
        report = rate_cdrs(
            store, client_id=client_id, rerate=rerate, dry_run=dry_run, progress=progress
        )
        state.summary.update(report.as_dict())
        for status, count in sorted(report.entered.items()):
            state.fail(f"{count} CDRs entered {status}")
    return report
