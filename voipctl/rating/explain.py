"""The whole story of one call's rating, for `voipctl explain` (docs/cli.md, Support).

`trace(session, cdr_id)` re-runs the rating of one stored CDR with the same
code `voipctl rate` uses, recording every decision: each normalisation step,
the patterns tried, the deck version and row matched (or the prefixes tried),
and the formula with its numbers. Free seconds are the ones the CDR was given
when it was rated (they depend on the calls rated before it that month), so
the recomputed cost is comparable with the stored one.

The result is a plain dict (JSON-ready apart from Decimal and datetime values)::

    {"cdr": {...}, "product": {...}, "normalization": [{"rule": ..., "number": ...}],
     "patterns": {"suppress": {...}, "exclude": {...}}, "status": "rated",
     "deck": {...} | None, "match": {...}, "formula": {...}, "stored": {...},
     "matches_stored": True, "ledger": [...]}
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.errors import NotFound
from voipctl.rating import deck
from voipctl.rating.cost import MARKUP_DENOMINATOR, cost_units, exact_cost
from voipctl.rating.load import SessionSource
from voipctl.rating.numbers import normalize
from voipctl.rating.patterns import raw_digits
from voipctl.rating.rater import Rater
from voipctl.store.models import Cdr, DeckVersion, LedgerEntry, Service


def _patterns(pattern_set, cleaned: str, normalized: str | None) -> dict[str, Any]:
    raw = raw_digits(cleaned)
    tried = []
    for against, value in (("raw", raw), ("normalized", normalized)):
        if value:
            tried.append({"against": against, "value": value, "matched": pattern_set.which(value)})
    matched = next((t for t in tried if t["matched"]), None)
    return {
        "patterns": list(pattern_set.patterns),
        "tried": tried,
        "matched": matched["matched"] if matched else None,
    }


def _fmt(units: int | None, places: int = 2) -> str | None:
    return money.fmt(units, places, units=True) if units is not None else None


def trace(session: Session, cdr_id: int) -> dict[str, Any]:
    """Explain how CDR `cdr_id` was (or would now be) rated; NotFound for an unknown id."""
    cdr = session.get(Cdr, cdr_id)
    if cdr is None:
        raise NotFound(f"no CDR {cdr_id}")
    service = session.get(Service, cdr.service_id)
    rater = Rater(SessionSource(session))
    product = rater.product(service.product_id)
    start = int(cdr.start.timestamp())
    direction = "inbound" if cdr.direction == "inbound" else "outbound"

    steps: list[dict[str, str]] = []
    norm = normalize(cdr.number, product.rules, steps)
    answered = cdr.answer is not None
    rating = rater.rate(product, cdr.direction, cdr.number, cdr.billsec or 0, start, answered)

    result: dict[str, Any] = {
        "cdr": {
            "id": cdr.id,
            "service_id": cdr.service_id,
            "client_id": cdr.client_id,
            "direction": cdr.direction,
            "number": cdr.number,
            "start": cdr.start,
            "answer": cdr.answer,
            "billsec": cdr.billsec,
            "raw": _raw(cdr.raw),
        },
        "product": {
            "id": product.product_id,
            "name": product.name,
            "metered": product.metered,
            "bill_inbound": product.bill_inbound,
            "markup_percent": product.markup_percent,
            "free_minutes": product.free_seconds // 60,
            "decimals": product.decimals,
        },
        "normalization": steps,
        "normalized": norm.number,
        "patterns": {
            "suppress": _patterns(product.suppress, norm.cleaned, norm.number),
            "exclude": _patterns(product.exclude, norm.cleaned, norm.number),
        },
        "status": rating.status,
        "status_reason": _reason(rating.status, cdr, norm.status),
        "deck": None,
        "match": None,
        "formula": None,
    }

    needs_rate = rating.status in ("rated", "no_rate")
    if needs_rate:
        version = deck.version_in_force(product.versions, direction, start)
        if version is None:
            result["deck"] = {
                "version_id": None,
                "reason": f"no deck version of {product.name} has {direction} rates "
                f"in force at {cdr.start.isoformat()}",
            }
        else:
            row = session.get(DeckVersion, version.id)
            result["deck"] = {
                "version_id": version.id,
                "effective_from": row.effective_from,
                "source": row.source,
                "rows": row.row_count,
                "direction": direction,
            }
        matcher = product.matcher(rater.source, direction, start)
        match = matcher.match(rating.normalized) if rating.normalized else None
        candidates = matcher.candidates(rating.normalized or "")
        if match is None:
            result["match"] = {
                "row": None,
                "candidates": candidates,
                "reason": f"none of the prefixes {', '.join(candidates) or '(none)'} "
                f"is in the {direction} deck or the overrides",
            }
        else:
            result["match"] = {
                "row": {
                    "prefix": match.prefix,
                    "description": match.description,
                    "rate": _fmt(match.rate),
                    "increment": match.increment,
                    "connect_fee": _fmt(match.connect_fee),
                    "source": match.source,
                },
                "candidates": candidates[: candidates.index(match.prefix) + 1],
            }
            result["formula"] = _formula(cdr, product, match, rating)
    result["stored"] = {
        "status": cdr.status,
        "prefix": cdr.prefix,
        "billable_seconds": cdr.billable_seconds,
        "free_seconds": cdr.free_seconds,
        "cost": cdr.cost,
        "rated_at": cdr.rated_at,
        "rerate_count": cdr.rerate_count,
    }
    recomputed_cost = result["formula"]["cost"] if result["formula"] else rating.cost_decimal
    result["matches_stored"] = cdr.status == rating.status and (
        cdr.cost == recomputed_cost or cdr.status is None
    )
    result["ledger"] = _ledger(session, cdr)
    return result


def _raw(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _reason(status: str, cdr: Cdr, norm_status: str | None) -> str:
    reasons = {
        "suppressed": "the number matches a suppress pattern",
        "excluded": "a feature code, or the number matches an exclude pattern"
        if norm_status != "excluded"
        else "a feature code (starts with * or #)",
        "internal": "the PBX marked the call local"
        if cdr.direction == "local"
        else "an extension: few enough digits to be internal",
        "invalid_number": "the number cannot be made an international number of 8 to 15 digits",
        "unanswered": "billsec is 0 or the call has no answer time",
        "unmetered": "the product is unmetered",
        "inbound_not_billed": "an inbound call, and the product does not bill inbound calls",
        "no_rate": "no deck or override prefix starts the number",
        "rated": "rated on the longest matching prefix",
    }
    return reasons[status]


def _formula(cdr: Cdr, product, match, rating) -> dict[str, Any]:
    billable = rating.billable_seconds
    # The free seconds the call was given when it was rated: they depend on the calls
    # rated before it in its month, which a single-call trace cannot replay.
    free = min(cdr.free_seconds or 0, billable) if cdr.status == "rated" else rating.free_seconds
    charged = billable - free
    factor = match.factor
    units = cost_units(match.rate, match.connect_fee, charged, product.decimals, factor)
    exact = exact_cost(match.rate, match.connect_fee, charged, factor)
    markup = ""
    rate_text = _fmt(match.rate)
    if factor != MARKUP_DENOMINATOR:
        markup = f" x (1 + {product.markup_percent}/100)"
    text = (
        f"billsec {cdr.billsec} -> billable {billable} ({match.increment}) -> free {free} "
        f"-> charged {charged} s; cost = round_half_up({_fmt(match.connect_fee)} + "
        f"{rate_text}{markup} x {charged} / 60, {product.decimals}) = {exact.normalize():f} "
        f"-> {_fmt(units, product.decimals)}"
    )
    return {
        "billsec": cdr.billsec,
        "increment": match.increment,
        "billable_seconds": billable,
        "free_seconds": free,
        "charged_seconds": charged,
        "rate": rate_text,
        "markup_percent": product.markup_percent if match.source == "deck" else 0,
        "connect_fee": _fmt(match.connect_fee),
        "exact_cost": exact,
        "cost": money.from_units(units),
        "text": text,
    }


def _ledger(session: Session, cdr: Cdr) -> list[dict[str, Any]]:
    """The entry that billed the call and every re-rating entry of it."""
    clauses = [LedgerEntry.reference.like(f"rerate:{cdr.id}:%")]
    if cdr.billed_entry_id is not None:
        clauses.append(LedgerEntry.id == cdr.billed_entry_id)
    entries = list(session.scalars(select(LedgerEntry).where(or_(*clauses))))
    # The first charge of a re-rated call is what its first reversal reverses.
    known = {e.id for e in entries}
    reversed_ids = {e.reverses_id for e in entries if e.reverses_id and e.reverses_id not in known}
    if reversed_ids:
        entries += session.scalars(select(LedgerEntry).where(LedgerEntry.id.in_(reversed_ids)))
    entries.sort(key=lambda e: e.id)
    return [
        {
            "id": e.id,
            "kind": e.kind,
            "amount": e.amount,
            "reference": e.reference,
            "note": e.note,
            "created_at": e.created_at,
        }
        for e in entries
    ]
