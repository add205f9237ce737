"""The one checker every fault test ends with: docs/billing.md's guarantees, read from the database.

    from tests.support.invariants import check_invariants
    report = check_invariants(store, smtp=sink, provider_suspended=sim.suspended_services())

Raises `InvariantViolation` listing every broken rule (not only the first); returns
counts of what it looked at, so a test can also assert that there was something to check:

- no CDR twice: (server, provider_id) unique, and no two rows with the same call content;
- every CDR billed at most once: charge rows count exactly the CDRs that point at them;
- ledger = rated costs: charges + reversals == -(cost of billed CDRs), overall and per
  client, to the last unit; every billed CDR is rated and points at an existing charge;
- every decided email sent exactly once: outbox dedupe keys unique, every row sent, and
  the SMTP sink received exactly the sent rows (by recipient and subject when it can tell);
- every suspension confirmed by the provider: `services.suspended` is true exactly when the
  service's last successful audit row is a suspend (`manual_action_required` excepted), and
  matches the provider's own state when the test knows it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from sqlalchemy import text

from voipctl.store import Store, open_store

# The columns that describe one call; two rows equal on all of them are one call stored twice.
CALL_CONTENT = (
    "server",
    "service_id",
    "direction",
    "extension",
    "caller",
    "number",
    "start",
    "answer",
    '"end"',
    "billsec",
)


class InvariantViolation(AssertionError):
    """One or more of docs/billing.md's guarantees does not hold in the database."""

    def __init__(self, violations: list[str]):
        self.violations = violations
        super().__init__("invariants broken:\n  - " + "\n  - ".join(violations))


@dataclass
class InvariantReport:
    """What the checker looked at (for the fault suite's counts)."""

    cdrs: int = 0
    billed_cdrs: int = 0
    charges: int = 0
    charged_units: int = 0
    emails: int = 0
    emails_received: int | None = None
    emails_resent: int = 0
    suspended_services: int = 0
    suspension_events: int = 0
    violations: list[str] = field(default_factory=list)


def _units(value: Any) -> int:
    # SUM of BIGINT is an int on SQLite and a Decimal (numeric) on PostgreSQL.
    return int(value or 0)


def _received_messages(smtp: Any) -> tuple[int, list[Message] | None]:
    if smtp is None:
        return 0, None
    if isinstance(smtp, int):
        return smtp, None
    messages = smtp.messages if hasattr(smtp, "messages") else list(smtp)
    return len(messages), list(messages)


def identical_call_excess(conn) -> int:
    """Rows beyond the first of each group of CDRs with the same call content."""
    cols = ", ".join(CALL_CONTENT)
    return _units(
        conn.execute(
            text(
                f"SELECT SUM(n - 1) FROM (SELECT COUNT(*) AS n FROM cdrs GROUP BY {cols} "
                "HAVING COUNT(*) > 1) t"
            )
        ).scalar()
    )


def check_cdrs(conn, report: InvariantReport, *, allow_identical_calls: bool | int) -> None:
    v = report.violations
    report.cdrs = conn.execute(text("SELECT COUNT(*) FROM cdrs")).scalar_one()
    dupes = conn.execute(
        text(
            "SELECT server, provider_id, COUNT(*) FROM cdrs GROUP BY server, provider_id "
            "HAVING COUNT(*) > 1 LIMIT 5"
        )
    ).all()
    for server, provider_id, n in dupes:
        v.append(f"CDR stored twice: server {server} provider_id {provider_id!r} x{n}")
    if allow_identical_calls is True:
        return
    if allow_identical_calls:
        # A feed that really holds N equal calls (the simulator, LES.NET in one second):
        # more than N extra rows means one was stored twice under a second key.
        excess = identical_call_excess(conn)
        if excess > allow_identical_calls:
            v.append(
                f"{excess} rows repeat another call's content, the feed holds only "
                f"{allow_identical_calls} such calls (a call stored twice under two keys)"
            )
        return
    if not allow_identical_calls:
        cols = ", ".join(CALL_CONTENT)
        same = conn.execute(
            text(
                f"SELECT {cols}, COUNT(*), MIN(provider_id), MAX(provider_id) FROM cdrs "
                f"GROUP BY {cols} HAVING COUNT(*) > 1 LIMIT 5"
            )
        ).all()
        for row in same:
            v.append(
                f"the same call stored {row[-3]} times under different provider ids "
                f"({row[-2]!r}, {row[-1]!r}) on server {row[0]}"
            )


def check_billing(conn, report: InvariantReport) -> None:
    v = report.violations
    report.billed_cdrs = conn.execute(
        text("SELECT COUNT(*) FROM cdrs WHERE billed_entry_id IS NOT NULL")
    ).scalar_one()
    report.charges = conn.execute(
        text("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'charge'")
    ).scalar_one()

    unrated = conn.execute(
        text(
            "SELECT COUNT(*) FROM cdrs WHERE billed_entry_id IS NOT NULL "
            "AND (cost IS NULL OR status IS NULL)"
        )
    ).scalar_one()
    if unrated:
        v.append(f"{unrated} billed CDR(s) have no rated cost")

    dangling = conn.execute(
        text(
            "SELECT c.id, c.billed_entry_id, e.kind, e.client_id, c.client_id FROM cdrs c "
            "LEFT JOIN ledger_entries e ON e.id = c.billed_entry_id "
            "WHERE c.billed_entry_id IS NOT NULL "
            "AND (e.id IS NULL OR e.kind <> 'charge' OR e.client_id <> c.client_id) LIMIT 5"
        )
    ).all()
    for cdr_id, entry_id, kind, entry_client, cdr_client in dangling:
        why = "missing" if kind is None else f"a {kind} of client {entry_client}"
        v.append(
            f"CDR {cdr_id} (client {cdr_client}) is billed by ledger entry {entry_id}, "
            f"which is {why}"
        )

    # At most once: each charge says how many CDRs it billed; those CDRs must point at it.
    miscounted = conn.execute(
        text(
            "SELECT e.id, e.cdr_count, COUNT(c.id) FROM ledger_entries e "
            "LEFT JOIN cdrs c ON c.billed_entry_id = e.id "
            "WHERE e.kind = 'charge' AND NOT EXISTS (SELECT 1 FROM ledger_entries r "
            "  WHERE r.kind = 'reversal' AND r.reverses_id = e.id) "
            "GROUP BY e.id, e.cdr_count "
            "HAVING e.cdr_count <> COUNT(c.id) LIMIT 5"
        )
    ).all()
    for entry_id, claimed, pointing in miscounted:
        v.append(
            f"charge {entry_id} says it billed {claimed} CDR(s) but {pointing} point at it "
            "(a CDR billed twice, or a charge without its CDRs)"
        )

    ledger_units = _units(
        conn.execute(
            text("SELECT SUM(amount) FROM ledger_entries WHERE kind IN ('charge', 'reversal')")
        ).scalar()
    )
    cost_units = _units(
        conn.execute(text("SELECT SUM(cost) FROM cdrs WHERE billed_entry_id IS NOT NULL")).scalar()
    )
    report.charged_units = -ledger_units
    if ledger_units != -cost_units:
        v.append(
            f"ledger charges total {ledger_units} units but billed CDRs cost {cost_units} units "
            f"(difference {ledger_units + cost_units})"
        )
        per_client = conn.execute(
            text(
                "SELECT client_id, SUM(a) FROM ("
                " SELECT client_id, amount AS a FROM ledger_entries"
                "  WHERE kind IN ('charge', 'reversal')"
                " UNION ALL"
                " SELECT client_id, cost AS a FROM cdrs WHERE billed_entry_id IS NOT NULL"
                ") t GROUP BY client_id HAVING SUM(a) <> 0 LIMIT 5"
            )
        ).all()
        for client_id, diff in per_client:
            v.append(f"client {client_id}: charges and billed costs differ by {_units(diff)} units")


def check_emails(conn, report: InvariantReport, smtp: Any, *, allow_unsent: bool) -> None:
    v = report.violations
    report.emails = conn.execute(text("SELECT COUNT(*) FROM outbox")).scalar_one()
    dupes = conn.execute(
        text("SELECT dedupe_key, COUNT(*) FROM outbox GROUP BY dedupe_key HAVING COUNT(*) > 1")
    ).all()
    for key, n in dupes[:5]:
        v.append(f"email decision {key!r} recorded {n} times")
    sent_rows = conn.execute(
        text("SELECT recipient, subject FROM outbox WHERE sent_at IS NOT NULL")
    ).all()
    unsent = report.emails - len(sent_rows)
    if unsent and not allow_unsent:
        keys = conn.execute(
            text("SELECT dedupe_key FROM outbox WHERE sent_at IS NULL LIMIT 3")
        ).scalars()
        v.append(f"{unsent} decided email(s) never sent: {', '.join(keys)}")
    received, messages = _received_messages(smtp)
    if smtp is None:
        return
    if messages is not None:
        # An email resent with the same Message-ID (killed between the server's "250 OK"
        # and the commit that marks it sent) is one email to the receiving system: it is
        # counted apart, not as a second email.
        distinct: dict[str, Message] = {}
        for index, message in enumerate(messages):
            key = str(message["Message-ID"] or f"(no id {index})")
            distinct.setdefault(key, message)
        report.emails_resent = len(messages) - len(distinct)
        messages = list(distinct.values())
        received = len(messages)
    report.emails_received = received
    if received != len(sent_rows):
        v.append(
            f"the SMTP server received {received} email(s) but the outbox marks "
            f"{len(sent_rows)} as sent (an email lost or sent twice)"
        )
    if messages is not None:
        got = Counter((_first_address(m["To"]), str(m["Subject"] or "")) for m in messages)
        want = Counter((_first_address(r), s) for r, s in sent_rows)
        for key in (got - want) + (want - got):
            v.append(
                f"email to {key[0]} {key[1]!r}: received {got[key]} time(s), outbox says "
                f"{want[key]}"
            )


def _first_address(value: Any) -> str:
    from email.utils import getaddresses

    pairs = getaddresses([str(value or "")])
    return pairs[0][1].lower() if pairs else ""


def check_suspensions(
    conn, report: InvariantReport, provider_suspended: Mapping[int, bool] | None
) -> None:
    v = report.violations
    report.suspension_events = conn.execute(
        text("SELECT COUNT(*) FROM suspension_events")
    ).scalar_one()
    last_ok = dict(
        conn.execute(
            text(
                "SELECT e.service_id, e.action FROM suspension_events e "
                "JOIN (SELECT service_id, MAX(id) AS id FROM suspension_events "
                "      WHERE ok = :yes GROUP BY service_id) m ON m.id = e.id"
            ),
            {"yes": True},
        ).all()
    )
    services = conn.execute(
        text("SELECT id, suspended, manual_action_required FROM services ORDER BY id")
    ).all()
    for service_id, suspended, manual in services:
        suspended = bool(suspended)
        report.suspended_services += suspended
        if manual:
            # A manual lever: recorded without the provider (docs/billing.md's one exception).
            continue
        confirmed = last_ok.get(service_id) == "suspend"
        if suspended and not confirmed:
            v.append(
                f"service {service_id} is recorded suspended without a provider-confirmed "
                f"suspend (last confirmed action: {last_ok.get(service_id)})"
            )
        elif not suspended and confirmed:
            v.append(
                f"service {service_id} is recorded active but its last confirmed action "
                "is a suspend"
            )
        on_provider = (provider_suspended or {}).get(service_id)
        if on_provider is not None and bool(on_provider) != suspended:
            v.append(
                f"service {service_id}: the provider says suspended="
                f"{bool(on_provider)}, the database says {suspended}"
            )


def check_invariants(
    store: Store | str,
    *,
    smtp: Any = None,
    provider_suspended: Mapping[int, bool] | None = None,
    allow_unsent: bool = False,
    allow_identical_calls: bool | int = False,
) -> InvariantReport:
    """Check every guarantee; raise InvariantViolation listing all that fail.

    `smtp`: an SmtpSink, a list of received messages, or a received count.
    `provider_suspended`: {service_id: suspended} as the provider (simulator) sees it.
    `allow_unsent`: emails still waiting after an outage are not (yet) a violation.
    `allow_identical_calls`: a feed that really holds equal calls (LES.NET, same second):
    True allows any, an int N allows at most N rows that repeat another's content.
    """
    owned = isinstance(store, str)
    st = open_store(store) if owned else store
    report = InvariantReport()
    try:
        with st.engine.connect() as conn:
            check_cdrs(conn, report, allow_identical_calls=allow_identical_calls)
            check_billing(conn, report)
            check_emails(conn, report, smtp, allow_unsent=allow_unsent)
            check_suspensions(conn, report, provider_suspended)
            conn.rollback()
    finally:
        if owned:
            st.dispose()
    if report.violations:
        raise InvariantViolation(report.violations)
    return report


def summarize(reports: Iterable[InvariantReport]) -> dict[str, int]:
    """Totals over several checks, for the fault suite's printed counts."""
    total: Counter[str] = Counter()
    for r in reports:
        total.update(
            cdrs=r.cdrs, billed=r.billed_cdrs, charges=r.charges, emails=r.emails, checks=1
        )
    return dict(total)
