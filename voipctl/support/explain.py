"""`voipctl explain`: the whole story of one call, for "why was I charged for this?".

`explain_cdr` assembles one document from what is stored: the provider's raw
record, the call as stored, how it was rated (the rating engine's trace:
normalisation steps, patterns tried, deck version and row, the cost formula
with its numbers), the free minutes of its month, the ledger entry that billed
it and every re-rating entry. `explain_text` prints that document for a person.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.catalog import id_fits
from voipctl.errors import NotFound
from voipctl.rating.explain import trace
from voipctl.store.models import Cdr, Client, DeckVersion, LedgerEntry, Product, Service
from voipctl.support.common import client_zone, local_time

COST_PLACES = 4
# How many automatic top-ups after a call `explain` lists.
AUTO_TOPUPS_SHOWN = 5


def _money(value) -> str | None:
    return money.fmt(value, 2)


def _entry(entry: LedgerEntry | None, zone: ZoneInfo) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {
        "id": entry.id,
        "kind": entry.kind,
        "amount": money.fmt(entry.amount, COST_PLACES),
        "reference": entry.reference,
        "note": entry.note,
        "service_id": entry.service_id,
        "cdr_count": entry.cdr_count,
        "reverses_id": entry.reverses_id,
        "created_at": entry.created_at,
        "created_local": local_time(entry.created_at, zone),
    }


def month_bounds(start: datetime, zone: ZoneInfo) -> tuple[str, datetime, datetime]:
    """The calendar month (in `zone`) that contains `start`: label, first instant, next month."""
    local = start.astimezone(zone)
    first = datetime.combine(local.date().replace(day=1), time(), zone)
    year, month = (first.year + 1, 1) if first.month == 12 else (first.year, first.month + 1)
    after = datetime.combine(first.date().replace(year=year, month=month), time(), zone)
    return f"{first.year:04d}-{first.month:02d}", first.astimezone(UTC), after.astimezone(UTC)


def free_minutes(
    session: Session, cdr: Cdr, product: Product | None, zone: ZoneInfo
) -> dict[str, Any]:
    """The service's free minutes in the call's month: allowance, used before it, by it, in all."""
    label, lo, hi = month_bounds(cdr.start, zone)
    in_month = (
        Cdr.service_id == cdr.service_id,
        Cdr.start >= lo,
        Cdr.start < hi,
        Cdr.status == "rated",
    )
    total = func.coalesce(func.sum(Cdr.free_seconds), 0)
    used_month = session.scalar(select(total).where(*in_month)) or 0
    earlier = (Cdr.start < cdr.start) | ((Cdr.start == cdr.start) & (Cdr.id < cdr.id))
    used_before = session.scalar(select(total).where(*in_month, earlier)) or 0
    allowance = (product.free_minutes or 0) * 60 if product is not None else 0
    return {
        "month": label,
        "allowance_seconds": allowance,
        "used_before_seconds": int(used_before),
        "used_by_call_seconds": cdr.free_seconds or 0,
        "used_in_month_seconds": int(used_month),
        "left_seconds": max(allowance - int(used_month), 0),
    }


def billing(session: Session, cdr: Cdr, zone: ZoneInfo) -> dict[str, Any]:
    """The ledger entry that billed the call first, every re-rating entry, and where it stands.

    Re-rating posts `rerate:<cdr_id>:<n>:reversal|charge` entries and points
    `billed_entry_id` at the newest; the first reversal names the original
    charge in `reverses_id`.
    """
    rerating = list(
        session.scalars(
            select(LedgerEntry)
            .where(
                LedgerEntry.client_id == cdr.client_id,
                LedgerEntry.created_at >= cdr.start,
                LedgerEntry.reference.like(f"rerate:{cdr.id}:%"),
            )
            .order_by(LedgerEntry.id)
        )
    )
    original_id = cdr.billed_entry_id
    first_reversal = next((e for e in rerating if e.kind == "reversal"), None)
    if first_reversal is not None and first_reversal.reverses_id is not None:
        original_id = first_reversal.reverses_id
    elif rerating:
        original_id = None  # first billed at cost 0, then charged by a re-rating
    original = session.get(LedgerEntry, original_id) if original_id is not None else None
    current = session.get(LedgerEntry, cdr.billed_entry_id) if cdr.billed_entry_id else None
    if cdr.billed_entry_id is not None:
        state = "billed"
    elif cdr.status == "rated" and cdr.cost:
        state = "not billed yet: the next autobill run charges it"
    elif cdr.status is None:
        state = "not rated yet: the next rate run prices it"
    elif cdr.status == "no_rate":
        state = "not billed: no rate matched, never billed as 0 (load or override a rate)"
    elif cdr.status == "invalid_number":
        state = "not billed: the number is not valid"
    else:
        state = f"nothing to bill: {cdr.status}"
    # The automatic top-ups taken since the call started (docs/topup.md), oldest first.
    topped_up = session.scalars(
        select(LedgerEntry)
        .where(
            LedgerEntry.client_id == cdr.client_id,
            LedgerEntry.created_at >= cdr.start,
            LedgerEntry.kind == "topup",
            LedgerEntry.reference.like("auto-topup-%"),
        )
        .order_by(LedgerEntry.id)
        .limit(AUTO_TOPUPS_SHOWN)
    )
    return {
        "state": state,
        "auto_topups": [_entry(e, zone) for e in topped_up],
        "billed": cdr.billed_entry_id is not None,
        "billed_by": _entry(original, zone),
        "current_entry": _entry(current, zone),
        "rerating": [_entry(e, zone) for e in rerating],
        "rerate_count": cdr.rerate_count,
    }


def stored_rating(session: Session, cdr: Cdr) -> dict[str, Any]:
    """The rating result as stored on the CDR (what was billed)."""
    version = session.get(DeckVersion, cdr.deck_version_id) if cdr.deck_version_id else None
    return {
        "status": cdr.status,
        "normalized": cdr.normalized,
        "prefix": cdr.prefix,
        "description": cdr.description,
        "rate": _money(cdr.rate),
        "rate_source": cdr.rate_source,
        "connect_fee": _money(cdr.connect_fee),
        "increment": cdr.increment,
        "deck_version": None
        if version is None
        else {
            "id": version.id,
            "effective_from": version.effective_from,
            "source": version.source,
            "imported_at": version.imported_at,
        },
        "billable_seconds": cdr.billable_seconds,
        "free_seconds": cdr.free_seconds,
        "cost": money.fmt(cdr.cost, COST_PLACES),
        "rated_at": cdr.rated_at,
    }


# Parts of the rating trace this document shows in its own sections.
_TRACE_SHOWN_ELSEWHERE = ("cdr", "stored", "ledger")


def rating_trace(session: Session, cdr_id: int) -> tuple[dict[str, Any], Any]:
    """The rating engine's step-by-step account of the call, with today's product settings
    (normalisation steps, patterns tried, deck version, prefixes tried, row matched, cost
    formula with its numbers), and the provider's raw record as the trace read it."""
    found = trace(session, cdr_id)
    steps = {k: v for k, v in found.items() if k not in _TRACE_SHOWN_ELSEWHERE}
    return steps, found["cdr"]["raw"]


def explain_cdr(session: Session, cdr_id: int, config: Any = None) -> dict[str, Any]:
    """The whole story of one call as one JSON-ready document (money as strings)."""
    cdr = session.get(Cdr, cdr_id) if id_fits(cdr_id) else None
    if cdr is None:
        raise NotFound(f"CDR {cdr_id} does not exist")
    client = session.get(Client, cdr.client_id)
    zone = client_zone(client) if client is not None else ZoneInfo("UTC")
    service = session.get(Service, cdr.service_id)
    product = session.get(Product, service.product_id) if service is not None else None
    steps, provider_record = rating_trace(session, cdr.id)
    return {
        "id": cdr.id,
        "call": {
            "server": cdr.server,
            "provider_id": cdr.provider_id,
            "client_id": cdr.client_id,
            "client_name": None
            if client is None
            else " ".join(p for p in (client.first_name, client.last_name, client.company) if p),
            "timezone": zone.key,
            "service_id": cdr.service_id,
            "product": product.name if product is not None else None,
            "direction": cdr.direction,
            "extension": cdr.extension,
            "caller": cdr.caller,
            "number": cdr.number,
            "start": cdr.start,
            "start_local": local_time(cdr.start, zone),
            "answer": cdr.answer,
            "end": cdr.end,
            "billsec": cdr.billsec,
            "hangup_cause": cdr.hangup_cause,
            "pulled_at": cdr.pulled_at,
        },
        "provider_record": provider_record,
        "rating": stored_rating(session, cdr),
        "trace": steps,
        "free_minutes": free_minutes(session, cdr, product, zone),
        "billing": billing(session, cdr, zone),
        # The fraud guard's limits this call counts toward (docs/fraud.md).
        "fraud_guard": _fraud_lines(session, cdr, config),
    }


def _fraud_lines(session: Session, cdr: Cdr, config: Any) -> list[str]:
    if config is None:
        return []
    from voipctl.jobs import fraud  # noqa: PLC0415 - only when a configuration is given

    return fraud.contributions(session, config, cdr)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _tree(value: Any, indent: int = 2) -> list[str]:
    """Nested dicts and lists as indented `key: value` lines (for the trace and raw record)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_tree(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_show(item) if item != [] and item != {} else '-'}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                sub = _tree(item, indent + 2)
                lines.append(f"{pad}- {sub[0].strip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_show(item)}")
    else:
        lines.append(f"{pad}{_show(value)}")
    return lines


def _entry_line(entry: dict[str, Any]) -> str:
    note = f" ({entry['note']})" if entry["note"] else ""
    return (
        f"entry {entry['id']} {entry['kind']} {entry['amount']} at {entry['created_local']}, "
        f"reference {entry['reference']}{note}"
    )


def explain_text(doc: dict[str, Any]) -> str:
    """The document of `explain_cdr` as text for a person, in the client's time zone."""
    call, rating, free, bill = doc["call"], doc["rating"], doc["free_minutes"], doc["billing"]
    out = [
        f"CDR {doc['id']}: {call['direction']} call from {_show(call['caller'])} "
        f"to {_show(call['number'])}",
        f"  client       {call['client_id']} {call['client_name'] or ''} ({call['timezone']})",
        f"  service      {call['service_id']}, product {_show(call['product'])}, "
        f"server {call['server']}, provider id {call['provider_id']}",
        f"  start        {call['start_local']} ({_show(call['start'])})",
        f"  billsec      {call['billsec']}"
        + (f", hangup {call['hangup_cause']}" if call["hangup_cause"] else ""),
        "",
        "Provider record",
        *_tree(doc["provider_record"]),
        "",
        "Rating (as stored, and billed)",
        f"  status       {_show(rating['status'])}",
        f"  number       {_show(call['number'])} -> {_show(rating['normalized'])}",
    ]
    if rating["prefix"]:
        version = rating["deck_version"]
        source = (
            "custom override rate (no markup)"
            if rating["rate_source"] == "override"
            else (
                f"deck version {version['id']} in force from {_show(version['effective_from'])}"
                if version
                else "deck"
            )
        )
        out += [
            f"  matched      prefix {rating['prefix']} {rating['description'] or ''} ({source})",
            f"  rate         {rating['rate']}/min, increment {rating['increment']}, "
            f"connect fee {rating['connect_fee']}",
        ]
    elif rating["status"] == "no_rate":
        version = rating["deck_version"]
        where = f"deck version {version['id']}" if version else "no deck version in force"
        out.append(f"  matched      no row: no prefix of {rating['normalized']} in {where}")
    if rating["billable_seconds"] is None:
        out.append(f"  billable     billsec {call['billsec']} s, not priced")
    else:
        out.append(
            f"  billable     {call['billsec']} s -> {rating['billable_seconds']} s, "
            f"free {_show(rating['free_seconds'])} s"
        )
    out += [
        f"  cost         {_show(rating['cost'])}",
        f"  rated at     {_show(rating['rated_at'])}",
        "",
    ]
    out += _trace_lines(doc["trace"])
    out += [
        f"Free minutes of service {call['service_id']} in {free['month']}",
        f"  allowance {free['allowance_seconds']} s; used before this call "
        f"{free['used_before_seconds']} s, by this call {free['used_by_call_seconds']} s, "
        f"in the month {free['used_in_month_seconds']} s; left {free['left_seconds']} s",
        "",
        "Billing",
        f"  state        {bill['state']}",
    ]
    if bill["billed_by"]:
        out.append(f"  billed by    {_entry_line(bill['billed_by'])}")
    for entry in bill["rerating"]:
        out.append(f"  re-rated     {_entry_line(entry)}")
    current = bill["current_entry"]
    if current and bill["rerating"] and current["id"] != bill["rerating"][-1]["id"]:
        out.append(f"  now          {_entry_line(current)}")
    for entry in bill["auto_topups"]:
        out.append(f"  topped up    {_entry_line(entry)}")
    if doc.get("fraud_guard"):
        out += ["", "Fraud guard"]
        out += [f"  {line}" for line in doc["fraud_guard"]]
    return "\n".join(out)


def _patterns_line(kind: str, found: dict[str, Any]) -> str:
    patterns = ",".join(found.get("patterns") or []) or "(none)"
    tried = ", ".join(f"{t['against']} {t['value']}" for t in found.get("tried") or [])
    verdict = f"matched {found['matched']}" if found.get("matched") else "no match"
    return f"  {kind:<12} {patterns}: tried {tried or '-'}: {verdict}"


def _trace_lines(trace: dict[str, Any]) -> list[str]:
    """The rating engine's trace as text: the decisions in the order they are taken."""
    product = trace.get("product") or {}
    out = [
        "How it is rated (the rating engine, again, with today's product settings)",
        f"  product      {product.get('name')}: markup {product.get('markup_percent')}%, "
        f"{product.get('decimals')} decimals, {product.get('free_minutes')} free minutes, "
        f"metered {_show(product.get('metered'))}, "
        f"bill inbound {_show(product.get('bill_inbound'))}",
    ]
    for i, step in enumerate(trace.get("normalization") or []):
        label = "normalise" if i == 0 else ""
        out.append(f"  {label:<12} {step.get('rule')}: {step.get('number')}")
    for kind, found in (trace.get("patterns") or {}).items():
        out.append(_patterns_line(kind, found))
    out.append(f"  status       {trace.get('status')}: {trace.get('status_reason')}")
    found_deck = trace.get("deck")
    if found_deck:
        if found_deck.get("version_id") is None:
            out.append(f"  deck         {found_deck.get('reason')}")
        else:
            out.append(
                f"  deck         version {found_deck['version_id']} ({found_deck.get('source')}, "
                f"{found_deck.get('rows')} rows) in force from "
                f"{_show(found_deck.get('effective_from'))}, {found_deck.get('direction')}"
            )
    match = trace.get("match")
    if match:
        tried = ", ".join(match.get("candidates") or []) or "-"
        row = match.get("row")
        if row:
            out.append(
                f"  prefixes     tried {tried}: matched {row['prefix']} {row['description']} "
                f"{row['rate']}/min {row['increment']}, connect fee {row['connect_fee']} "
                f"({row['source']})"
            )
        else:
            out.append(f"  prefixes     tried {tried}: {match.get('reason')}")
    formula = trace.get("formula")
    if formula:
        out.append(f"  formula      {formula['text']}")
    if "matches_stored" in trace:
        same = trace["matches_stored"]
        note = "yes" if same else "NO: the product or its rates changed since; re-rate to apply"
        out.append(f"  same as stored  {note}")
    out.append("")
    return out
