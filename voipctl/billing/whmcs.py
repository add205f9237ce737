"""WHMCS as the billing backend: credit, owing, usage postings, alert emails, field write-back.

Credit is the client's WHMCS credit less the usage voipctl has charged in its
own ledger but not yet posted to WHMCS; owing is what is left to pay (GetInvoice's
`balance`) on the client's Unpaid WHMCS invoices due today or earlier.

Posting usage exactly once. WHMCS has no idempotency keys, so each posting is
an intent row in `external_postings` (unique reference), committed BEFORE the
call; the reference goes into the WHMCS description (`[voipctl-usage-42-7]`);
the row is marked posted after WHMCS answered. An intent still open at the next
run is looked up in WHMCS first (GetCredits, or the notes of the client's
invoices) and sent again only when WHMCS has no trace of it. A lost answer is
never followed by a blind resend in the same run: the request may still be in
flight, and the next run looks it up.

Cents. WHMCS keeps 2 decimals, voipctl's charges have more. The amount posted
so far is always the client's total rated usage rounded half-up to the cent:
each posting is that rounded total less what was already posted, so the
sub-cent remainder stays in voipctl's ledger and rides along with the next
charge. Nothing is lost and nothing invented, and the sum of postings never
differs from the usage by more than half a cent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased

from voipctl import money
from voipctl.billing import topup
from voipctl.billing.backend import BillingBackend
from voipctl.billing.whmcs_api import (
    WhmcsApi,
    WhmcsOutcomeUnknown,
    encode_customfields,
    records,
)
from voipctl.config import Config
from voipctl.errors import BillingBackendError, ConfigError, DataError, LockHeld
from voipctl.store.locks import job_lock
from voipctl.store.models import ExternalPosting, LedgerEntry, OutboxEmail, TopupAttempt

if TYPE_CHECKING:
    from voipctl.notify.outbox import Delivery
    from voipctl.store.engine import Store

log = logging.getLogger(__name__)

# external_postings.kind of the money postings (and of the field write-back memory).
CREDIT_REMOVE = "credit_remove"
CREDIT_ADD = "credit_add"
INVOICE = "invoice"
FIELD_WRITE = "field_write"
MONEY_KINDS = (CREDIT_REMOVE, CREDIT_ADD, INVOICE)


def usage_total(session: Session, client_id: int) -> Decimal:
    """The client's usage charged in voipctl's ledger (positive), reversals of charges netted."""
    reversed_charge = aliased(LedgerEntry)
    charges = select(func.coalesce(func.sum(LedgerEntry.amount), Decimal(0))).where(
        LedgerEntry.client_id == client_id, LedgerEntry.kind == "charge"
    )
    reversals = (
        select(func.coalesce(func.sum(LedgerEntry.amount), Decimal(0)))
        .join(reversed_charge, reversed_charge.id == LedgerEntry.reverses_id)
        .where(
            LedgerEntry.client_id == client_id,
            LedgerEntry.kind == "reversal",
            reversed_charge.kind == "charge",
        )
    )
    return -((session.scalar(charges) or Decimal(0)) + (session.scalar(reversals) or Decimal(0)))


def recorded_total(session: Session, client_id: int, *, posted_only: bool = False) -> Decimal:
    """Usage handed to WHMCS: every intent (or only those WHMCS confirmed), signed."""
    query = select(func.coalesce(func.sum(ExternalPosting.amount), Decimal(0))).where(
        ExternalPosting.client_id == client_id, ExternalPosting.kind.in_(MONEY_KINDS)
    )
    if posted_only:
        query = query.where(ExternalPosting.state == "posted")
    return session.scalar(query) or Decimal(0)


def unposted(session: Session, client_id: int) -> Decimal:
    """Usage charged in voipctl but not (known to be) in WHMCS yet: it lowers the credit."""
    return usage_total(session, client_id) - recorded_total(session, client_id, posted_only=True)


def marker(reference: str) -> str:
    """How a reference appears in a WHMCS description or notes: bracketed, so that
    `...-42-1` is never found inside `...-42-10`."""
    return f"[{reference}]"


@dataclass(frozen=True)
class Posting:
    """One posting decided by a run (for reports and dry runs)."""

    client_id: int
    reference: str
    kind: str
    amount: Decimal

    def describe(self) -> str:
        verb = {CREDIT_REMOVE: "remove credit", CREDIT_ADD: "add credit", INVOICE: "invoice"}
        amount = money.fmt(abs(self.amount))
        return f"client {self.client_id}: {verb[self.kind]} {amount} ({self.reference})"


def parse_flag(value: str) -> bool:
    """A WHMCS tick box ("on") or yes/no drop-down."""
    return value.strip().lower() in ("on", "yes", "y", "1", "true")


class WhmcsBackend(BillingBackend):
    """WHMCS as the system of record (`[billing] backend = "whmcs"`)."""

    name = "whmcs"

    def __init__(self, config: Config, api: WhmcsApi | None = None):
        self.config = config
        self.whmcs = config.whmcs
        self._api = api

    @property
    def api(self) -> WhmcsApi:
        # Built on first use, so a dry run or a job with nothing to ask needs no network.
        if self._api is None:
            self._api = WhmcsApi(self.whmcs)
        return self._api

    # --- reading --------------------------------------------------------------------------

    def details(self, client_id: int) -> dict[str, Any]:
        """The client record of GetClientsDetails."""
        body = self.api.call("GetClientsDetails", {"clientid": client_id}, client_id=client_id)
        client = body.get("client")
        if not isinstance(client, dict):
            raise DataError(f"WHMCS GetClientsDetails for client {client_id}: no client record")
        return client

    def whmcs_credit(self, client_id: int) -> Decimal:
        raw = self.details(client_id).get("credit", "0")
        try:
            return money.parse(str(raw), field=f"WHMCS credit of client {client_id}")
        except money.MoneyError as exc:
            raise DataError(f"WHMCS GetClientsDetails for client {client_id}: {exc}") from None

    def credit(self, session: Session, client_id: int) -> Decimal:
        return self.whmcs_credit(client_id) - unposted(session, client_id)

    def unpaid_invoices(self, client_id: int) -> list[dict]:
        return list(
            self.api.paged(
                "GetInvoices",
                {"userid": client_id, "status": "Unpaid"},
                "invoices",
                "invoice",
                client_id=client_id,
            )
        )

    def owing(self, session: Session, client_id: int, today: date | None = None) -> Decimal:
        """What is left to pay on the client's Unpaid invoices due today or earlier.

        GetInvoices lists an invoice's `total` but not what was already paid on it, so a
        partly paid invoice is read again with GetInvoice, whose `balance` is the amount
        left to pay. Calls per client: the GetInvoices pages, plus one GetInvoice per
        Unpaid invoice that is due and has a total above zero.
        """
        today = today or datetime.now(UTC).date()
        total = Decimal(0)
        for invoice in self.unpaid_invoices(client_id):
            due = str(invoice.get("duedate") or "")
            # No due date (WHMCS writes zeros) is due at once, as with the local ledger.
            if due and not due.startswith("0000") and date.fromisoformat(due[:10]) > today:
                continue
            listed = self._invoice_amount(client_id, invoice, "total", "GetInvoices")
            if listed <= 0:
                continue  # nothing to pay: no need to ask for the balance
            total += self.invoice_balance(client_id, invoice.get("id"))
        return total

    def invoice_balance(self, client_id: int, invoice_id: Any) -> Decimal:
        """GetInvoice's `balance` of one invoice: its total less the payments made on it."""
        body = self.api.call("GetInvoice", {"invoiceid": invoice_id}, client_id=client_id)
        if "balance" not in body:
            raise DataError(
                f"WHMCS GetInvoice for client {client_id}: invoice {invoice_id}: "
                "no balance in the answer"
            )
        balance = self._invoice_amount(client_id, body, "balance", "GetInvoice", invoice_id)
        # An overpaid invoice (negative balance) owes nothing; the overpayment is not credit.
        return max(balance, Decimal(0))

    @staticmethod
    def _invoice_amount(
        client_id: int, record: dict, key: str, action: str, invoice_id: Any = None
    ) -> Decimal:
        invoice_id = record.get("id") if invoice_id is None else invoice_id
        try:
            return money.parse(str(record.get(key, "0")), field=key)
        except money.MoneyError as exc:
            raise DataError(
                f"WHMCS {action} for client {client_id}: invoice {invoice_id}: {exc}"
            ) from None

    # --- posting usage (autobill calls push_charges after charging) -----------------------

    def plan(self, session: Session, client_id: int) -> Posting | None:
        """The posting that brings WHMCS to the client's usage rounded to the cent, if any."""
        target = money.quantize(usage_total(session, client_id), 2)
        delta = target - recorded_total(session, client_id)
        if delta == 0:
            return None
        if delta < 0:
            # Usage went down (a charge reversed after re-rating): give it back as credit,
            # in either mode; an invoice for a negative amount would only confuse.
            kind = CREDIT_ADD
        else:
            kind = INVOICE if self.whmcs.post_usage == "invoice" else CREDIT_REMOVE
        count = session.scalar(
            select(func.count()).where(
                ExternalPosting.client_id == client_id, ExternalPosting.kind.in_(MONEY_KINDS)
            )
        )
        return Posting(client_id, f"voipctl-usage-{client_id}-{(count or 0) + 1}", kind, delta)

    def push_charges(self, store: Store) -> list[str]:
        """Post every client's unposted usage to WHMCS; return failure messages."""
        return self.post_usage(store).failures

    def post_usage(self, store: Store, *, dry_run: bool = False) -> PostingReport:
        """Resolve open intents, then post each client's usage not yet in WHMCS.

        The caller holds the autobill lock: two runs never post for one client at once.
        """
        report = PostingReport()
        with store.session_factory() as session:
            open_intents = [
                Posting(row.client_id, row.reference, row.kind, row.amount)
                for row in session.scalars(
                    select(ExternalPosting)
                    .where(
                        ExternalPosting.state == "intent",
                        ExternalPosting.kind.in_(MONEY_KINDS),
                    )
                    .order_by(ExternalPosting.id)
                )
            ]
            charged = set(
                session.scalars(
                    select(LedgerEntry.client_id).where(LedgerEntry.kind == "charge").distinct()
                )
            )
            session.rollback()
        blocked: set[int] = set()
        for intent in open_intents:
            blocked.add(intent.client_id)
            if dry_run:
                report.planned.append(intent)
                continue
            try:
                self._resolve(store, intent)
                blocked.discard(intent.client_id)
                report.posted.append(intent)
            except BillingBackendError as exc:
                report.failures.append(f"{exc} (posting {intent.reference} is kept for retry)")
        for client_id in sorted(charged - blocked):
            try:
                self._post_client(store, client_id, report, dry_run=dry_run)
            except BillingBackendError as exc:
                report.failures.append(str(exc))
        return report

    def _post_client(
        self, store: Store, client_id: int, report: PostingReport, *, dry_run: bool
    ) -> None:
        with store.transaction() as session:
            posting = self.plan(session, client_id)
            if posting is None:
                return
            if dry_run:
                report.planned.append(posting)
                session.rollback()
                return
            # The intent commits before WHMCS hears of it: a crash after this leaves a
            # trace the next run resolves, never an untracked posting.
            last_entry = session.scalar(
                select(func.max(LedgerEntry.id)).where(LedgerEntry.client_id == client_id)
            )
            session.add(
                ExternalPosting(
                    client_id=client_id,
                    reference=posting.reference,
                    kind=posting.kind,
                    amount=posting.amount,
                    state="intent",
                    ledger_entry_id=last_entry,
                    created_at=datetime.now(UTC),
                )
            )
        try:
            external_id = self._send(posting)
        except WhmcsOutcomeUnknown as exc:
            # Maybe done, maybe not: look, but never resend now (it may still be in flight).
            found = self._find(posting.client_id, posting.reference, posting.kind)
            if found is None:
                report.failures.append(
                    f"{exc}; posting {posting.reference} will be checked on the next run"
                )
                return
            external_id = found
        self._mark_posted(store, posting.reference, external_id)
        report.posted.append(posting)

    def _send(self, posting: Posting) -> str:
        """Do the posting in WHMCS; return WHMCS's id for it (credit log or invoice)."""
        amount = money.quantize(abs(posting.amount), 2)
        text = f"VoIP usage {marker(posting.reference)}"
        if posting.kind == INVOICE:
            today = datetime.now(UTC).date().isoformat()
            body = self.api.call(
                "CreateInvoice",
                {
                    "userid": posting.client_id,
                    "status": "Unpaid",
                    "date": today,
                    "duedate": today,
                    "notes": text,
                    "itemdescription1": text,
                    "itemamount1": money.quantize(posting.amount, 2),
                    "itemtaxed1": "0",
                    "autoapplycredit": "1",
                    "sendinvoice": "0",
                },
                client_id=posting.client_id,
            )
            return str(body.get("invoiceid", ""))
        self.api.call(
            "AddCredit",
            {
                "clientid": posting.client_id,
                "description": text,
                "amount": amount,
                "type": "remove" if posting.kind == CREDIT_REMOVE else "add",
            },
            client_id=posting.client_id,
        )
        # AddCredit answers only the new balance; the credit log entry is found by reference.
        return self._find(posting.client_id, posting.reference, posting.kind) or ""

    def _find(self, client_id: int, reference: str, kind: str) -> str | None:
        """WHMCS's id of the posting carrying this reference, or None if WHMCS has none."""
        needle = marker(reference)
        if kind == INVOICE:
            for invoice in self.api.paged(
                "GetInvoices", {"userid": client_id}, "invoices", "invoice", client_id=client_id
            ):
                if needle in str(invoice.get("notes") or ""):
                    return str(invoice.get("id"))
            return None
        body = self.api.call("GetCredits", {"clientid": client_id}, client_id=client_id)
        for entry in records(body, "credits", "credit"):
            if needle in str(entry.get("description") or ""):
                return str(entry.get("id"))
        return None

    def _resolve(self, store: Store, intent: Posting) -> None:
        """Settle an intent left open by an earlier run: found in WHMCS, or sent now."""
        external_id = self._find(intent.client_id, intent.reference, intent.kind)
        if external_id is None:
            log.info("posting %s is not in WHMCS: sending it", intent.reference)
            try:
                external_id = self._send(intent)
            except WhmcsOutcomeUnknown as exc:
                external_id = self._find(intent.client_id, intent.reference, intent.kind)
                if external_id is None:
                    raise BillingBackendError(str(exc)) from None
        self._mark_posted(store, intent.reference, external_id)

    @staticmethod
    def _mark_posted(store: Store, reference: str, external_id: str) -> None:
        with store.transaction() as session:
            session.execute(
                update(ExternalPosting)
                .where(ExternalPosting.reference == reference)
                .values(state="posted", external_id=external_id, posted_at=datetime.now(UTC))
            )

    # --- automatic top-ups (docs/topup.md) -----------------------------------------------

    def check_topup(self, config: Config) -> None:
        """WHMCS charges the card itself: no command is needed."""

    def take_topup(
        self, store: Store, config: Config, request: topup.TopupRequest
    ) -> topup.TopupOutcome:
        """Invoice the amount, capture it on the client's stored card, make it credit.

        Each step is recorded (topup_attempts.step) and committed before WHMCS hears
        of it, and an earlier run's step is looked up in WHMCS before it is done
        again: the invoice by the reference in its notes, the capture by the
        invoice's status, the credit by the reference in the credit log. A lost
        answer is looked up, never followed by a resend in the same run.
        """
        ref = request.reference
        client_id = request.client_id
        invoice_id = request.external_id
        step = request.step
        try:
            if step in (None, "invoice"):
                invoice_id = self._find(client_id, ref, INVOICE) if step == "invoice" else None
                if invoice_id is None:
                    self._topup_step(store, request, "invoice", None)
                    try:
                        invoice_id = self._topup_invoice(config, request)
                    except WhmcsOutcomeUnknown as exc:
                        invoice_id = self._find(client_id, ref, INVOICE)
                        if invoice_id is None:
                            return topup.TopupOutcome(
                                topup.UNKNOWN, f"{exc}; the invoice is looked up on the next run"
                            )
                self._topup_step(store, request, "capture", invoice_id)
                step = "capture"
            if step == "capture":
                outcome = self._topup_capture(client_id, str(invoice_id))
                if outcome is not None:
                    return outcome
                if config.topup.whmcs_credit == "none":
                    return topup.TopupOutcome(topup.PAID, f"WHMCS invoice {invoice_id}")
                self._topup_step(store, request, "credit", invoice_id)
            if self._find(client_id, ref, CREDIT_ADD) is None:
                try:
                    self.api.call(
                        "AddCredit",
                        {
                            "clientid": client_id,
                            "description": f"VoIP automatic top-up {marker(ref)}, "
                            f"invoice {invoice_id}",
                            "amount": money.quantize(request.amount, 2),
                            "type": "add",
                        },
                        client_id=client_id,
                    )
                except WhmcsOutcomeUnknown as exc:
                    if self._find(client_id, ref, CREDIT_ADD) is None:
                        return topup.TopupOutcome(
                            topup.UNKNOWN,
                            f"invoice {invoice_id} is paid; {exc}; "
                            "the credit is looked up on the next run",
                        )
        except BillingBackendError as exc:
            return topup.TopupOutcome(topup.UNKNOWN, str(exc))
        return topup.TopupOutcome(topup.PAID, f"WHMCS invoice {invoice_id}")

    def _topup_invoice(self, config: Config, request: topup.TopupRequest) -> str:
        today = datetime.now(UTC).date().isoformat()
        text = f"VoIP credit top-up {marker(request.reference)}"
        params: dict[str, Any] = {
            "userid": request.client_id,
            "status": "Unpaid",
            "date": today,
            "duedate": today,
            "notes": text,
            "itemdescription1": text,
            "itemamount1": money.quantize(request.amount, 2),
            "itemtaxed1": "0",
            "autoapplycredit": "0",
            "sendinvoice": "0",
        }
        if config.topup.whmcs_payment_method:
            params["paymentmethod"] = config.topup.whmcs_payment_method
        body = self.api.call("CreateInvoice", params, client_id=request.client_id)
        invoice_id = str(body.get("invoiceid") or "")
        if not invoice_id:
            raise DataError(
                f"WHMCS CreateInvoice for client {request.client_id}: no invoiceid in the answer"
            )
        return invoice_id

    def _invoice_status(self, client_id: int, invoice_id: str) -> str:
        body = self.api.call("GetInvoice", {"invoiceid": invoice_id}, client_id=client_id)
        return str(body.get("status") or "")

    def _topup_capture(self, client_id: int, invoice_id: str) -> topup.TopupOutcome | None:
        """Capture the invoice unless it is paid already; None when it is paid."""
        status = self._invoice_status(client_id, invoice_id)
        if status == "Paid":
            return None
        if status != "Unpaid":
            return topup.TopupOutcome(
                topup.DECLINED, f"WHMCS invoice {invoice_id} is {status or 'without a status'}"
            )
        try:
            self.api.call("CapturePayment", {"invoiceid": invoice_id}, client_id=client_id)
        except WhmcsOutcomeUnknown as exc:
            if self._invoice_status(client_id, invoice_id) == "Paid":
                return None
            return topup.TopupOutcome(
                topup.UNKNOWN, f"{exc}; invoice {invoice_id} is looked at again on the next run"
            )
        except BillingBackendError as exc:
            if self._invoice_status(client_id, invoice_id) == "Paid":
                return None
            if "Payment Attempt Failed" not in str(exc):
                return topup.TopupOutcome(topup.UNKNOWN, str(exc))
            # Declined: cancel the invoice, so that it is never owing.
            try:
                self.api.call(
                    "UpdateInvoice",
                    {"invoiceid": invoice_id, "status": "Cancelled"},
                    client_id=client_id,
                )
            except BillingBackendError as cancel:
                log.warning("%s; cancel invoice %s in WHMCS", cancel, invoice_id)
            return topup.TopupOutcome(topup.DECLINED, f"{exc} (invoice {invoice_id} cancelled)")
        if self._invoice_status(client_id, invoice_id) != "Paid":
            return topup.TopupOutcome(
                topup.UNKNOWN,
                f"WHMCS CapturePayment for client {client_id} answered success, "
                f"but invoice {invoice_id} is not Paid",
            )
        return None

    @staticmethod
    def _topup_step(
        store: Store, request: topup.TopupRequest, step: str, invoice_id: str | None
    ) -> None:
        """Record the step about to be taken, committed before WHMCS hears of it."""
        with store.transaction() as session:
            session.execute(
                update(TopupAttempt)
                .where(TopupAttempt.id == request.attempt_id)
                .values(step=step, external_id=invoice_id, updated_at=datetime.now(UTC))
            )

    # --- custom client fields -------------------------------------------------------------

    def field_id(self, key: str, client: dict[str, Any] | None = None) -> int | None:
        """The WHMCS custom field id that `whmcs.fields.<key>` names; None if not mapped.

        `id:N` is used as is. A name is matched against field names in the answer;
        WHMCS's GetClientsDetails gives ids only, so a name that cannot be matched is
        a configuration error telling the operator to write the id.
        """
        spec = (self.whmcs.fields.get(key) or "").strip()
        if not spec:
            return None
        if spec.lower().startswith("id:"):
            try:
                return int(spec[3:])
            except ValueError:
                raise ConfigError(f"whmcs.fields.{key}: {spec!r} is not id:N") from None
        for entry in (client or {}).get("customfields") or []:
            if isinstance(entry, dict) and entry.get("name") == spec:
                return int(entry["id"])
        raise ConfigError(
            f'whmcs.fields.{key} = "{spec}": WHMCS\'s API names custom client fields by id '
            f'only; write "id:N" (the N of the field under Setup > Custom Fields > Client)'
        )

    @staticmethod
    def field_value(client: dict[str, Any], field_id: int) -> str:
        for entry in client.get("customfields") or []:
            if isinstance(entry, dict) and str(entry.get("id")) == str(field_id):
                return str(entry.get("value") or "")
        return ""

    def suspension_changed(self, session: Session, client_id: int, suspended: bool) -> None:
        """Write the client's VoIP suspension state to WHMCS ("yes" / "none"); never raises.

        Only when the client's `voip_suspended` is "none" (autosuspend decides): an
        operator's yes/no override already says what the state is and is left alone.
        What was written is remembered, so `whmcs sync` can tell voipctl's own value
        from an operator's override typed in WHMCS.
        """
        from voipctl.store.models import Client  # noqa: PLC0415 - avoid a cycle at import

        client = session.get(Client, client_id)
        if client is None or client.voip_suspended != "none":
            return
        field = self.field_id("suspension_state")
        if field is None:
            return
        value = "yes" if suspended else "none"
        if last_field_write(session, client_id, field) == value:
            return  # another service of the client already wrote it
        try:
            self.api.call(
                "UpdateClient",
                {"clientid": client_id, "customfields": encode_customfields({field: value})},
                client_id=client_id,
            )
        except BillingBackendError as exc:
            # autosuspend calls this in the transaction that records a change the provider
            # already made: a WHMCS outage must not undo that record. The field catches up
            # at the client's next change.
            log.warning("%s; the suspension state was not written to WHMCS", exc)
            return
        remember_field_write(session, client_id, field, value)

    # --- emails ---------------------------------------------------------------------------

    def deliver_alerts(self, store: Store, config: Config) -> Delivery:
        """Client alerts through WHMCS SendEmail (the operator's templates); the rest by SMTP."""
        from voipctl.notify import outbox  # noqa: PLC0415 - alerts sit above the ledger

        if self.whmcs.emails != "whmcs":
            return outbox.deliver_pending(store, config.email)
        result = outbox.Delivery()
        try:
            with job_lock(store, outbox.OUTBOX_LOCK):
                self._send_emails(store, result)
        except LockHeld:
            result.skipped = True
            return result
        if not result.failed:
            # Operator notices (manual suspensions) have no WHMCS template: SMTP. Only when
            # every client alert went out, since SMTP delivery takes every unsent row.
            smtp = outbox.deliver_pending(store, config.email)
            result.sent += smtp.sent
            result.failed += smtp.failed
            result.pending += smtp.pending
            result.errors += smtp.errors
        return result

    def _send_emails(self, store: Store, result: Delivery) -> None:
        templates = self.whmcs.templates
        with store.transaction() as session:
            rows = list(
                session.execute(
                    select(OutboxEmail.id, OutboxEmail.client_id, OutboxEmail.template)
                    .where(
                        OutboxEmail.sent_at.is_(None),
                        OutboxEmail.template.in_(list(templates)),
                        OutboxEmail.client_id.is_not(None),
                    )
                    .order_by(OutboxEmail.id)
                )
            )
        for email_id, client_id, template in rows:
            error = None
            try:
                self.api.call(
                    "SendEmail",
                    {"messagename": templates[template], "id": client_id},
                    client_id=client_id,
                )
            except BillingBackendError as exc:
                error = str(exc)
            with store.transaction() as session:
                values: dict[str, Any] = {
                    "attempts": OutboxEmail.attempts + 1,
                    "last_error": error[:1000] if error else None,
                }
                if error is None:
                    values["sent_at"] = datetime.now(UTC)
                session.execute(
                    update(OutboxEmail)
                    .where(OutboxEmail.id == email_id, OutboxEmail.sent_at.is_(None))
                    .values(**values)
                )
            if error is None:
                result.sent += 1
            else:
                result.failed += 1
                result.errors.append(f"email {email_id} ({template}): {error}; will retry")


@dataclass
class PostingReport:
    """What one posting run did."""

    posted: list[Posting]
    planned: list[Posting]
    failures: list[str]

    def __init__(self) -> None:
        self.posted, self.planned, self.failures = [], [], []


def remember_field_write(session: Session, client_id: int, field_id: int, value: str) -> None:
    """Record the value voipctl last wrote to a client's custom field (one row per field)."""
    reference = f"whmcs-field:{client_id}:{field_id}"
    row = session.scalar(select(ExternalPosting).where(ExternalPosting.reference == reference))
    stamp = datetime.now(UTC)
    if row is None:
        session.add(
            ExternalPosting(
                client_id=client_id,
                reference=reference,
                kind=FIELD_WRITE,
                amount=Decimal(0),
                state="posted",
                external_id=value,
                created_at=stamp,
                posted_at=stamp,
            )
        )
    else:
        row.external_id = value
        row.posted_at = stamp
    session.flush()


def last_field_write(session: Session, client_id: int, field_id: int) -> str | None:
    """The value voipctl last wrote to this custom field, if it ever wrote one."""
    return session.scalar(
        select(ExternalPosting.external_id).where(
            ExternalPosting.reference == f"whmcs-field:{client_id}:{field_id}"
        )
    )
