"""The fraud guard (docs/fraud.md): velocity limits over the calls already stored and rated.

autosuspend runs `check()` first. It reads, with SQL aggregates per client over
the last hour and the last day (the index `ix_cdrs_client_start`, which holds
the cost), the figures
each limit looks at:

- `max_spend_per_hour` / `max_spend_per_day`: the cost of the calls that
  started in the last 60 minutes / 24 hours;
- `max_risk_calls_per_hour`: outbound calls of the last hour whose number
  (as rated: E.164 digits) starts with a prefix of `risk_prefixes`;
- `trailing_multiple`: the last hour's spend against that multiple of the
  client's own hourly average over the 30 days before the last hour. With
  `max_spend_per_hour` also set it lifts that limit for a client whose usual
  traffic is above it; alone it limits every client with history.

A limit trips at its figure (figure >= limit), never below. A tripped client's
services are suspended through their usual lever and held ("fraud guard"):
only `voipctl unsuspend` releases them, and calls that started before an
operator's release do not count again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import BigInteger, and_, case, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from voipctl import money
from voipctl.config import FRAUD_LIMITS, Config, FraudConfig, FraudLimits
from voipctl.errors import DataError, UsageError
from voipctl.store.models import Cdr, Client, Product, Service, SuspensionEvent

log = logging.getLogger(__name__)

FRAUD = "fraud guard"  # the actor of a fraud stop: a hold, like the operator's
REASON_PREFIX = "fraud guard: "
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
TRAILING_DAYS = 30
# The average of a client with less history is over the hours it has (at least a day).
MIN_TRAILING_HOURS = 24
LAST_CALLS = 10  # calls named in the operator's email
_CHUNK = 500  # client ids per IN (...) list

# The default risk list: prefix (E.164 digits, country code first), what it is, source.
# docs/fraud.md lists the same entries; a prefix is added only with a public source.
# FCC.gov's "One Ring" wireless phone scam guide, as republished (the copy that was read).
FCC_ONE_RING = "https://masscommgroup.com/vulnerabilities/one-ring-wireless-phone-scam-fcc-gov/"
NANP_PREMIUM = "https://docs.memberjunction.org/v6/api/variables/_memberjunction_telephony-adapters.DEFAULT_BLOCKED_PREFIXES.html"  # noqa: E501
# The FTC's list of these area codes, as quoted by PIX11.
FTC_AREA_CODES = (
    "https://pix11.com/2017/03/10/scam-alert-beware-unfamiliar-callers-with-these-area-codes/"
)
COMMSRISK_IRSF = "https://commsrisk.com/what-is-new-with-irsf-fraud/"
DEFAULT_RISK_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("1268", "Antigua and Barbuda (NANP, international rates)", FTC_AREA_CODES),
    ("1284", "British Virgin Islands (NANP, international rates)", FCC_ONE_RING),
    ("1473", "Grenada (NANP, international rates)", FTC_AREA_CODES),
    ("1649", "Turks and Caicos (NANP, international rates)", FCC_ONE_RING),
    ("1664", "Montserrat (NANP, international rates)", FTC_AREA_CODES),
    ("1767", "Dominica (NANP, international rates)", FTC_AREA_CODES),
    ("1809", "Dominican Republic (NANP, international rates)", FCC_ONE_RING),
    ("1829", "Dominican Republic (NANP, international rates)", FTC_AREA_CODES),
    ("1849", "Dominican Republic (NANP, international rates)", FTC_AREA_CODES),
    ("1876", "Jamaica (NANP, international rates)", FCC_ONE_RING),
    ("1900", "NANP premium-rate service code", NANP_PREMIUM),
    (
        "222",
        "Mauritania (one-ring callbacks)",
        "https://www.wnem.com/news/scam-alert-overseas-scammers-trying-to-collect-toll-charges/article_84d437f4-6db8-11e9-a923-fb1df4e9f98b.html",
    ),  # noqa: E501
    ("252", "Somalia (IRSF)", COMMSRISK_IRSF),
    ("370", "Lithuania (IRSF)", COMMSRISK_IRSF),
    ("371", "Latvia (IRSF)", COMMSRISK_IRSF),
    ("53", "Cuba (IRSF)", COMMSRISK_IRSF),
)
DEFAULT_PREFIXES = tuple(sorted(p for p, _, _ in DEFAULT_RISK_PREFIXES))


# --- limits ---------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """The limits in force for one client, after the product and client overrides."""

    max_spend_per_hour: Decimal | None = None
    max_spend_per_day: Decimal | None = None
    risk_prefixes: tuple[str, ...] = ()
    max_risk_calls_per_hour: int | None = None
    trailing_multiple: Decimal | None = None

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.max_spend_per_hour,
                self.max_spend_per_day,
                self.max_risk_calls_per_hour if self.risk_prefixes else None,
                self.trailing_multiple,
            )
        )


def read_overrides(raw: Any, where: str) -> FraudLimits | None:
    """A stored override (the JSON column), validated; a bad one is a DataError naming it."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise DataError(f"{where}: fraud overrides are not a table: {str(raw)[:80]!r}")
    # Stored null is "disabled": the model takes "" for that.
    data = {k: ("" if v is None else v) for k, v in raw.items()}
    try:
        return FraudLimits.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise DataError(f"{where}: fraud.{key}: {err['msg'].lower()}") from None


def base_limits(config: FraudConfig) -> dict[str, Any]:
    values = {name: getattr(config, name) for name in FRAUD_LIMITS}
    if "risk_prefixes" not in config.model_fields_set:
        values["risk_prefixes"] = DEFAULT_PREFIXES
    return values


def resolve(base: dict[str, Any], layers: Iterable[FraudLimits | None]) -> Limits:
    """`base` ([fraud]) with each override applied in turn: a name it sets replaces."""
    values = dict(base)
    for layer in layers:
        if layer is None:
            continue
        for name in layer.model_fields_set & set(FRAUD_LIMITS):
            values[name] = getattr(layer, name)
    values["risk_prefixes"] = tuple(values.get("risk_prefixes") or ())
    return Limits(**values)


def store_overrides(current: dict | None, settings: dict[str, str], where: str) -> dict | None:
    """The JSON to store after `voipctl fraud set` (NAME=VALUE; "" disables; "inherit" drops)."""
    merged = dict(current or {})
    for name, value in settings.items():
        if name not in FRAUD_LIMITS:
            raise UsageError(f"unknown limit {name!r} (limits: {', '.join(FRAUD_LIMITS)})")
        if value.strip().lower() == "inherit":
            merged.pop(name, None)
        else:
            merged[name] = value
    checked = read_overrides({k: v for k, v in merged.items()}, where)
    if checked is None:
        return None
    out: dict[str, Any] = {}
    for name in sorted(checked.model_fields_set):
        value = getattr(checked, name)
        if isinstance(value, Decimal):
            value = money.fmt(value, 0)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out or None


# --- figures --------------------------------------------------------------------


@dataclass
class Figures:
    """What each limit looks at for one client, at `now`."""

    client_id: int
    hour_spend: Decimal = Decimal(0)
    day_spend: Decimal = Decimal(0)
    risk_calls: int = 0
    # The trailing hourly average, when asked for (None: not read, or no history).
    hourly_average: Decimal | None = None
    since: datetime | None = None  # an operator's release the windows start after


@dataclass(frozen=True)
class Trip:
    client_id: int
    limit: str
    figure: str
    limit_value: str

    @property
    def reason(self) -> str:
        return f"{REASON_PREFIX}{self.limit} {self.figure}"


def _units(value: Any) -> Decimal:
    return money.from_units(int(value or 0))


def _risk_term(prefixes: tuple[str, ...]):
    if not prefixes:
        return None
    return and_(
        Cdr.direction == "outbound",
        or_(*(Cdr.normalized.like(f"{p}%") for p in prefixes)),
    )


def _window_sums(
    session: Session,
    client_ids: list[int],
    now: datetime,
    prefixes: tuple[str, ...],
    since: datetime | None = None,
) -> dict[int, tuple[int, int, int]]:
    """{client: (hour spend units, day spend units, risk calls of the hour)}.

    The sums read `ix_cdrs_client_start` (client_id, start, cost) alone; only the
    risk count, over the last hour's calls, reads rows (direction and number).
    """
    day_from = now - DAY
    hour_from = now - HOUR
    if since is not None:
        day_from, hour_from = max(day_from, since), max(hour_from, since)
    cost = type_coerce(Cdr.cost, BigInteger)
    risk = _risk_term(prefixes)
    out: dict[int, tuple[int, int, int]] = {}
    for i in range(0, len(client_ids), _CHUNK):
        chunk = client_ids[i : i + _CHUNK]
        sums = session.execute(
            select(
                Cdr.client_id,
                func.sum(case((Cdr.start >= hour_from, cost), else_=0)),
                func.sum(cost),
            )
            # Bounded by `now` too: a call dated in the future is not this hour's.
            .where(Cdr.client_id.in_(chunk), Cdr.start >= day_from, Cdr.start <= now)
            .group_by(Cdr.client_id)
        )
        for client_id, hour, day in sums:
            out[client_id] = (int(hour or 0), int(day or 0), 0)
        if risk is None:
            continue
        counts = session.execute(
            select(Cdr.client_id, func.count())
            .where(Cdr.client_id.in_(chunk), Cdr.start >= hour_from, Cdr.start <= now, risk)
            .group_by(Cdr.client_id)
        )
        for client_id, risky in counts:
            hour, day, _ = out.get(client_id, (0, 0, 0))
            out[client_id] = (hour, day, int(risky))
    return out


def _averages(session: Session, client_ids: list[int], now: datetime) -> dict[int, Decimal]:
    """The hourly spend average over the 30 days before the last hour, per client."""
    end = now - HOUR
    start = end - timedelta(days=TRAILING_DAYS)
    cost = type_coerce(Cdr.cost, BigInteger)
    out: dict[int, Decimal] = {}
    for i in range(0, len(client_ids), _CHUNK):
        chunk = client_ids[i : i + _CHUNK]
        rows = session.execute(
            select(Cdr.client_id, func.sum(cost), func.min(Cdr.start))
            .where(Cdr.client_id.in_(chunk), Cdr.start >= start, Cdr.start < end)
            .group_by(Cdr.client_id)
        )
        for client_id, total, first in rows:
            if not total:
                continue
            first = first if isinstance(first, datetime) else datetime.fromtimestamp(first, UTC)
            hours = math.ceil((end - first).total_seconds() / 3600)
            hours = min(TRAILING_DAYS * 24, max(MIN_TRAILING_HOURS, hours))
            out[client_id] = money.quantize(_units(total) / hours, 4)
    return out


def _releases(session: Session, client_ids: list[int] | None, now: datetime) -> dict[int, datetime]:
    """The last operator release of each client within the day: older calls do not count."""
    query = (
        select(SuspensionEvent.client_id, func.max(SuspensionEvent.created_at))
        .where(
            SuspensionEvent.action == "unsuspend",
            SuspensionEvent.actor == "operator",
            SuspensionEvent.ok.is_(True),
            SuspensionEvent.created_at >= now - DAY,
        )
        .group_by(SuspensionEvent.client_id)
    )
    # Few rows (releases of the last day): filtered here, not with a long IN list.
    wanted = None if client_ids is None else set(client_ids)
    return {cid: at for cid, at in session.execute(query) if wanted is None or cid in wanted}


@dataclass
class Guard:
    """The limits of every client with VoIP service, and their figures at `now`."""

    now: datetime
    limits: dict[int, Limits] = field(default_factory=dict)
    figures: dict[int, Figures] = field(default_factory=dict)

    def trip(self, client_id: int) -> Trip | None:
        return evaluate(self.limits[client_id], self.figures[client_id])


def client_limits(session: Session, config: Config, client_ids: list[int] | None = None):
    """{client id: Limits} for the clients with VoIP service (or those given)."""
    base = base_limits(config.fraud)
    products = {
        pid: read_overrides(raw, f"product {pid}")
        for pid, raw in session.execute(
            select(Product.id, Product.fraud).where(Product.fraud.is_not(None))
        )
    }
    query = select(Client.id, Client.fraud).where(Client.has_voip_service.is_(True))
    if client_ids is not None:
        query = select(Client.id, Client.fraud).where(Client.id.in_(client_ids))
    clients = {cid: raw for cid, raw in session.execute(query)}
    used: dict[int, list[int]] = {}
    if products:
        for cid, pid in session.execute(
            select(Service.client_id, Service.product_id)
            .where(Service.active.is_(True), Service.product_id.in_(list(products)))
            .distinct()
        ):
            used.setdefault(cid, []).append(pid)
    out = {}
    for cid, raw in clients.items():
        layers = [products[pid] for pid in sorted(used.get(cid, []))]
        layers.append(read_overrides(raw, f"client {cid}"))
        out[cid] = resolve(base, layers)
    return out


def guard_on(session: Session, config: Config) -> bool:
    """On when any limit is set in [fraud] or in an override of a product or a client."""
    if config.fraud.enabled:
        return True
    for model in (Product, Client):
        if session.scalar(select(model.id).where(model.fraud.is_not(None)).limit(1)) is not None:
            return True
    return False


def measure(
    session: Session,
    config: Config,
    now: datetime,
    *,
    client_ids: list[int] | None = None,
    averages: str = "candidates",
) -> Guard:
    """The figures of every client the limits apply to.

    `averages`: "candidates" reads the trailing average only for the clients whose
    hour could trip with it (the check), "all" for every client (the report).
    """
    guard = Guard(now)
    limits = client_limits(session, config, client_ids)
    guard.limits = {cid: lim for cid, lim in limits.items() if lim.any}
    ids = sorted(guard.limits)
    if not ids:
        return guard
    # One pass per distinct risk list (almost always one: the default or [fraud]'s).
    by_prefixes: dict[tuple[str, ...], list[int]] = {}
    for cid in ids:
        lim = guard.limits[cid]
        key = lim.risk_prefixes if lim.max_risk_calls_per_hour is not None else ()
        by_prefixes.setdefault(key, []).append(cid)
    for prefixes, group in by_prefixes.items():
        for cid, (hour, day, risky) in _window_sums(session, group, now, prefixes).items():
            guard.figures[cid] = Figures(cid, _units(hour), _units(day), risky)
    for cid in ids:
        guard.figures.setdefault(cid, Figures(cid))
    # An operator's release starts the windows again for that client.
    for cid, at in _releases(session, ids, now).items():
        lim = guard.limits[cid]
        key = lim.risk_prefixes if lim.max_risk_calls_per_hour is not None else ()
        hour, day, risky = _window_sums(session, [cid], now, key, since=at).get(cid, (0, 0, 0))
        guard.figures[cid] = Figures(cid, _units(hour), _units(day), risky, since=at)
    wanted = [
        cid
        for cid in ids
        if guard.limits[cid].trailing_multiple is not None
        and (averages == "all" or _may_trip_trailing(guard.limits[cid], guard.figures[cid]))
    ]
    for cid, average in _averages(session, wanted, now).items():
        guard.figures[cid].hourly_average = average
    return guard


def _may_trip_trailing(lim: Limits, fig: Figures) -> bool:
    if fig.hour_spend <= 0:
        return False
    # With a flat hourly limit the threshold is at least that limit.
    return lim.max_spend_per_hour is None or fig.hour_spend >= lim.max_spend_per_hour


def hour_threshold(lim: Limits, fig: Figures) -> tuple[str, Decimal] | None:
    """The hourly spend limit in force: (its name, its value), or None."""
    trailing = None
    if lim.trailing_multiple is not None and fig.hourly_average:
        trailing = money.quantize(lim.trailing_multiple * fig.hourly_average, 4)
    flat = lim.max_spend_per_hour
    if flat is not None and (trailing is None or flat >= trailing):
        return "max_spend_per_hour", flat
    if trailing is not None:
        return "trailing_multiple", trailing
    return None


def evaluate(lim: Limits, fig: Figures) -> Trip | None:
    """The first limit the figures reach (hour, risk calls, day), or None."""
    hour = hour_threshold(lim, fig)
    if hour is not None and fig.hour_spend >= hour[1]:
        name, value = hour
        figure = money.fmt(fig.hour_spend)
        if name == "trailing_multiple":
            figure += (
                f" ({money.fmt(lim.trailing_multiple, 0)} x hourly average "
                f"{money.fmt(fig.hourly_average)})"
            )
        return Trip(fig.client_id, name, figure, money.fmt(value))
    if (
        lim.max_risk_calls_per_hour is not None
        and lim.risk_prefixes
        and fig.risk_calls >= lim.max_risk_calls_per_hour
    ):
        return Trip(
            fig.client_id,
            "max_risk_calls_per_hour",
            str(fig.risk_calls),
            str(lim.max_risk_calls_per_hour),
        )
    if lim.max_spend_per_day is not None and fig.day_spend >= lim.max_spend_per_day:
        return Trip(
            fig.client_id,
            "max_spend_per_day",
            money.fmt(fig.day_spend),
            money.fmt(lim.max_spend_per_day),
        )
    return None


def report_rows(guard: Guard) -> list[dict[str, Any]]:
    """Per client: each limit's figure, its value and how close (percent) the figure is."""

    def pct(figure: Decimal | int, limit: Decimal | int | None) -> str | None:
        if limit is None or not limit:
            return None
        return money.fmt(money.quantize(Decimal(figure) * 100 / Decimal(limit), 1), 1)

    rows = []
    for cid in sorted(guard.limits):
        lim, fig = guard.limits[cid], guard.figures[cid]
        hour = hour_threshold(lim, fig)
        risk_limit = lim.max_risk_calls_per_hour if lim.risk_prefixes else None
        trip = evaluate(lim, fig)
        rows.append(
            {
                "client_id": cid,
                "hour_spend": money.fmt(fig.hour_spend),
                "hour_limit": money.fmt(hour[1]) if hour else None,
                "hour_limit_from": hour[0] if hour else None,
                "hour_percent": pct(fig.hour_spend, hour[1] if hour else None),
                "hourly_average": money.fmt(fig.hourly_average),
                "trailing_multiple": money.fmt(lim.trailing_multiple, 0),
                "day_spend": money.fmt(fig.day_spend),
                "day_limit": money.fmt(lim.max_spend_per_day),
                "day_percent": pct(fig.day_spend, lim.max_spend_per_day),
                "risk_calls": fig.risk_calls,
                "risk_limit": risk_limit,
                "risk_percent": pct(fig.risk_calls, risk_limit),
                "since": fig.since.isoformat() if fig.since else None,
                "tripped": trip.reason if trip else None,
            }
        )
    return rows


def last_calls(session: Session, client_id: int, now: datetime, limit: int = LAST_CALLS):
    """The client's latest calls of the day, newest first, for the operator's email."""
    return list(
        session.execute(
            select(
                Cdr.id, Cdr.start, Cdr.direction, Cdr.normalized, Cdr.number, Cdr.billsec, Cdr.cost
            )
            .where(Cdr.client_id == client_id, Cdr.start >= now - DAY, Cdr.start <= now)
            .order_by(Cdr.start.desc(), Cdr.id.desc())
            .limit(limit)
        )
    )


def calls_text(rows) -> str:
    if not rows:
        return "(none stored)"
    lines = []
    for row in rows:
        cost = money.fmt(row.cost, 4) if row.cost is not None else "not rated"
        lines.append(
            f"{row.start:%Y-%m-%d %H:%M:%S} UTC  {row.direction}  "
            f"{row.normalized or row.number or '-'}  {row.billsec} s  {cost}  (call {row.id})"
        )
    return "\n".join(lines)


def contributions(session: Session, config: Config, cdr: Cdr) -> list[str]:
    """The limits this call counts toward (for `voipctl explain`), each with its figure."""
    if not guard_on(session, config):
        return []
    lim = client_limits(session, config, [cdr.client_id]).get(cdr.client_id)
    if lim is None or not lim.any:
        return []
    lines = []
    risky = (
        cdr.direction == "outbound"
        and lim.max_risk_calls_per_hour is not None
        and any((cdr.normalized or "").startswith(p) for p in lim.risk_prefixes)
    )
    if risky:
        prefix = next(p for p in lim.risk_prefixes if (cdr.normalized or "").startswith(p))
        lines.append(
            f"max_risk_calls_per_hour ({lim.max_risk_calls_per_hour}): a call to risk prefix "
            f"{prefix}, counted in the hour after it started"
        )
    if cdr.cost:
        cost = money.fmt(cdr.cost, 4)
        if lim.max_spend_per_hour is not None or lim.trailing_multiple is not None:
            names = [
                n
                for n in ("max_spend_per_hour", "trailing_multiple")
                if getattr(lim, n) is not None
            ]
            lines.append(
                f"{' / '.join(names)}: its cost {cost} counts in the hour after it started"
            )
        if lim.max_spend_per_day is not None:
            lines.append(
                f"max_spend_per_day ({money.fmt(lim.max_spend_per_day)}): its cost {cost} "
                "counts in the 24 hours after it started"
            )
    events = session.execute(
        select(SuspensionEvent.reason, SuspensionEvent.created_at)
        .where(
            SuspensionEvent.client_id == cdr.client_id,
            SuspensionEvent.actor == FRAUD,
            SuspensionEvent.action == "suspend",
            SuspensionEvent.ok.is_(True),
            SuspensionEvent.created_at >= cdr.start,
            SuspensionEvent.created_at <= cdr.start + DAY,
        )
        .order_by(SuspensionEvent.id)
    ).all()
    for reason, at in events:
        window = HOUR if " max_spend_per_day " not in f" {reason} " else DAY
        if at - cdr.start <= window:
            lines.append(f"contributed to the stop at {at:%Y-%m-%d %H:%M:%S} UTC: {reason}")
            break
    return lines


# --- stopping a tripped client --------------------------------------------------


HOLDS = ("operator", FRAUD)  # suspensions autosuspend never lifts


def _episode_key(session: Session, client_id: int) -> str:
    """One operator email per fraud stop: the stop starts with its first held service."""
    first = session.scalar(
        select(func.min(Service.suspended_at)).where(
            Service.client_id == client_id,
            Service.suspended.is_(True),
            Service.suspended_by == FRAUD,
        )
    )
    stamp = int(first.timestamp()) if first is not None else 0
    return f"{client_id}:{stamp}"


def _after(config: Config, backend, trip: Trip, now: datetime):
    """The emails of a fraud stop, decided in the transaction that records the hold."""
    from voipctl.notify.templates import (
        FRAUD_GUARD,
        FRAUD_OPERATOR,
        MANUAL_ACTION,
        client_variables,
    )

    def after(session: Session, service: Service, event: SuspensionEvent, outcome) -> None:
        client = session.get(Client, service.client_id)
        try:
            with session.begin_nested():
                backend.suspension_changed(session, client.id, True)
        except Exception as exc:  # noqa: BLE001 - the provider acted: its record must stay
            outcome.warnings.append(f"the billing backend was not told: {exc}")
        credit = backend.available_credit(session, client.id)
        owing = backend.owing(session, client.id)
        variables = {
            **client_variables(client, credit=credit, owing=owing),
            "limit": trip.limit,
            "limit_value": trip.limit_value,
            "figure": trip.figure,
            "reason": trip.reason,
            "calls": calls_text(last_calls(session, client.id, now)),
        }
        episode = _episode_key(session, client.id)
        if config.email.operator:
            backend.queue_alert(
                session,
                config,
                template=FRAUD_OPERATOR,
                variables=variables,
                dedupe_key=f"{FRAUD_OPERATOR}:{episode}",
                recipient=config.email.operator,
                client_id=client.id,
                credit=credit,
            )
            if outcome.manual:
                # A lever voipctl cannot work (LES.NET): the operator does it by hand.
                backend.queue_alert(
                    session,
                    config,
                    template=MANUAL_ACTION,
                    variables={
                        **variables,
                        "service_id": service.id,
                        "server": service.server,
                        "action": "suspend",
                        "instructions": outcome.instructions,
                    },
                    dedupe_key=f"{MANUAL_ACTION}:{service.id}:{event.id}",
                    recipient=config.email.operator,
                    client_id=client.id,
                    credit=credit,
                )
        else:
            log.warning("client %s: %s, but [email] operator is not set", client.id, trip.reason)
        if config.fraud.notify_client:
            backend.queue_alert(
                session,
                config,
                template=FRAUD_GUARD,
                variables=variables,
                dedupe_key=f"{FRAUD_GUARD}:{episode}",
                recipient=client.email,
                client_id=client.id,
                credit=credit,
            )

    return after


def stop(store, config: Config, backend, adapters, run, trip: Trip, *, dry_run: bool) -> list[str]:
    """Suspend and hold every active service of a tripped client, then end its calls."""
    from voipctl.jobs.common import service_info
    from voipctl.jobs.suspend import Outcome, act, record

    with store.session_factory() as session:
        services = list(
            session.scalars(
                select(Service)
                .where(Service.client_id == trip.client_id, Service.active.is_(True))
                .order_by(Service.id)
            )
        )
    lines = []
    after = _after(config, backend, trip, datetime.now(UTC))
    for service in services:
        where = f"service {service.id} of client {service.client_id} on {service.server}"
        if service.suspended and service.suspended_by in HOLDS:
            continue  # held already: the operator decides
        if dry_run:
            lines.append(f"would suspend and hold {where}: {trip.reason}")
            continue
        if service.suspended:
            # Cut already (credit): no lever call, but the hold starts now.
            outcome = Outcome(
                service.id,
                service.client_id,
                service.server,
                "suspend",
                True,
                "already suspended; no provider call",
                manual=service.manual_action_required,
            )
            record(store, service.id, outcome, actor=FRAUD, reason=trip.reason, after=after)
        else:
            outcome = act(
                store, adapters, service, "suspend", actor=FRAUD, reason=trip.reason, after=after
            )
        line = outcome.describe()
        if not outcome.ok:
            run.fail(line)
            lines.append(line)
            continue
        for warning in outcome.warnings:
            run.fail(f"{line}: {warning}")
        lines.append(f"{line}: held: {trip.reason}")
        try:
            adapter = adapters.get(service.server)
            if not adapter.can_hang_up:
                lines.append(
                    f"{where}: calls in progress left to run: {adapter.type} cannot end "
                    "them (docs/fraud.md)"
                )
                continue
            answer = adapter.hang_up(service_info(service))
        except Exception as exc:  # noqa: BLE001 - the hold stands; the failure is reported
            failed = f"{where}: calls in progress NOT hung up: {exc}"
            run.fail(failed)
            lines.append(failed)
        else:
            lines.append(f"{where}: calls in progress hung up ({answer})")
    return lines


def check_and_stop(store, config: Config, backend, adapters, run, *, dry_run: bool) -> list[str]:
    """autosuspend's first step: measure, and stop each client a limit trips for."""
    now = datetime.now(UTC)
    with store.session_factory() as session:
        if not guard_on(session, config):
            return []
        guard = measure(session, config, now)
        held = set(
            session.scalars(
                select(Service.client_id)
                .where(
                    Service.active.is_(True),
                    Service.suspended.is_(True),
                    Service.suspended_by.in_(HOLDS),
                )
                .distinct()
            )
        )
        active = set(
            session.scalars(
                select(Service.client_id)
                .where(
                    Service.active.is_(True),
                    or_(Service.suspended.is_(False), Service.suspended_by.not_in(HOLDS)),
                )
                .distinct()
            )
        )
    lines: list[str] = []
    stopped = 0
    for cid in sorted(guard.limits):
        trip = guard.trip(cid)
        if trip is None or cid not in active:
            continue
        if cid in held:
            log.info("client %s: %s; some services already held", cid, trip.reason)
        stopped += 1
        lines += stop(store, config, backend, adapters, run, trip, dry_run=dry_run)
    run.summary["fraud_stopped"] = stopped
    run.summary["fraud_checked"] = len(guard.limits)
    return lines
