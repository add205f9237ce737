"""Where credit and owing come from: voipctl's own ledger, or WHMCS.

Every job's decisions are the same code with either backend; only these
questions are answered differently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from voipctl.billing import ledger, topup
from voipctl.config import Config

if TYPE_CHECKING:
    from voipctl.notify.outbox import Delivery
    from voipctl.store.engine import Store


class BillingBackend(ABC):
    """The system of record for a client's credit and unpaid invoices."""

    name: str

    @abstractmethod
    def credit(self, session: Session, client_id: int) -> Decimal:
        """The client's credit balance before unbilled calls."""

    @abstractmethod
    def owing(self, session: Session, client_id: int, today: date | None = None) -> Decimal:
        """Unpaid invoices due today or earlier."""

    def available_credit(self, session: Session, client_id: int) -> Decimal:
        """Credit minus the cost of rated calls not yet billed (docs/billing.md)."""
        return self.credit(session, client_id) - ledger.unbilled_cost(session, client_id)

    def post_charge(
        self,
        session: Session,
        *,
        client_id: int,
        service_id: int,
        amount: Decimal,
        reference: str,
        note: str,
        cdr_count: int,
    ) -> int:
        """Post a usage charge (a negative amount) in the caller's transaction.

        Returns the id of the ledger row that bills the CDRs (autobill writes it into
        each CDR's billed_entry_id in the same transaction). Idempotent by reference.
        A backend that posts elsewhere records its intent here and sends it in
        `push_charges`, after the commit.
        """
        posted = ledger.post(
            session,
            client_id=client_id,
            kind="charge",
            amount=amount,
            reference=reference,
            note=note,
            service_id=service_id,
            cdr_count=cdr_count,
        )
        return posted.entry.id

    def push_charges(self, store: Store) -> list[str]:
        """Send charges recorded by `post_charge` to an outside system; failure messages.

        The local ledger is the system of record, so there is nothing to send.
        """
        return []

    def queue_alert(
        self,
        session: Session,
        config: Config,
        *,
        template: str,
        variables: dict[str, Any],
        dedupe_key: str,
        recipient: str,
        client_id: int | None,
        credit: Decimal | None,
    ) -> bool:
        """Decide to send an email, in the caller's transaction; False if already decided.

        Default: rendered from voipctl's templates into the outbox.
        """
        from voipctl.notify import outbox  # noqa: PLC0415 - alerts sit above the ledger

        return outbox.queue_template(
            session,
            config.email,
            template=template,
            variables=variables,
            dedupe_key=dedupe_key,
            recipient=recipient,
            client_id=client_id,
            credit=credit,
        )

    def suspension_changed(  # noqa: B027 - an optional hook
        self, session: Session, client_id: int, suspended: bool
    ) -> None:
        """autosuspend changed a client's services (suspended or restored), in its transaction.

        A hook for a backend that mirrors the state elsewhere; the local ledger has no copy.
        """

    def check_topup(self, config: Config) -> None:
        """Refuse (ConfigError) a top-up configuration this backend cannot use; default: the
        local charge command (docs/topup.md)."""
        topup.check_command(config)

    def take_topup(
        self, store: Store, config: Config, request: topup.TopupRequest
    ) -> topup.TopupOutcome:
        """Charge one recorded top-up; the caller posts the credit when it is paid.

        Called again with the same request when an earlier run left it pending or
        unknown. Default: the configured charge command, told the reference.
        """
        return topup.run_command(config, request)

    def deliver_alerts(self, store: Store, config: Config) -> Delivery:
        """Deliver the queued emails (default: the outbox over SMTP)."""
        from voipctl.notify import outbox  # noqa: PLC0415 - alerts sit above the ledger

        return outbox.deliver_pending(store, config.email)


class LocalBackend(BillingBackend):
    """voipctl's own ledger and invoices (the default)."""

    name = "local"

    def credit(self, session: Session, client_id: int) -> Decimal:
        return ledger.balance(session, client_id)

    def owing(self, session: Session, client_id: int, today: date | None = None) -> Decimal:
        return ledger.owing(session, client_id, today)


def backend_for(config: Config) -> BillingBackend:
    if config.billing.backend == "whmcs":
        from voipctl.billing.whmcs import WhmcsBackend  # noqa: PLC0415 - optional backend

        return WhmcsBackend(config)
    return LocalBackend()
