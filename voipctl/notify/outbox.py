"""The outbox: an email is a row written in the same transaction as the decision to send it.

Delivery is a separate step: each pending row is handed to SMTP and marked sent
only after the server accepted it; a failure is counted on the row and the row
is tried again on the next run. Two jobs never deliver at once (a lock of its
own, "outbox"), so no row is handed over twice by overlapping runs.

The one window left: a crash after the SMTP server accepted a message and before
the row is marked sent. Such a message is sent again on the next run, with the
same Message-ID, which mail clients use to show it once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from voipctl.config import EmailConfig
from voipctl.errors import LockHeld
from voipctl.notify.smtp import DeliveryError, Mailer, build_message
from voipctl.notify.templates import Templates
from voipctl.store.engine import Store
from voipctl.store.locks import job_lock
from voipctl.store.models import OutboxEmail

log = logging.getLogger(__name__)

OUTBOX_LOCK = "outbox"


def queue(
    session: Session,
    *,
    template: str,
    dedupe_key: str,
    recipient: str,
    subject: str,
    body_text: str,
    body_html: str | None = None,
    bcc: str = "",
    client_id: int | None = None,
    credit: Decimal | None = None,
) -> bool:
    """Write one email to the outbox in the caller's transaction.

    Returns False (and writes nothing) when an email with this dedupe key exists:
    a decision is mailed once.
    """
    if session.scalar(select(OutboxEmail.id).where(OutboxEmail.dedupe_key == dedupe_key)):
        return False
    row = OutboxEmail(
        client_id=client_id,
        template=template,
        dedupe_key=dedupe_key,
        recipient=recipient,
        bcc=bcc,
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        credit=credit,
        created_at=datetime.now(UTC),
        attempts=0,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # Another transaction queued the same decision between our look and our insert.
        return False
    return True


def queue_template(
    session: Session,
    config: EmailConfig,
    *,
    template: str,
    variables: dict[str, Any],
    dedupe_key: str,
    recipient: str,
    client_id: int | None = None,
    credit: Decimal | None = None,
    templates: Templates | None = None,
) -> bool:
    """Render a template and queue it (with the configured Bcc); False if already queued."""
    templates = templates or Templates(config.templates_dir)
    rendered = templates.render(template, variables)
    return queue(
        session,
        template=template,
        dedupe_key=dedupe_key,
        recipient=recipient,
        subject=rendered.subject,
        body_text=rendered.text,
        body_html=rendered.html,
        bcc=config.bcc,
        client_id=client_id,
        credit=credit,
    )


@dataclass
class Delivery:
    """What one delivery run did."""

    sent: int = 0
    failed: int = 0
    pending: int = 0  # left for the next run
    errors: list[str] = field(default_factory=list)
    skipped: bool = False  # another run was delivering


def pending_count(session: Session) -> int:
    """How many emails wait for delivery."""
    return session.scalar(select(func.count()).where(OutboxEmail.sent_at.is_(None))) or 0


def deliver_pending(store: Store, config: EmailConfig) -> Delivery:
    """Send every unsent outbox email; mark each sent only after the server accepted it."""
    result = Delivery()
    try:
        with job_lock(store, OUTBOX_LOCK):
            _deliver(store, config, result)
    except LockHeld:
        result.skipped = True
        log.info("outbox: another run is delivering; leaving it to that run")
    return result


def _deliver(store: Store, config: EmailConfig, result: Delivery) -> None:
    with store.transaction() as session:
        ids = list(
            session.scalars(
                select(OutboxEmail.id).where(OutboxEmail.sent_at.is_(None)).order_by(OutboxEmail.id)
            )
        )
    with Mailer(config) as mailer:
        for index, email_id in enumerate(ids):
            with store.transaction() as session:
                row = session.get(OutboxEmail, email_id)
                if row is None or row.sent_at is not None:
                    continue
                msg = build_message(
                    sender=config.from_,
                    recipient=row.recipient,
                    subject=row.subject,
                    text=row.body_text,
                    html=row.body_html,
                    dedupe_key=row.dedupe_key,
                    created_epoch=row.created_at.timestamp(),
                )
                recipients = [row.recipient, *[a.strip() for a in row.bcc.split(",") if a.strip()]]
                name = f"{row.id:06d}-{row.template}"
                what = f"email {row.id} ({row.template}) to {row.recipient}"
            try:
                mailer.send(msg, recipients, capture_name=name)
            except DeliveryError as exc:
                _record(store, email_id, error=str(exc))
                result.failed += 1
                result.errors.append(f"{what}: {exc}; will retry next run")
                if exc.connection:
                    result.pending += len(ids) - index - 1
                    break
                continue
            _record(store, email_id, error=None)
            result.sent += 1


def _record(store: Store, email_id: int, *, error: str | None) -> None:
    values: dict[str, Any] = {"attempts": OutboxEmail.attempts + 1, "last_error": error}
    if error is None:
        values["sent_at"] = datetime.now(UTC)
    else:
        values["last_error"] = error[:1000]
    with store.transaction() as session:
        session.execute(
            update(OutboxEmail)
            .where(OutboxEmail.id == email_id, OutboxEmail.sent_at.is_(None))
            .values(**values)
        )
