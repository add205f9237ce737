"""`voipctl fraud report` and `voipctl fraud set`: the fraud guard's figures and overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from sqlalchemy import func, select

from voipctl.cli.app import get_app
from voipctl.cli.options import ID, WHEN, format_option, parse_day_or_time
from voipctl.cli.output import render, say
from voipctl.config import FRAUD_LIMITS
from voipctl.errors import NotFound, UsageError
from voipctl.jobs import fraud as fraud_guard
from voipctl.store.models import Cdr, Client, Product

_COLUMNS = [
    ("client_id", "client"),
    ("hour_spend", "hour spend"),
    ("hour_limit", "hour limit"),
    ("hour_limit_from", "from"),
    ("hour_percent", "%"),
    ("hourly_average", "30-day avg/h"),
    ("day_spend", "day spend"),
    ("day_limit", "day limit"),
    ("day_percent", "%"),
    ("risk_calls", "risk calls/h"),
    ("risk_limit", "limit"),
    ("risk_percent", "%"),
    ("tripped", "tripped"),
]


@click.group()
def fraud():
    """The fraud guard (docs/fraud.md): its figures per client, and per-client or
    per-product overrides of its limits."""


@fraud.command("report")
@click.option(
    "--since",
    type=WHEN,
    help="Only clients with a call that started at or after this time (a date or ISO "
    "time, UTC, today, yesterday, 3d, 12h; default: the last 24 hours). Figures are "
    "always the last hour and day.",
)
@click.option("--all", "show_all", is_flag=True, help="Every client the limits apply to.")
@format_option
def report(since, show_all, fmt):
    """Per client: the figure each limit looks at, the limit in force and how close
    (percent) the figure is; `tripped` names the limit the next autosuspend acts on.

    \b
    Example: voipctl fraud report --since 2026-03-01 --format json
    """
    app = get_app()
    config = app.config
    store = app.store()
    now = datetime.now(UTC)
    start = parse_day_or_time(since, UTC, end=False) if since else now - timedelta(days=1)
    with store.transaction() as session:
        if not fraud_guard.guard_on(session, config):
            say(
                "the fraud guard is off: no limit is set in [fraud] nor in any override",
                err=True,
            )
        guard = fraud_guard.measure(session, config, now, averages="all")
        rows = fraud_guard.report_rows(guard)
        if not show_all:
            active = _active_since(session, [r["client_id"] for r in rows], start)
            rows = [r for r in rows if r["client_id"] in active]
    render(rows, _COLUMNS, fmt)


def _active_since(session, client_ids: list[int], start: datetime) -> set[int]:
    found: set[int] = set()
    for i in range(0, len(client_ids), 500):
        chunk = client_ids[i : i + 500]
        found.update(
            session.scalars(
                select(Cdr.client_id)
                .where(Cdr.client_id.in_(chunk), Cdr.start >= start)
                .group_by(Cdr.client_id)
                .having(func.count() > 0)
            )
        )
    return found


@fraud.command("set")
@click.option("--client", "client_id", type=ID, help="The client whose limits to override.")
@click.option("--product", "product_id", type=ID, help="The product whose limits to override.")
@click.argument("settings", nargs=-1, metavar="NAME=VALUE...")
def set_limits(client_id, product_id, settings):
    """Override limits of [fraud] for one client or product: NAME=VALUE, where an empty
    VALUE disables that limit and `inherit` drops the override. risk_prefixes is a
    comma-separated list.

    \b
    Example: voipctl fraud set --client 42 max_spend_per_hour=80 max_spend_per_day=
    """
    if (client_id is None) == (product_id is None):
        raise UsageError("give exactly one of --client ID or --product ID")
    if not settings:
        raise UsageError(f"fraud set: give NAME=VALUE (names: {', '.join(FRAUD_LIMITS)})")
    pairs: dict[str, str] = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{item!r}: expected NAME=VALUE")
        pairs[name.strip()] = value
    store = get_app().store()
    with store.transaction() as session:
        if client_id is not None:
            row = session.get(Client, client_id)
            where = f"client {client_id}"
        else:
            row = session.get(Product, product_id)
            where = f"product {product_id}"
        if row is None:
            raise NotFound(f"no {where}")
        row.fraud = fraud_guard.store_overrides(row.fraud, pairs, where)
        shown = row.fraud
    if not shown:
        say(f"{where}: no fraud overrides ([fraud] applies)")
        return
    text = ", ".join(
        f"{k}={','.join(v) if isinstance(v, list) else ('' if v is None else v)}"
        for k, v in shown.items()
    )
    say(f"{where}: fraud overrides {text}")


COMMANDS = [fraud]
