"""Delivering the emails a job decided, after its decisions are committed."""

from __future__ import annotations

from voipctl.billing.backend import BillingBackend
from voipctl.config import Config
from voipctl.jobs.runner import RunState
from voipctl.store.engine import Store


def deliver(store: Store, config: Config, backend: BillingBackend, run: RunState) -> None:
    """Deliver queued emails; each failure is a run failure (exit 1), retried on the next run."""
    delivery = backend.deliver_alerts(store, config)
    run.summary["emails_sent"] = delivery.sent
    if delivery.failed or delivery.pending:
        run.summary["emails_pending"] = delivery.failed + delivery.pending
    for error in delivery.errors:
        run.fail(error)
