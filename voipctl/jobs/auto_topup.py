"""auto-topup: Auto VoIP Top-Up, once per crossing of the low-balance threshold (docs/topup.md).

A client with CC Auth on File and an Auto VoIP Top Amount whose available
credit is at or below its Low Balance Threshold (at or below zero without one)
is charged that amount once. The latch is low-balance's rule (`decide`) on a
latch of its own, `clients.auto_topup_latched`: set in the transaction that
records the attempt, cleared once the credit is back above the threshold.

Exactly once. The attempt (`topup_attempts`, unique reference) is committed as
`pending` before any money moves; the backend then charges it and, when paid,
the credit is posted to the ledger under the same reference in the transaction
that marks the attempt paid. An attempt left pending (a killed run) or unknown
(the charge may have happened) is taken again at the start of every run under
its own reference, never a new one, so an idempotent charge program or WHMCS's
own records settle it; the operator is told of an unknown outcome.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing import ledger, topup
from voipctl.billing.backend import BillingBackend
from voipctl.config import Config
from voipctl.errors import NotFound
from voipctl.jobs.delivery import deliver
from voipctl.jobs.low_balance import decide
from voipctl.jobs.runner import RunState
from voipctl.notify.templates import (
    AUTO_TOPUP_DONE,
    AUTO_TOPUP_FAILED,
    AUTO_TOPUP_OPERATOR,
    AUTO_TOPUP_RENEW_AUTH,
    AUTO_TOPUP_TEMPLATES,
    Templates,
    client_variables,
)
from voipctl.store.engine import Store
from voipctl.store.models import Client, TopupAttempt
from voipctl.support.common import client_zone

log = logging.getLogger(__name__)

OPEN = (topup.PENDING, topup.UNKNOWN)
NOTE = "automatic top-up"


@dataclass(frozen=True)
class Line:
    """One thing a run did or would do, for -v and --dry-run."""

    client_id: int
    text: str

    def describe(self) -> str:
        return f"client {self.client_id}: {self.text}"


def reference_for(session: Session, client_id: int) -> str:
    """The next attempt's reference: the client's attempts so far number it."""
    count = session.scalar(select(func.count()).where(TopupAttempt.client_id == client_id))
    return f"auto-topup-{client_id}-{(count or 0) + 1}"


def auth_expired(client: Client, today: date, valid_days: int) -> bool:
    """No authorisation date, or one more than `valid_days` before today."""
    return client.cc_auth_date is None or client.cc_auth_date < today - timedelta(days=valid_days)


def taken_today(session: Session, client_id: int, day: str) -> int:
    """Attempts of the client's day (in its time zone) that may have charged the card."""
    return (
        session.scalar(
            select(func.count()).where(
                TopupAttempt.client_id == client_id,
                TopupAttempt.day == day,
                TopupAttempt.status != topup.DECLINED,
            )
        )
        or 0
    )


def _variables(
    session: Session,
    backend: BillingBackend,
    client: Client,
    credit: Decimal,
    *,
    amount: Decimal | None,
    reference: str,
    status: str,
    reason: str,
) -> dict:
    owing = backend.owing(session, client.id)
    return {
        **client_variables(client, credit=credit, owing=owing),
        "topup_amount": money.fmt(amount, 2) if amount is not None else "",
        "topup_reference": reference,
        "topup_status": status,
        "topup_reason": reason,
        "client_custom_field_ccauthdate": (
            client.cc_auth_date.isoformat() if client.cc_auth_date else ""
        ),
    }


def _tell_operator(
    session: Session,
    config: Config,
    backend: BillingBackend,
    run: RunState,
    variables: dict,
    dedupe_key: str,
    client: Client,
) -> None:
    """The operator's notice, once per key; without [email] operator, a run failure instead."""
    if not config.email.operator:
        run.fail(
            f"client {client.id}: auto top-up {variables['topup_status']}: "
            f"{variables['topup_reason']} ([email] operator is not set, so no email)"
        )
        return
    backend.queue_alert(
        session,
        config,
        template=AUTO_TOPUP_OPERATOR,
        variables=variables,
        dedupe_key=dedupe_key,
        recipient=config.email.operator,
        client_id=client.id,
        credit=None,
    )


def _request(attempt: TopupAttempt) -> topup.TopupRequest:
    return topup.TopupRequest(
        attempt_id=attempt.id,
        client_id=attempt.client_id,
        reference=attempt.reference,
        amount=attempt.amount,
        step=attempt.step,
        external_id=attempt.external_id,
    )


def _settle(
    store: Store,
    config: Config,
    backend: BillingBackend,
    run: RunState,
    request: topup.TopupRequest,
    outcome: topup.TopupOutcome,
) -> Line:
    """Record a charge's outcome; a paid one is credited in the same transaction, once."""
    ref = request.reference
    with store.transaction() as session:
        attempt = session.get(TopupAttempt, request.attempt_id)
        client = session.get(Client, request.client_id)
        attempt.status = outcome.status
        attempt.detail = outcome.detail[: topup.DETAIL_MAX]
        attempt.updated_at = datetime.now(UTC)
        if outcome.status == topup.PAID:
            # Idempotent by reference: a top-up is credited once, however often it is settled.
            note = f"{NOTE} ({outcome.detail})" if outcome.detail else NOTE
            ledger.post(
                session,
                client_id=request.client_id,
                kind="topup",
                amount=request.amount,
                reference=ref,
                note=note[:500],
            )
            session.flush()
        if client is None:
            return Line(request.client_id, f"top-up {ref} {outcome.status} (client gone)")
        credit = backend.available_credit(session, client.id)
        variables = _variables(
            session,
            backend,
            client,
            credit,
            amount=request.amount,
            reference=ref,
            status=outcome.status,
            reason=outcome.detail,
        )
        amount = money.fmt(request.amount, 2)
        if outcome.status == topup.PAID:
            backend.queue_alert(
                session,
                config,
                template=AUTO_TOPUP_DONE,
                variables=variables,
                dedupe_key=f"{AUTO_TOPUP_DONE}:{ref}",
                recipient=client.email,
                client_id=client.id,
                credit=credit,
            )
            return Line(client.id, f"topped up {amount} ({ref})")
        if outcome.status == topup.DECLINED:
            backend.queue_alert(
                session,
                config,
                template=AUTO_TOPUP_FAILED,
                variables=variables,
                dedupe_key=f"{AUTO_TOPUP_FAILED}:{ref}",
                recipient=client.email,
                client_id=client.id,
                credit=credit,
            )
            _tell_operator(
                session,
                config,
                backend,
                run,
                variables,
                f"{AUTO_TOPUP_OPERATOR}:{ref}:declined",
                client,
            )
            return Line(client.id, f"top-up of {amount} declined ({ref}): {outcome.detail}")
        # Unknown: maybe charged. Tried again under this reference only, on every run.
        _tell_operator(
            session,
            config,
            backend,
            run,
            variables,
            f"{AUTO_TOPUP_OPERATOR}:{ref}:unknown",
            client,
        )
        run.fail(
            f"client {client.id}: top-up {ref} of {amount}: outcome unknown: {outcome.detail}; "
            "the next run tries it again under the same reference"
        )
        return Line(client.id, f"top-up of {amount} unknown ({ref}): {outcome.detail}")


def _eligible():
    return (Client.cc_auth_on_file.is_(True)) & (Client.auto_topup_amount > Decimal(0))


def _has_work(store: Store) -> bool:
    """Some client may be charged, or an earlier attempt is open."""
    with store.session_factory() as session:
        client = session.scalar(select(Client.id).where(_eligible()).limit(1))
        attempt = session.scalar(
            select(TopupAttempt.id).where(TopupAttempt.status.in_(OPEN)).limit(1)
        )
    return client is not None or attempt is not None


def _open_attempts(store: Store, client_id: int | None) -> list[topup.TopupRequest]:
    with store.session_factory() as session:
        query = select(TopupAttempt).where(TopupAttempt.status.in_(OPEN))
        if client_id is not None:
            query = query.where(TopupAttempt.client_id == client_id)
        return [_request(a) for a in session.scalars(query.order_by(TopupAttempt.id))]


def run_auto_topup(
    store: Store,
    config: Config,
    backend: BillingBackend,
    run: RunState,
    *,
    retry_client: int | None = None,
    dry_run: bool = False,
) -> list[Line]:
    """Resolve open attempts, then top up every client at or below its threshold once."""
    if retry_client is not None:
        with store.session_factory() as session:
            if session.get(Client, retry_client) is None:
                raise NotFound(f"no client {retry_client}")
    if not dry_run and _has_work(store):
        # Checked only when some client has top-ups on: an operator who does not use
        # them runs the crontab line without configuring a charge command.
        backend.check_topup(config)
        templates = Templates(config.email.templates_dir)
        for name in AUTO_TOPUP_TEMPLATES:
            templates.check(name)
    lines: list[Line] = []
    counts = {"topups": 0, "declined": 0, "unknown": 0, "rearmed": 0, "capped": 0, "renew": 0}

    def take(request: topup.TopupRequest) -> None:
        outcome = backend.take_topup(store, config, request)
        lines.append(_settle(store, config, backend, run, request, outcome))
        counts["topups" if outcome.status == topup.PAID else outcome.status] += 1

    # An earlier run's attempt first, under its own reference.
    for request in _open_attempts(store, retry_client):
        if dry_run:
            lines.append(Line(request.client_id, f"would take {request.reference} again"))
            continue
        take(request)

    with store.session_factory() as session:
        query = select(Client.id).where(or_(Client.auto_topup_latched.is_(True), _eligible()))
        if retry_client is not None:
            query = query.where(Client.id == retry_client)
        client_ids = list(session.scalars(query.order_by(Client.id)))

    for client_id in client_ids:
        request = _decide(
            store, config, backend, run, client_id, retry_client, dry_run, lines, counts
        )
        if request is not None:
            take(request)

    run.summary.update(counts)
    if not dry_run:
        deliver(store, config, backend, run)
    return lines


def _decide(
    store: Store,
    config: Config,
    backend: BillingBackend,
    run: RunState,
    client_id: int,
    retry_client: int | None,
    dry_run: bool,
    lines: list[Line],
    counts: dict[str, int],
) -> topup.TopupRequest | None:
    """One client's decision in one transaction; the attempt to charge, committed, or None."""
    with store.transaction() as session:
        client = session.get(Client, client_id)
        if client is None:
            return None
        credit = backend.available_credit(session, client_id)
        threshold = client.low_balance_threshold
        threshold = threshold if threshold is not None else Decimal(0)
        # --retry: the operator lifts the latch of this one client for this run.
        latched = client.auto_topup_latched and retry_client != client_id
        action = decide(credit, threshold, latched)
        if action == "rearm":
            lines.append(
                Line(client_id, f"re-armed (credit {money.fmt(credit)} > {money.fmt(threshold)})")
            )
            counts["rearmed"] += 1
            if dry_run:
                session.rollback()
            else:
                client.auto_topup_latched = False
            return None
        amount = client.auto_topup_amount
        if action is None or not client.cc_auth_on_file or amount is None or amount <= 0:
            session.rollback()
            return None
        amount = money.quantize(amount, 2)
        open_attempt = session.scalar(
            select(TopupAttempt.reference).where(
                TopupAttempt.client_id == client_id, TopupAttempt.status.in_(OPEN)
            )
        )
        if open_attempt is not None:
            session.rollback()
            return None  # still unknown: never a second charge beside it
        zone = client_zone(client)
        today = datetime.now(UTC).astimezone(zone).date()
        base = dict(amount=amount, reference="", status="", reason="")
        if auth_expired(client, today, config.topup.auth_valid_days):
            if dry_run:
                session.rollback()
                lines.append(Line(client_id, "card authorisation expired: would ask to renew"))
                return None
            variables = _variables(session, backend, client, credit, **base)
            asked = backend.queue_alert(
                session,
                config,
                template=AUTO_TOPUP_RENEW_AUTH,
                variables=variables,
                # Once per authorisation: a renewed date may be asked again when it ages.
                dedupe_key=f"{AUTO_TOPUP_RENEW_AUTH}:{client_id}:{client.cc_auth_date}",
                recipient=client.email,
                client_id=client_id,
                credit=credit,
            )
            if asked:
                lines.append(Line(client_id, "card authorisation expired: renewal asked"))
                counts["renew"] += 1
            return None
        day = today.isoformat()
        if taken_today(session, client_id, day) >= config.topup.max_per_day:
            lines.append(
                Line(client_id, f"not topped up: {config.topup.max_per_day} today already")
            )
            counts["capped"] += 1
            if dry_run:
                session.rollback()
                return None
            reason = (
                f"{config.topup.max_per_day} automatic top-ups on {day} already "
                "([topup] max_per_day): not charged again today"
            )
            variables = _variables(
                session,
                backend,
                client,
                credit,
                amount=amount,
                reference="",
                status="stopped by the daily cap",
                reason=reason,
            )
            _tell_operator(
                session,
                config,
                backend,
                run,
                variables,
                f"{AUTO_TOPUP_OPERATOR}:{client_id}:cap:{day}",
                client,
            )
            return None
        reference = reference_for(session, client_id)
        if dry_run:
            lines.append(
                Line(
                    client_id,
                    f"would top up {money.fmt(amount)} ({reference}, "
                    f"credit {money.fmt(credit)} <= {money.fmt(threshold)})",
                )
            )
            session.rollback()
            return None
        latched_now = session.execute(
            update(Client)
            .where(Client.id == client_id, Client.auto_topup_latched.is_(client.auto_topup_latched))
            .values(auto_topup_latched=True)
            .execution_options(synchronize_session=False)
        )
        if latched_now.rowcount != 1:
            session.rollback()
            return None  # another run decided first
        stamp = datetime.now(UTC)
        attempt = TopupAttempt(
            client_id=client_id,
            reference=reference,
            amount=amount,
            status=topup.PENDING,
            detail="",
            day=day,
            created_at=stamp,
            updated_at=stamp,
        )
        session.add(attempt)
        session.flush()
        # Committed here, before any money moves: a kill from now on leaves a pending row.
        return _request(attempt)
