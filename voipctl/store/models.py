"""The schema: typed SQLAlchemy 2 models.

Money columns are `Money` (Decimal in Python, integer units in the database);
times are `UTCTime` (aware UTC datetimes, epoch seconds in the database).
Changing a model means changing the migrations: see `scripts/new-migration`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from voipctl.store.types import Money, Percent, UTCTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BigInteger ids that autoincrement on SQLite too (SQLite only does that for INTEGER).
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Product(Base):
    """A "VoIP package": what a service is sold as, with its rating settings (docs/rating.md §1)."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    metered: Mapped[bool] = mapped_column(Boolean, default=True)
    country_code: Mapped[str] = mapped_column(String(4), default="1")
    exit_code: Mapped[str] = mapped_column(String(6), default="011")
    national_prefix: Mapped[str | None] = mapped_column(String(6))
    prepend_country_code: Mapped[bool] = mapped_column(Boolean, default=False)
    nanp_10_digit: Mapped[bool] = mapped_column(Boolean, default=True)
    markup_percent: Mapped[Decimal] = mapped_column(Percent, default=Decimal(0))
    free_minutes: Mapped[int] = mapped_column(Integer, default=0)
    bill_inbound: Mapped[bool] = mapped_column(Boolean, default=False)
    increment_a: Mapped[int] = mapped_column(Integer, default=60)
    increment_b: Mapped[int] = mapped_column(Integer, default=60)
    inbound_increment_a: Mapped[int] = mapped_column(Integer, default=60)
    inbound_increment_b: Mapped[int] = mapped_column(Integer, default=60)
    area_code: Mapped[str | None] = mapped_column(String(3))
    decimals: Mapped[int] = mapped_column(Integer, default=4)
    exclude: Mapped[str] = mapped_column(Text, default="")
    suppress: Mapped[str] = mapped_column(Text, default="")
    max_internal_digits: Mapped[int] = mapped_column(Integer, default=6)
    # The currency the deck is priced in; None: the configuration's [billing] currency.
    currency: Mapped[str | None] = mapped_column(String(3))
    # Overrides of the fraud guard's limits for the product's services (docs/fraud.md).
    fraud: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCTime)


class DeckVersion(Base):
    """One import of a product's rate deck, in force from `effective_from` (docs/rating.md §4)."""

    __tablename__ = "deck_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    effective_from: Mapped[datetime] = mapped_column(UTCTime)
    # Which directions this version replaces: "outbound", "inbound" or "outbound,inbound".
    directions: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(Text)
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    imported_at: Mapped[datetime] = mapped_column(UTCTime)


class Rate(Base):
    """One row of a deck version."""

    __tablename__ = "rates"
    __table_args__ = (UniqueConstraint("version_id", "direction", "prefix"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("deck_versions.id"))
    direction: Mapped[str] = mapped_column(String(8))
    prefix: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, default="")
    rate: Mapped[Decimal] = mapped_column(Money)
    increment_a: Mapped[int | None] = mapped_column(Integer)
    increment_b: Mapped[int | None] = mapped_column(Integer)
    connect_fee: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))


class RateOverride(Base):
    """A custom per-prefix rate of a product: beats the deck on the same prefix, no markup."""

    __tablename__ = "rate_overrides"
    __table_args__ = (UniqueConstraint("product_id", "direction", "prefix"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    direction: Mapped[str] = mapped_column(String(8))
    prefix: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, default="")
    rate: Mapped[Decimal] = mapped_column(Money)
    increment_a: Mapped[int | None] = mapped_column(Integer)
    increment_b: Mapped[int | None] = mapped_column(Integer)
    connect_fee: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    created_at: Mapped[datetime] = mapped_column(UTCTime)


class Client(Base):
    """A customer, with the ictVoIP custom client fields of docs/billing.md."""

    __tablename__ = "clients"

    # Chosen by the operator: the client's id in their billing system.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str] = mapped_column(Text)
    last_name: Mapped[str] = mapped_column(Text)
    company: Mapped[str] = mapped_column(Text, default="")
    email: Mapped[str] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(String(3))
    has_voip_service: Mapped[bool] = mapped_column(Boolean, default=False)
    low_balance_threshold: Mapped[Decimal | None] = mapped_column(Money)
    # "none" lets autosuspend decide; "yes"/"no" override it.
    voip_suspended: Mapped[str] = mapped_column(String(4), default="none")
    manual_voip_suspend: Mapped[bool] = mapped_column(Boolean, default=False)
    credit_limit: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    auto_topup_amount: Mapped[Decimal | None] = mapped_column(Money)
    cc_auth_on_file: Mapped[bool] = mapped_column(Boolean, default=False)
    cc_auth_date: Mapped[date | None] = mapped_column(Date)
    # The low-balance latch: set when the alert is decided, cleared when credit rises above.
    low_balance_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    # The auto top-up latch (docs/topup.md): set when a top-up is decided, cleared as above.
    auto_topup_latched: Mapped[bool] = mapped_column(Boolean, default=False)
    # Overrides of the fraud guard's limits for this client (docs/fraud.md).
    fraud: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCTime)
    updated_at: Mapped[datetime] = mapped_column(UTCTime)


class Service(Base):
    """One VoIP service of a client on one server, with its parsed product fields."""

    __tablename__ = "services"

    def __init__(self, **kwargs: Any) -> None:
        extras = dict(kwargs.pop("extras", None) or {})
        for key in _extra_keys() & set(kwargs):
            extras[key] = kwargs.pop(key)
        super().__init__(extras=_checked_extras(extras), **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not have: the extras.
        if name in _extra_keys():
            return (self.extras or {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _extra_keys():
            # A new dict, so the ORM sees the change (a JSON column is not mutable-tracked).
            name, value = "extras", {**(self.extras or {}), name: value}
        if name == "extras":
            value = _checked_extras(value)
        super().__setattr__(name, value)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    server: Mapped[str] = mapped_column(String(100), index=True)
    server_type: Mapped[str] = mapped_column(String(20))
    # The product fields exactly as the operator wrote them, and what they parse to.
    domain_field: Mapped[str] = mapped_column(Text)
    billed_field: Mapped[str] = mapped_column(Text, default="")
    tenant: Mapped[str | None] = mapped_column(Text)
    peer_id: Mapped[str | None] = mapped_column(Text)
    main_did: Mapped[str | None] = mapped_column(Text)
    dids: Mapped[list[str]] = mapped_column(JSON, default=list)
    extensions: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The provider's own fields (its plugin's `extras`: a gateway, a trunk, a CDR
    # link...), key -> text, absent when not set. Read and written as attributes
    # (`service.trunk_id`, `Service(trunk_id=...)`); see _extra_keys.
    extras: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Suspension state as last confirmed by the provider.
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    # "autosuspend" (a row of the decision table), "operator" (voipctl suspend: a hold) or
    # "fraud guard" (a limit of docs/fraud.md tripped: a hold only the operator releases).
    suspended_by: Mapped[str | None] = mapped_column(String(20))
    suspend_reason: Mapped[str | None] = mapped_column(Text)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCTime)
    manual_action_required: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCTime)


@cache
def _extra_keys() -> frozenset[str]:
    from voipctl import providers

    return frozenset(providers.service_extras())


def _checked_extras(value: Any) -> dict[str, str]:
    """`Service.extras` as stored: known keys, text values, unset ones left out."""
    if not isinstance(value, dict):
        raise ValueError(f"service extras must be a table of text, not {type(value).__name__}")
    unknown = sorted(set(value) - _extra_keys())
    if unknown:
        raise ValueError(f"unknown service extra(s) {', '.join(unknown)}")
    checked = {}
    for key, item in value.items():
        if item is None:
            continue
        if not isinstance(item, str):
            raise ValueError(f"service extra {key}: text expected, not {type(item).__name__}")
        checked[key] = item
    return dict(sorted(checked.items()))


# The rows of ix_cdrs_unbilled; a query must repeat these terms literally to use it.
UNBILLED_CDR = "status = 'rated' AND billed_entry_id IS NULL"
# Calls `voipctl rate` has to look at: never rated, or left without a rate to try again.
PENDING_CDR = "status IS NULL OR status IN ('no_rate', 'invalid_number')"


class Cdr(Base):
    """One call detail record, as the provider gave it and as it was rated and billed."""

    __tablename__ = "cdrs"
    __table_args__ = (
        # The dedupe key: pull-cdrs' INSERT ... ON CONFLICT (server, provider_id).
        UniqueConstraint("server", "provider_id"),
        # With id (newest first straight off the index) and the cost, so the fraud
        # guard's sums per client and window (docs/fraud.md) read the index alone;
        # also `voipctl cdrs CLIENT` and `statement` (a client's calls of a period).
        Index("ix_cdrs_client_start", "client_id", "start", "id", "cost"),
        # A service's calls in start order: `voipctl rate`'s slices (jobs/rate.py,
        # `service_id = ? AND (start, id) > (?, ?) AND start < ?`), the free seconds
        # a service used in a month (rating/load.py `free_used`, support/explain.py),
        # and `voipctl cdrs --service`.
        Index("ix_cdrs_service_start", "service_id", "start"),
        # `voipctl rate`'s work list: only calls not rated yet or to be tried again, so a
        # call rated as it is pulled (the usual) never enters it. Nothing looks CDRs up by
        # status or by billed entry otherwise; every index on this table is paid per call.
        Index(
            "ix_cdrs_pending",
            "id",
            sqlite_where=text(PENDING_CDR),
            postgresql_where=text(PENDING_CDR),
        ),
        # autobill's work list: only rated calls not yet billed, by service in id order,
        # with the cost so its sums never touch the table. Rows leave it as they are billed.
        Index(
            "ix_cdrs_unbilled",
            "service_id",
            "id",
            "cost",
            sqlite_where=text(UNBILLED_CDR),
            postgresql_where=text(UNBILLED_CDR),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    server: Mapped[str] = mapped_column(String(100))
    # The provider's own id for the call: the dedupe key, unique per server.
    provider_id: Mapped[str] = mapped_column(String(200))
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    direction: Mapped[str] = mapped_column(String(8))
    extension: Mapped[str | None] = mapped_column(Text)
    caller: Mapped[str | None] = mapped_column(Text)
    # The number the call is rated on, as the provider gave it.
    number: Mapped[str | None] = mapped_column(Text)
    start: Mapped[datetime] = mapped_column(UTCTime)
    answer: Mapped[datetime | None] = mapped_column(UTCTime)
    end: Mapped[datetime | None] = mapped_column(UTCTime)
    billsec: Mapped[int] = mapped_column(Integer, default=0)
    hangup_cause: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[str | None] = mapped_column(Text)
    pulled_at: Mapped[datetime] = mapped_column(UTCTime)
    # Rating results (docs/rating.md): null status means not rated yet.
    status: Mapped[str | None] = mapped_column(String(20))
    normalized: Mapped[str | None] = mapped_column(String(32))
    prefix: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    rate: Mapped[Decimal | None] = mapped_column(Money)
    connect_fee: Mapped[Decimal | None] = mapped_column(Money)
    increment: Mapped[str | None] = mapped_column(String(16))
    deck_version_id: Mapped[int | None] = mapped_column(Integer)
    rate_source: Mapped[str | None] = mapped_column(String(10))  # "deck" or "override"
    billable_seconds: Mapped[int | None] = mapped_column(Integer)
    free_seconds: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[Decimal | None] = mapped_column(Money)
    rated_at: Mapped[datetime | None] = mapped_column(UTCTime)
    rerate_count: Mapped[int] = mapped_column(Integer, default=0)
    billed_entry_id: Mapped[int | None] = mapped_column(BigInteger)


class LedgerEntry(Base):
    """One movement of a client's credit. The balance is the sum of a client's rows."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_client_created", "client_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    # "topup", "charge", "adjustment", "reversal"
    kind: Mapped[str] = mapped_column(String(12))
    # Signed: a top-up is positive, a usage charge negative.
    amount: Mapped[Decimal] = mapped_column(Money)
    # The idempotency key: the same reference is taken once.
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    note: Mapped[str] = mapped_column(Text, default="")
    service_id: Mapped[int | None] = mapped_column(Integer)
    cdr_count: Mapped[int] = mapped_column(Integer, default=0)
    reverses_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCTime)


class Invoice(Base):
    """An invoice recorded from the billing system; unpaid and due means "owing"."""

    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    due_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8), default="unpaid")  # unpaid | paid
    created_at: Mapped[datetime] = mapped_column(UTCTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCTime)


class OutboxEmail(Base):
    """An email decided by a job, written in the same transaction as the decision."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    template: Mapped[str] = mapped_column(String(64))
    # Unique per decision (e.g. "low_balance_alert:42:7"): a decision is mailed once.
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    recipient: Mapped[str] = mapped_column(Text)
    bcc: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    credit: Mapped[Decimal | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UTCTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class SuspensionEvent(Base):
    """Audit of every suspend and unsuspend: who, why, and what the provider answered."""

    __tablename__ = "suspension_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id"), index=True)
    client_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(10))  # suspend | unsuspend
    actor: Mapped[str] = mapped_column(String(20))  # autosuspend | operator
    reason: Mapped[str] = mapped_column(Text, default="")
    ok: Mapped[bool] = mapped_column(Boolean)
    provider_response: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCTime)


class JobRun(Base):
    """One run of a job, for `doctor` and for the operator's history."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(32), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCTime)
    status: Mapped[str] = mapped_column(String(12), default="running")  # running|ok|failed
    host: Mapped[str] = mapped_column(Text, default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class PullWatermark(Base):
    """How far pull-cdrs has read, per server and scope (a service, or a shared CDR link)."""

    __tablename__ = "pull_watermarks"

    server: Mapped[str] = mapped_column(String(100), primary_key=True)
    scope: Mapped[str] = mapped_column(String(300), primary_key=True)
    watermark: Mapped[datetime] = mapped_column(UTCTime)
    updated_at: Mapped[datetime] = mapped_column(UTCTime)
    # A file feed's read position (the adapter's text; `ProviderAdapter.cursor`).
    cursor: Mapped[str | None] = mapped_column(Text, nullable=True)


class ExternalPosting(Base):
    """An intent to post money to an outside billing system (WHMCS), recorded before the call.

    WHMCS has no idempotency keys: the reference goes into the posting's
    description, and before a retry the backend looks for it there.
    """

    __tablename__ = "external_postings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(BigInteger, index=True)
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # credit_remove | billable_item | ...
    amount: Mapped[Decimal] = mapped_column(Money)
    state: Mapped[str] = mapped_column(String(12), default="intent")  # intent | posted
    external_id: Mapped[str | None] = mapped_column(Text)
    ledger_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCTime)
    posted_at: Mapped[datetime | None] = mapped_column(UTCTime)


class RejectedRecord(Base):
    """A provider record pull-cdrs could not read or store, set aside (docs/providers.md).

    `scope` is the pull scope it came from (a service or a shared CDR link),
    `locator` what names the record there (its provider id, or a digest of its
    text); `raw` its text with control characters escaped, at most RAW_MAX.
    """

    __tablename__ = "rejected_records"
    __table_args__ = (UniqueConstraint("server", "scope", "locator"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(300))
    locator: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UTCTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCTime)


class ServerPullState(Base):
    """Per server: when pull-cdrs last read it without an error, and how many calls it stored.

    `cdrs_stored_total` grows in the transaction that stores the calls, so the
    counter `voipctl status` exports never goes back.
    """

    __tablename__ = "server_pulls"

    server: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    cdrs_stored_total: Mapped[int] = mapped_column(BigInteger, default=0)


class StatusAlert(Base):
    """A problem `voipctl status --notify` has told the operator about, until it clears."""

    __tablename__ = "status_alerts"

    # "job:autobill", "server:fusion1", "backlog:unrated", ...
    problem: Mapped[str] = mapped_column(String(200), primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(UTCTime)


class TopupAttempt(Base):
    """One automatic top-up charge, recorded (pending) and committed before money moves.

    status: pending (decided, outcome not known yet), paid (charged and credited),
    declined (not charged), unknown (maybe charged: only ever retried under this
    reference). See docs/topup.md.
    """

    __tablename__ = "topup_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(BigInteger, index=True)
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    # WHMCS only: the step under way (invoice | capture | credit) and the invoice id.
    step: Mapped[str | None] = mapped_column(String(12))
    external_id: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")
    # The date in the client's time zone when the attempt was decided (the daily cap).
    day: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCTime)
    updated_at: Mapped[datetime] = mapped_column(UTCTime)
