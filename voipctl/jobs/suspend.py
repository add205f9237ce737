"""Suspending and restoring services through their provider, with an audit row each time.

The rule of docs/billing.md: a new state is recorded only after the provider
confirmed it. The provider is called outside any database transaction (a slow
PBX never holds the database), then the state, the audit row and any email the
change decides are written in one transaction. A provider that fails leaves the
state as it was and writes an audit row with ok = false.

The one exception: a `manual` lever (LES.NET by default) raises
ManualActionRequired; the state is recorded with "manual action required" and
the operator is told what to do.

`voipctl suspend` / `unsuspend` (this module's `run_manual`) are the operator's
hand: a service suspended by them is held (suspended_by = "operator") and
autosuspend never lifts it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from voipctl.config import Config
from voipctl.errors import ManualActionRequired, NotFound, UsageError
from voipctl.jobs.common import service_info
from voipctl.jobs.runner import RunState
from voipctl.providers import ProviderAdapter, adapter_for
from voipctl.store.engine import Store
from voipctl.store.models import Client, Service, SuspensionEvent

log = logging.getLogger(__name__)

AUTOSUSPEND = "autosuspend"
OPERATOR = "operator"


class Adapters:
    """One adapter per configured server for a run, closed at the end."""

    def __init__(self, config: Config):
        self.config = config
        self._open: dict[str, ProviderAdapter] = {}

    def get(self, server: str) -> ProviderAdapter:
        if server not in self._open:
            self._open[server] = adapter_for(server, self.config.server(server))
        return self._open[server]

    def close(self) -> None:
        for adapter in self._open.values():
            try:
                adapter.close()
            except Exception:  # noqa: BLE001 - closing must not hide the run's outcome
                log.debug("closing adapter failed", exc_info=True)
        self._open.clear()

    def __enter__(self) -> Adapters:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Outcome:
    """What happened to one service."""

    service_id: int
    client_id: int
    server: str
    action: str  # suspend | unsuspend
    ok: bool
    message: str  # the provider's answer, or the error
    manual: bool = False
    instructions: str = ""
    # Recorded, but something decided with it went wrong (reported, exit 1).
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        verb = "suspended" if self.action == "suspend" else "unsuspended"
        where = f"service {self.service_id} of client {self.client_id} on {self.server}"
        if not self.ok:
            return f"{where}: {self.action} FAILED: {self.message}"
        if self.manual:
            return f"{where}: recorded {verb}; manual action required: {self.instructions}"
        return f"{where}: {verb} ({self.message})"


# Called inside the recording transaction: decide an email together with the new state.
AfterRecord = Callable[[Session, Service, SuspensionEvent, Outcome], None]


def call_provider(adapters: Adapters, service: Service, action: str, reason: str) -> Outcome:
    """Ask the provider; never raises: a failure is an Outcome with ok = False."""
    outcome = Outcome(service.id, service.client_id, service.server, action, False, "")
    try:
        adapter = adapters.get(service.server)
        info = service_info(service)
        answer = adapter.suspend(info, reason) if action == "suspend" else adapter.unsuspend(info)
    except ManualActionRequired as exc:
        outcome.ok = True
        outcome.manual = True
        outcome.instructions = exc.instructions
        outcome.message = str(exc)
    except Exception as exc:  # noqa: BLE001 - any provider failure is recorded, the run goes on
        outcome.message = str(exc) or type(exc).__name__
        log.debug("provider %s failed", service.server, exc_info=True)
    else:
        outcome.ok = True
        outcome.message = str(answer or "ok")
    return outcome


def record(
    store: Store,
    service_id: int,
    outcome: Outcome,
    *,
    actor: str,
    reason: str,
    after: AfterRecord | None = None,
) -> None:
    """Write the audit row and, when the provider confirmed, the new state (one transaction)."""
    now = datetime.now(UTC)
    with store.transaction() as session:
        event = SuspensionEvent(
            service_id=service_id,
            client_id=outcome.client_id,
            action=outcome.action,
            actor=actor,
            reason=reason,
            ok=outcome.ok,
            provider_response=outcome.message[:2000],
            created_at=now,
        )
        session.add(event)
        if outcome.ok:
            if outcome.action == "suspend":
                values = {
                    "suspended": True,
                    "suspended_by": actor,
                    "suspend_reason": reason,
                    "suspended_at": now,
                    "manual_action_required": outcome.manual,
                }
            else:
                values = {
                    "suspended": False,
                    "suspended_by": None,
                    "suspend_reason": None,
                    "suspended_at": None,
                    "manual_action_required": outcome.manual,
                }
            session.execute(
                update(Service)
                .where(Service.id == service_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        session.flush()
        if after is not None and outcome.ok:
            service = session.get(Service, service_id, populate_existing=True)
            after(session, service, event, outcome)


def act(
    store: Store,
    adapters: Adapters,
    service: Service,
    action: str,
    *,
    actor: str,
    reason: str,
    after: AfterRecord | None = None,
) -> Outcome:
    """Suspend or unsuspend one service through its provider, then record it."""
    outcome = call_provider(adapters, service, action, reason)
    record(store, service.id, outcome, actor=actor, reason=reason, after=after)
    return outcome


# --- voipctl suspend / unsuspend --------------------------------------------------


def _targets(session: Session, service_id: int | None, client_id: int | None) -> list[Service]:
    if (service_id is None) == (client_id is None):
        raise UsageError("give exactly one of --service ID or --client ID")
    if service_id is not None:
        service = session.get(Service, service_id)
        if service is None:
            raise NotFound(f"no service {service_id}")
        if not service.active:
            raise UsageError(f"service {service_id} has ended: nothing to suspend or restore")
        return [service]
    services = list(
        session.scalars(
            select(Service)
            .where(Service.client_id == client_id, Service.active.is_(True))
            .order_by(Service.id)
        )
    )
    if not services and session.get(Client, client_id) is None:
        raise NotFound(f"no client {client_id}")
    return services


def run_manual(
    store: Store,
    config: Config,
    run: RunState,
    *,
    action: str,
    service_id: int | None = None,
    client_id: int | None = None,
    reason: str = "",
    dry_run: bool = False,
) -> list[str]:
    """The operator's suspend or unsuspend; returns one line per service saying what happened."""
    reason = reason or f"{action} by the operator"
    with store.session_factory() as session:
        # Closed without a rollback: the rows stay loaded for the provider calls below.
        services = _targets(session, service_id, client_id)
    if not services:
        return [f"client {client_id} has no active services: nothing to do"]
    lines = []
    with Adapters(config) as adapters:
        for service in services:
            where = f"service {service.id} of client {service.client_id} on {service.server}"
            if action == "suspend" and service.suspended:
                if service.suspended_by == OPERATOR:
                    lines.append(f"{where} is already suspended (held by the operator): no-op")
                    continue
                # Already cut by autosuspend: no provider call, but the operator's hold
                # starts now, so a top-up does not lift what the operator meant to keep.
                if dry_run:
                    lines.append(f"{where} is already suspended; would hold it for the operator")
                    continue
                held = Outcome(
                    service.id,
                    service.client_id,
                    service.server,
                    "suspend",
                    True,
                    "already suspended; no provider call",
                    manual=service.manual_action_required,
                )
                record(store, service.id, held, actor=OPERATOR, reason=reason)
                lines.append(
                    f"{where} is already suspended (by {service.suspended_by or 'unknown'}); "
                    "now held by the operator"
                )
                continue
            if action == "unsuspend" and not service.suspended:
                lines.append(f"{where} is already active: no-op")
                continue
            if dry_run:
                lines.append(f"would {action} {where} ({reason})")
                continue
            outcome = act(store, adapters, service, action, actor=OPERATOR, reason=reason)
            if not outcome.ok:
                run.fail(outcome.describe())
            lines.append(outcome.describe())
    run.summary[action] = len(services)
    return lines
