"""The support queries run on indexes, not table scans, on SQLite and PostgreSQL.

On a tiny test table PostgreSQL would rightly prefer a sequential scan, so
sequential scans are priced out for the EXPLAIN: what is asserted is that an
index fits the query (bench/bench_cdrs.py shows the same plans on 5,000,000 rows).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select, text

from tests.support.support_data import add_client, add_product, add_service
from voipctl.store.models import Cdr, LedgerEntry
from voipctl.support.cdrs import CdrQuery, _statement
from voipctl.support.statement import usage_by_destination

JUNE = (datetime(2026, 6, 1, 4, tzinfo=UTC), datetime(2026, 7, 1, 4, tzinfo=UTC))
YEAR = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())


@pytest.fixture(autouse=True)
def table(store):
    """5,000 calls of 50 clients over a year, most rated, with fresh statistics."""
    with store.transaction() as s:
        product = add_product(s)
        for c in range(1, 51):
            add_service(s, add_client(s, c), product, domain_field=f"c{c}.example.com")
        rows = [
            {
                "server": "fusion1",
                "provider_id": f"p{i}",
                "service_id": i % 50 + 1,
                "client_id": i % 50 + 1,
                "direction": "outbound",
                "number": "15195550100",
                "start": YEAR + i * 6000,
                "billsec": 60,
                "pulled_at": YEAR,
                "status": "rated" if i % 10 else "unanswered",
                "rerate_count": 0,
            }
            for i in range(5000)
        ]
        s.execute(insert(Cdr), rows)
    with store.engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def plan(store, stmt) -> str:
    """The database's own plan for a SQLAlchemy statement (EXPLAIN QUERY PLAN / EXPLAIN)."""
    with store.engine.connect() as conn:
        compiled = stmt.compile(conn)
        params = {k: _bind(v) for k, v in compiled.construct_params().items()}
        if store.is_sqlite:
            args = tuple(params[name] for name in compiled.positiontup or ())
            result = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args)
            return "\n".join(str(row[-1]) for row in result)
        conn.exec_driver_sql("SET enable_seqscan = off")
        result = conn.exec_driver_sql(f"EXPLAIN {compiled}", params)
        return "\n".join(row[0] for row in result)


def _bind(value):
    # UTCTime columns store epoch seconds; the raw EXPLAIN bypasses the type's conversion.
    return int(value.timestamp()) if isinstance(value, datetime) else value


def test_a_clients_month_of_calls_uses_the_client_start_index(store):
    text = plan(store, _statement(CdrQuery(client_id=7, start=JUNE[0], end=JUNE[1])))
    assert "ix_cdrs_client_start" in text, text
    if store.is_sqlite:
        # Newest first comes straight off the index: no sort of the client's month.
        assert "TEMP B-TREE" not in text, text


def test_the_newest_calls_without_a_period_use_the_index(store):
    text = plan(store, _statement(CdrQuery(client_id=7, limit=20)))
    assert "ix_cdrs_client_start" in text, text


def test_a_service_filter_still_uses_an_index(store):
    text = plan(store, _statement(CdrQuery(client_id=7, service_id=7, start=JUNE[0], end=JUNE[1])))
    assert "ix_cdrs_client_start" in text or "ix_cdrs_service_start" in text, text


def test_statement_queries_use_indexes(store):
    entries = select(LedgerEntry).where(
        LedgerEntry.client_id == 7,
        LedgerEntry.created_at >= JUNE[0],
        LedgerEntry.created_at < JUNE[1],
    )
    text = plan(store, entries.order_by(LedgerEntry.created_at, LedgerEntry.id))
    assert "ix_ledger_entries_client_created" in text, text
    captured = {}

    class Recorder:
        def execute(self, stmt):
            captured["stmt"] = stmt
            return []

    usage_by_destination(Recorder(), 7, *JUNE)
    text = plan(store, captured["stmt"])
    assert "ix_cdrs_client_start" in text, text
