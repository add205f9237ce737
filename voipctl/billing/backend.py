"""Where credit and owing come from: voipctl's own ledger, or WHMCS.

Every job's decisions are the same code with either backend; only these
questions are answered differently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import date
from decimal import Decimal

from sqlalchemy.orm import Session

from voipctl.billing import ledger
from voipctl.config import Config


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
        """Credit minus the cost of rated calls not yet billed (billing.md: decisions use this)."""
        return self.credit(session, client_id) - ledger.unbilled_cost(session, client_id)


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
