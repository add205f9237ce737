"""autosuspend: docs/billing.md's decision table, applied through each service's provider.

For each client with Has VoIP Service = yes:

| Manual VoIP Suspend | VoIP Suspended | credit / owing                        | should be |
|---------------------|----------------|---------------------------------------|-----------|
| yes                 | any            | any                                   | suspended |
| no                  | yes            | any                                   | suspended |
| no                  | no             | any                                   | active    |
| no                  | none           | credit <= -limit, or owing > credit   | suspended |
| no                  | none           | credit > -limit and owing = 0         | active    |
| no                  | none           | credit > -limit, 0 < owing <= credit  | unchanged |

An operator's hold (suspended_by = "operator") and a fraud stop (suspended_by =
"fraud guard", docs/fraud.md) beat every row; autosuspend lifts only what
autosuspend suspended. The fraud guard's limits are checked first, each run.
A suspension for credit or owing mails the client "VoIP Zero Balance" once per
suspension episode: the dedupe key is
the audit row that started the episode, so a second service cut later in the
same episode, or a retry, finds the email already decided.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing.backend import BillingBackend
from voipctl.config import Config
from voipctl.jobs import fraud
from voipctl.jobs.common import service_info
from voipctl.jobs.delivery import deliver
from voipctl.jobs.runner import RunState
from voipctl.jobs.suspend import AUTOSUSPEND, Adapters, Outcome, act
from voipctl.notify.templates import (
    FRAUD_GUARD,
    FRAUD_OPERATOR,
    MANUAL_ACTION,
    VOIP_ZERO_BALANCE,
    Templates,
    client_variables,
)
from voipctl.providers.base import LeverState
from voipctl.store.engine import Store
from voipctl.store.models import Client, Service, SuspensionEvent

log = logging.getLogger(__name__)

SUSPENDED = "suspended"
ACTIVE = "active"

# The rows that suspend for money (and mail the client); the others are overrides.
CREDIT_REASONS = ("credit ", "owing ")


@dataclass(frozen=True)
class Decision:
    """What the table says for one client: `state` is None for "unchanged"."""

    state: str | None
    reason: str

    @property
    def for_credit(self) -> bool:
        return self.state == SUSPENDED and self.reason.startswith(CREDIT_REASONS)


def decide(client: Client, credit: Decimal, owing: Decimal) -> Decision:
    """docs/billing.md's decision table, row by row (credit = available credit)."""
    if client.manual_voip_suspend:
        return Decision(SUSPENDED, "Manual VoIP Suspend = yes")
    if client.voip_suspended == "yes":
        return Decision(SUSPENDED, "VoIP Suspended = yes")
    if client.voip_suspended == "no":
        return Decision(ACTIVE, "VoIP Suspended = no")
    limit = client.credit_limit or Decimal(0)
    c, o, lim = money.fmt(credit), money.fmt(owing), money.fmt(limit)
    if credit <= -limit:
        return Decision(
            SUSPENDED, f"credit {c} at or below {money.fmt(-limit)} (credit limit {lim})"
        )
    # "owing > credit" read with owing > 0: with nothing owing, a credit between
    # -limit and 0 is the allowance the Credit Limit grants (row 5), not a suspension.
    if owing > 0 and owing > credit:
        return Decision(SUSPENDED, f"owing {o} > credit {c}")
    if owing == 0:
        return Decision(ACTIVE, f"credit {c} above {money.fmt(-limit)} and nothing owing")
    return Decision(None, f"0 < owing {o} <= credit {c}")


@dataclass(frozen=True)
class Planned:
    """One service whose state differs from what the table says, or from the PBX."""

    service: Service
    action: str  # suspend | unsuspend
    decision: Decision
    credit: Decimal
    owing: Decimal
    actor: str = AUTOSUSPEND
    # Set when the lever read back differs from the record: what was seen.
    correction: str = ""

    def describe(self) -> str:
        s = self.service
        return (
            f"would {self.action} service {s.id} of client {s.client_id} on {s.server}: "
            f"{self.correction or self.decision.reason}"
        )


def _services(session: Session, client_id: int) -> list[Service]:
    return list(
        session.scalars(
            select(Service)
            .where(Service.client_id == client_id, Service.active.is_(True))
            .order_by(Service.id)
        )
    )


def plan_client(
    session: Session,
    backend: BillingBackend,
    client: Client,
    observed: dict[int, LeverState] | None = None,
    services: list[Service] | None = None,
) -> list[Planned]:
    """The services of one client that must change state, and why.

    `observed` holds the levers as read back from the PBX (autosuspend's
    reconciliation); without it the record is taken as the truth.
    """
    credit = backend.available_credit(session, client.id)
    owing = backend.owing(session, client.id)
    decision = decide(client, credit, owing)
    if services is None:
        services = _services(session, client.id)
    planned = []
    for service in services:
        seen = (observed or {}).get(service.id)
        found_active = seen is not None and seen.suspended is False
        if service.suspended and found_active:
            # voipctl holds it suspended and the PBX lets calls through (re-enabled
            # by hand, a PBX restore, a partial effect): cut it again, same holder.
            correction = (
                f"found active on {service.server} while held suspended by "
                f"{service.suspended_by or 'unknown'} ({seen.detail}); suspending again"
            )
            if decision.state != ACTIVE or service.suspended_by in fraud.HOLDS:
                again = Decision(SUSPENDED, service.suspend_reason or decision.reason)
                planned.append(
                    Planned(
                        service,
                        "suspend",
                        again,
                        credit,
                        owing,
                        actor=service.suspended_by or AUTOSUSPEND,
                        correction=correction,
                    )
                )
                continue
        if service.suspended_by in fraud.HOLDS:
            continue  # an operator's hold, or a fraud stop, beats every row
        if decision.state == SUSPENDED and not service.suspended:
            planned.append(Planned(service, "suspend", decision, credit, owing))
        elif decision.state == ACTIVE and service.suspended and service.suspended_by == AUTOSUSPEND:
            planned.append(Planned(service, "unsuspend", decision, credit, owing))
    return planned


def observe(adapters: Adapters, service: Service) -> tuple[LeverState | None, str]:
    """The lever read back, or (None, a line saying why it could not be read)."""
    return observe_all(adapters, [service])[service.id]


def observe_all(
    adapters: Adapters, services: list[Service]
) -> dict[int, tuple[LeverState | None, str]]:
    """Every service's lever read back, one batch (`states`) per server.

    A service maps to (state, "") or to (None, a line saying why it could not be
    read); a server that cannot be read at all gives that line for each of its
    services.
    """
    by_server: dict[str, list[Service]] = {}
    for service in services:
        by_server.setdefault(service.server, []).append(service)
    seen: dict[int, tuple[LeverState | None, str]] = {}
    for server, group in by_server.items():
        try:
            found = adapters.get(server).states([service_info(s) for s in group])
        except Exception as exc:  # noqa: BLE001 - reported; the record stays the guide
            log.debug("reading the levers of %s failed", server, exc_info=True)
            found = {s.id: exc for s in group}
        for service in group:
            value = found.get(service.id)
            if isinstance(value, LeverState):
                seen[service.id] = (value, "")
                continue
            if value is not None:
                log.debug("reading the lever of service %s failed: %r", service.id, value)
            seen[service.id] = (
                None,
                f"service {service.id} of client {service.client_id} on {service.server}: "
                f"lever not read back: {value if value is not None else 'no answer'}",
            )
    return seen


def mismatch(service: Service, seen: LeverState | None) -> str:
    """A line for a service recorded active that the PBX shows suspended, else ''."""
    if service.suspended or seen is None or seen.suspended is not True:
        return ""
    return (
        f"service {service.id} of client {service.client_id} on {service.server}: "
        f"recorded active but found suspended ({seen.detail}); left as it is "
        f"(voipctl unsuspend --service {service.id} restores it)"
    )


def _episode(session: Session, client_id: int) -> int | None:
    """The audit row that started the client's current suspension for credit or owing."""
    rows = session.execute(
        select(Service.suspend_reason, func.max(SuspensionEvent.id))
        .join(SuspensionEvent, SuspensionEvent.service_id == Service.id)
        .where(
            Service.client_id == client_id,
            Service.suspended.is_(True),
            Service.suspended_by == AUTOSUSPEND,
            SuspensionEvent.action == "suspend",
            SuspensionEvent.ok.is_(True),
        )
        .group_by(Service.id, Service.suspend_reason)
    ).all()
    starts = [event_id for reason, event_id in rows if (reason or "").startswith(CREDIT_REASONS)]
    return min(starts) if starts else None


def _emails(config: Config, backend: BillingBackend, plan: Planned):
    """The emails decided with a confirmed change, in its recording transaction."""

    def after(session: Session, service: Service, event: SuspensionEvent, outcome: Outcome):
        client = session.get(Client, service.client_id)
        try:
            with session.begin_nested():
                backend.suspension_changed(session, client.id, outcome.action == "suspend")
        except Exception as exc:  # noqa: BLE001 - the provider acted: its record must stay
            outcome.warnings.append(f"the billing backend was not told: {exc}")
        variables = client_variables(client, credit=plan.credit, owing=plan.owing)
        # A correction re-applies a suspension the client was already told of.
        if outcome.action == "suspend" and plan.decision.for_credit and not plan.correction:
            episode = _episode(session, client.id)
            backend.queue_alert(
                session,
                config,
                template=VOIP_ZERO_BALANCE,
                variables=variables,
                dedupe_key=f"{VOIP_ZERO_BALANCE}:{client.id}:{episode}",
                recipient=client.email,
                client_id=client.id,
                credit=plan.credit,
            )
        if outcome.manual:
            if not config.email.operator:
                log.warning(
                    "service %s: manual action required but [email] operator is not set: %s",
                    service.id,
                    outcome.instructions,
                )
                return
            backend.queue_alert(
                session,
                config,
                template=MANUAL_ACTION,
                variables={
                    **variables,
                    "service_id": service.id,
                    "server": service.server,
                    "action": outcome.action,
                    "instructions": outcome.instructions,
                },
                dedupe_key=f"{MANUAL_ACTION}:{service.id}:{event.id}",
                recipient=config.email.operator,
                client_id=client.id,
                credit=plan.credit,
            )

    return after


def run_autosuspend(
    store: Store,
    config: Config,
    backend: BillingBackend,
    run: RunState,
    *,
    dry_run: bool = False,
) -> list[str]:
    """Apply the decision table to every client with Has VoIP Service = yes.

    Returns one line per change (or planned change). A provider failure is a run
    failure naming the service; the state stays as it was and the next run retries.
    """
    if not dry_run:
        # A broken template fails the run before any PBX is touched, not halfway through.
        templates = Templates(config.email.templates_dir)
        templates.check(VOIP_ZERO_BALANCE)
        templates.check(MANUAL_ACTION)
        templates.check(FRAUD_OPERATOR)
        if config.fraud.notify_client:
            templates.check(FRAUD_GUARD)
    with store.session_factory() as session:
        client_ids = list(
            session.scalars(
                select(Client.id).where(Client.has_voip_service.is_(True)).order_by(Client.id)
            )
        )
    lines: list[str] = []
    counts = {"suspended": 0, "unsuspended": 0, "failed": 0, "manual": 0}
    with Adapters(config) as adapters:
        # The fraud guard first: a runaway account is held before the table is applied.
        lines += fraud.check_and_stop(store, config, backend, adapters, run, dry_run=dry_run)
        # The levers of every managed service, read back from the PBXs first (no
        # database held), one batch per server: one query and one event socket
        # connection for a FusionPBX server, not one per service.
        with store.session_factory() as session:
            managed = [s for client_id in client_ids for s in _services(session, client_id)]
        readings = observe_all(adapters, managed)
        for client_id in client_ids:
            # Read the services, then decide; release the database before acting.
            with store.session_factory() as session:
                client = session.get(Client, client_id)
                if client is None or not client.has_voip_service:
                    continue
                services = _services(session, client_id)
            observed: dict[int, LeverState] = {}
            for service in services:
                if service.id not in readings:
                    continue  # added since the levers were read: the record is the guide
                seen, trouble = readings[service.id]
                if trouble and not service.suspended:
                    # Nothing is held on this lever: a service that must be cut is
                    # acted on (and fails loudly) below; the read-back only guards holds.
                    log.info("%s", trouble)
                    continue
                if trouble:
                    run.fail(trouble)
                    lines.append(trouble)
                    continue
                if seen is not None:
                    observed[service.id] = seen
                    if seen.suspended is None:
                        log.info("service %s: lever state unknown: %s", service.id, seen.detail)
            with store.session_factory() as session:
                client = session.get(Client, client_id)
                if client is None or not client.has_voip_service:
                    continue
                planned = plan_client(session, backend, client, observed, services)
            acted = {plan.service.id for plan in planned}
            for service in services:
                line = mismatch(service, observed.get(service.id))
                if line and service.id not in acted:
                    lines.append(line)
            for plan in planned:
                if dry_run:
                    # The dry run's summary counts what it would do, as autobill's does.
                    counts["suspended" if plan.action == "suspend" else "unsuspended"] += 1
                    lines.append(plan.describe())
                    continue
                outcome = act(
                    store,
                    adapters,
                    plan.service,
                    plan.action,
                    actor=plan.actor,
                    reason=plan.decision.reason,
                    after=_emails(config, backend, plan),
                )
                line = outcome.describe()
                if outcome.ok:
                    counts["suspended" if plan.action == "suspend" else "unsuspended"] += 1
                    counts["manual"] += outcome.manual
                    why = plan.correction or plan.decision.reason
                    # A manual lever's instructions already carry the reason.
                    lines.append(line if outcome.manual else f"{line}: {why}")
                else:
                    counts["failed"] += 1
                    run.fail(line)
                    lines.append(line)
                for warning in outcome.warnings:
                    run.fail(f"{line}: {warning}")
    run.summary.update(counts)
    if not dry_run:
        deliver(store, config, backend, run)
    return lines
