"""low-balance: the latched "Low Balance Alert" of docs/billing.md.

A client whose available credit is at or below its Low Balance Threshold is
mailed once: the latch (`clients.low_balance_alerted`) is set in the same
transaction as the outbox email, so the decision and its email exist together
or not at all. The latch is cleared when the credit rises above the threshold
(a top-up), which re-arms the alert. An empty threshold means no alerts (and
clears the latch, so a threshold set later alerts a client already below it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing.backend import BillingBackend
from voipctl.config import Config
from voipctl.jobs.delivery import deliver
from voipctl.jobs.runner import RunState
from voipctl.notify.templates import LOW_BALANCE_ALERT, Templates, client_variables
from voipctl.store.engine import Store
from voipctl.store.models import Client, OutboxEmail

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LowBalanceDecision:
    client_id: int
    action: str  # "alert" | "rearm"
    credit: Decimal
    threshold: Decimal | None

    def describe(self) -> str:
        threshold = money.fmt(self.threshold) if self.threshold is not None else "none"
        if self.action == "alert":
            return (
                f"client {self.client_id}: low balance alert "
                f"(credit {money.fmt(self.credit)} <= threshold {threshold})"
            )
        return (
            f"client {self.client_id}: alert re-armed "
            f"(credit {money.fmt(self.credit)} > threshold {threshold})"
        )


def decide(credit: Decimal, threshold: Decimal | None, latched: bool) -> str | None:
    """The latch rule: "alert", "rearm" or None (nothing to do)."""
    if threshold is None:
        return "rearm" if latched else None
    if credit <= threshold:
        return None if latched else "alert"
    return "rearm" if latched else None


def _alert_key(session: Session, client_id: int) -> str:
    # One key per crossing: the count of this client's earlier alerts numbers the episode.
    earlier = session.scalar(
        select(func.count()).where(
            OutboxEmail.client_id == client_id, OutboxEmail.template == LOW_BALANCE_ALERT
        )
    )
    return f"{LOW_BALANCE_ALERT}:{client_id}:{(earlier or 0) + 1}"


def _apply(
    session: Session, config: Config, backend: BillingBackend, client: Client, credit: Decimal
) -> bool:
    """Set the latch and queue the email together; False if another run got there first."""
    latched = session.execute(
        update(Client)
        .where(Client.id == client.id, Client.low_balance_alerted.is_(False))
        .values(low_balance_alerted=True)
        .execution_options(synchronize_session=False)
    )
    if latched.rowcount != 1:
        return False
    owing = backend.owing(session, client.id)
    backend.queue_alert(
        session,
        config,
        template=LOW_BALANCE_ALERT,
        variables=client_variables(client, credit=credit, owing=owing),
        dedupe_key=_alert_key(session, client.id),
        recipient=client.email,
        client_id=client.id,
        credit=credit,
    )
    return True


def run_low_balance(
    store: Store,
    config: Config,
    backend: BillingBackend,
    run: RunState,
    *,
    dry_run: bool = False,
) -> list[LowBalanceDecision]:
    """Alert every client at or below its threshold once per crossing; then deliver the outbox."""
    if not dry_run:
        Templates(config.email.templates_dir).check(LOW_BALANCE_ALERT)
    with store.session_factory() as session:
        client_ids = list(
            session.scalars(
                select(Client.id)
                .where(
                    or_(
                        Client.low_balance_threshold.is_not(None),
                        Client.low_balance_alerted.is_(True),
                    )
                )
                .order_by(Client.id)
            )
        )
    decisions = []
    for client_id in client_ids:
        # One transaction per client: the decision, the latch and the email commit together.
        with store.transaction() as session:
            client = session.get(Client, client_id)
            if client is None:
                continue
            credit = backend.available_credit(session, client_id)
            action = decide(credit, client.low_balance_threshold, client.low_balance_alerted)
            if action is None:
                continue
            decision = LowBalanceDecision(client_id, action, credit, client.low_balance_threshold)
            if dry_run:
                decisions.append(decision)
                session.rollback()
                continue
            if action == "alert":
                if _apply(session, config, backend, client, credit):
                    decisions.append(decision)
            else:
                session.execute(
                    update(Client)
                    .where(Client.id == client_id)
                    .values(low_balance_alerted=False)
                    .execution_options(synchronize_session=False)
                )
                decisions.append(decision)
    run.summary["alerts"] = sum(1 for d in decisions if d.action == "alert")
    run.summary["rearmed"] = sum(1 for d in decisions if d.action == "rearm")
    if not dry_run:
        deliver(store, config, backend, run)
    return decisions
