"""`voipctl feed inspect`: a file feed's layout told from its first lines, and a proof.

Generic: the server's adapter reads the head of the file (`feed_head`), tells
its layout (`inspect_feed`), builds itself with the proposal (`with_feed_layout`,
validated as the configuration would be) and reads each sampled line as a pull
reads it (`read_sample`). The rows are then rated by the rater `voipctl rate`
uses, with the product of the service a row belongs to (or --product), nothing
written: free minutes count as if these were the month's next calls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from voipctl import money
from voipctl.catalog import get_product
from voipctl.config import Config
from voipctl.errors import ConfigError
from voipctl.jobs.common import service_info
from voipctl.providers import adapter_for
from voipctl.providers.base import FeedLayout
from voipctl.rating.load import SessionSource
from voipctl.rating.rater import FAILED_STATUSES, Rater
from voipctl.redact import redact_url
from voipctl.store import Store
from voipctl.store.models import Service

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class Inspection:
    server: str
    source: str  # as shown (user-info and query masked)
    lines: int
    layout: FeedLayout
    block: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def toml_block(table: str, settings: dict[str, Any]) -> str:
    """`settings` as the TOML table `table` (dotted; a nested dict is a sub-table)."""
    head = ".".join(_key(part) for part in table.split("."))
    out = [f"[{head}]"]
    subs = []
    for key, value in settings.items():
        if isinstance(value, dict):
            subs.append((key, value))
        else:
            out.append(f"{_key(key)} = {_value(value)}")
    for key, values in subs:
        out.append("")
        out.append(f"[{head}.{_key(key)}]")
        out.extend(f"{_key(k)} = {_value(v)}" for k, v in values.items())
    return "\n".join(out) + "\n"


def inspect_feed(
    store: Store, config: Config, server: str, source: str, *, product: str | None = None
) -> Inspection:
    """Tell the layout of `source` (a path or URL) for `server` and read its first rows."""
    server_config = config.server(server)
    adapter = adapter_for(server, server_config)
    shown = redact_url(source) or source
    try:
        if adapter.feed_table is None:
            raise ConfigError(
                f"feed inspect: server {server} (type {server_config.type}) has no file feed"
            )
        lines = adapter.feed_head(source)
        layout = adapter.inspect_feed(lines, shown)
        proposed = adapter.with_feed_layout(layout.settings)
    finally:
        adapter.close()
    block = toml_block(layout.table, layout.settings)
    inspection = Inspection(server, shown, len(lines), layout, block)
    with store.transaction() as session:
        services = list(
            session.scalars(
                select(Service)
                .where(Service.server == server, Service.active.is_(True))
                .order_by(Service.id)
            )
        )
        infos = [service_info(s) for s in services]
        chosen = get_product(session, product) if product else None
        rater = Rater(SessionSource(session))
        with proposed:
            for sample in proposed.read_sample(lines, infos, shown):
                inspection.rows.append(_row(rater, sample, chosen))
        session.rollback()
    return inspection


def _row(rater: Rater, sample, chosen) -> dict[str, Any]:
    if sample.rejected is not None:
        return {"line": sample.line, "status": "refused", "reason": sample.rejected.reason}
    record = sample.record
    row: dict[str, Any] = {
        "line": sample.line,
        "start": record.start,
        "direction": record.direction if record.service_id is not None else None,
        "caller": record.caller,
        "number": record.number,
        "seconds": record.billsec,
        "service": record.service_id,
    }
    answered = record.answer is not None
    start = int(record.start.timestamp())
    if record.service_id is not None:
        context = rater.service(record.service_id)
        product = context.product
        rating = rater.rate(
            product, record.direction, record.number, record.billsec, start, answered,
            context, record.service_id,
        )  # fmt: skip
    elif chosen is not None:
        product = rater.product(chosen.id)
        rating = rater.rate(
            product, record.direction, record.number, record.billsec, start, answered
        )
    else:
        row.update(status="no service", reason="no service of this server has its peer or DID")
        return row
    row["product"] = product.name
    row["status"] = rating.status
    row["prefix"] = rating.prefix
    row["rate"] = None if rating.rate is None else money.fmt(rating.rate, 2, units=True)
    row["billable_seconds"] = rating.billable_seconds
    if rating.status not in FAILED_STATUSES:
        row["cost"] = money.fmt(rating.cost or 0, product.decimals, units=True)
    return row
