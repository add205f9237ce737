"""Benchmark: one client's month of calls from a table of millions.

Loads N CDRs (default 5,000,000) for C clients (default 2,000) spread over
2026 in arrival order (clients interleaved, as pull-cdrs stores them), then
times `voipctl cdrs CLIENT --from 2026-06-01 --to 2026-06-30` in-process and as
a subprocess, and prints the query plan.

    python bench/bench_cdrs.py                 # 5,000,000 CDRs, 2,000 clients, SQLite
    python bench/bench_cdrs.py 200000 100      # a quick run
    VOIPCTL_BENCH_PG_URL=postgresql+psycopg://postgres@127.0.0.1:55432/postgres \\
        python bench/bench_cdrs.py             # SQLite, then PostgreSQL

On PostgreSQL the URL is an admin URL: the benchmark creates its own database
there and drops it at the end. Loading uses raw driver bulk inserts (sqlite3
executemany, PostgreSQL COPY) with the secondary indexes of `cdrs` dropped and
rebuilt afterwards, the usual way to bulk-load; the query then runs on the
schema exactly as migrated.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from voipctl import money
from voipctl.cli import run
from voipctl.store import open_store
from voipctl.store.migrate import upgrade
from voipctl.store.models import Cdr, Client, Product, Service

YEAR_START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
YEAR_END = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
CHUNK = 100_000
BENCH_CLIENT_INDEX = 1000  # which client (1-based, capped at the client count) is timed
MONTH = ("2026-06-01", "2026-06-30")

CDR_COLUMNS = (
    "server",
    "provider_id",
    "service_id",
    "client_id",
    "direction",
    "caller",
    "number",
    "start",
    "billsec",
    "pulled_at",
    "status",
    "normalized",
    "prefix",
    "description",
    "rate",
    "increment",
    "billable_seconds",
    "free_seconds",
    "cost",
    "rerate_count",
)

DESTINATIONS = [
    ("1519", "Canada - Ontario", "0.01", 6),
    ("1212", "USA - New York", "0.02", 6),
    ("4420", "UK - London", "0.03", 30),
    ("49", "Germany", "0.06", 60),
]


def cdr_rows(count: int, clients: int, seed: int = 7):
    """Rows in start order, clients interleaved; about 1 in 10 unanswered."""
    rng = random.Random(seed)
    step = (YEAR_END - YEAR_START) / count
    rate_units = {p: money.to_units(r) for p, _, r, _ in DESTINATIONS}
    for i in range(count):
        client = rng.randint(1, clients)
        start = YEAR_START + int(i * step)
        prefix, description, _, inc = DESTINATIONS[rng.randrange(len(DESTINATIONS))]
        number = prefix + str(rng.randrange(10**6, 10**7))
        billsec = 0 if rng.random() < 0.1 else rng.randint(1, 900)
        if billsec == 0:
            status, billable, cost = "unanswered", 0, 0
        else:
            status = "rated"
            billable = max(inc, -(-billsec // inc) * inc)
            cost = money.round_units(money.round_div(rate_units[prefix] * billable, 60), 4)
        yield (
            "bench1",
            f"b{i:09d}",
            client,  # one service per client, same id
            client,
            "outbound",
            "5195550000",
            number,
            start,
            billsec,
            start + 300,
            status,
            number,
            prefix,
            description,
            rate_units[prefix],
            f"{inc}/{inc}",
            billable,
            0,
            cost,
            0,
        )


def chunks(rows, size: int):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def seed_reference_rows(store, clients: int) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with store.transaction() as s:
        s.execute(insert(Product), [{"name": "Bench", "created_at": now}])
        product_id = s.execute(text("SELECT id FROM products")).scalar_one()
        s.execute(
            insert(Client),
            [
                {
                    "id": c,
                    "first_name": "Client",
                    "last_name": str(c),
                    "email": f"c{c}@example.com",
                    "currency": "CAD",
                    "timezone": "America/Toronto",
                    "created_at": now,
                    "updated_at": now,
                }
                for c in range(1, clients + 1)
            ],
        )
        s.execute(
            insert(Service),
            [
                {
                    "id": c,
                    "client_id": c,
                    "product_id": product_id,
                    "server": "bench1",
                    "server_type": "fusionpbx",
                    "domain_field": f"c{c}.example.com",
                    "created_at": now,
                }
                for c in range(1, clients + 1)
            ],
        )


def load(store, count: int, clients: int) -> float:
    """Bulk-load the CDRs; returns seconds taken, index rebuild included."""
    began = time.perf_counter()
    indexes = list(Cdr.__table__.indexes)
    with store.engine.begin() as conn:
        for index in indexes:
            index.drop(conn)
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if store.is_sqlite:
            sql = (
                f"INSERT INTO cdrs ({', '.join(CDR_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in CDR_COLUMNS)})"
            )
            for batch in chunks(cdr_rows(count, clients), CHUNK):
                cur.execute("BEGIN")
                cur.executemany(sql, batch)
                cur.execute("COMMIT")
                progress(batch, count)
        else:
            copy_sql = f"COPY cdrs ({', '.join(CDR_COLUMNS)}) FROM STDIN"
            for batch in chunks(cdr_rows(count, clients), CHUNK):
                with cur.copy(copy_sql) as copy:
                    for row in batch:
                        copy.write_row(row)
                raw.commit()
                progress(batch, count)
        cur.close()
    finally:
        raw.close()
    print(f"  rows loaded in {time.perf_counter() - began:.1f} s; rebuilding indexes", flush=True)
    with store.engine.begin() as conn:
        for index in indexes:
            index.create(conn)
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - began


def progress(batch, count: int) -> None:
    # The first column of the last row is the server; the provider id carries the position.
    done = int(batch[-1][1][1:]) + 1
    if done % (CHUNK * 10) == 0 or done == count:
        print(f"  {done:,} / {count:,}", flush=True)


def plan(store, client_id: int) -> str:
    """The query plan of the cdrs query for one client's month (same SQL as the command)."""
    from voipctl.support.cdrs import CdrQuery, _statement

    start = datetime(2026, 6, 1, 4, tzinfo=UTC)
    end = datetime(2026, 7, 1, 4, tzinfo=UTC)
    stmt = _statement(CdrQuery(client_id=client_id, start=start, end=end))
    compiled = stmt.compile(store.engine, compile_kwargs={"literal_binds": False})
    params = {
        k: (int(v.timestamp()) if isinstance(v, datetime) else v)
        for k, v in compiled.params.items()
    }
    prefix = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN ANALYZE "
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + str(compiled), _driver_params(store, compiled, params))
        return "\n".join("    " + " ".join(str(c) for c in row) for row in rows)


def _driver_params(store, compiled, params):
    if store.is_sqlite:
        return tuple(params[name] for name in compiled.positiontup)
    return params


def time_in_process(url: str, client_id: int, repeat: int = 7) -> tuple[list[float], int]:
    argv = ["--db", url, "cdrs", str(client_id), "--from", MONTH[0], "--to", MONTH[1]]
    times, lines = [], 0
    for _ in range(repeat):
        out = io.StringIO()
        began = time.perf_counter()
        with contextlib.redirect_stdout(out):
            code = run(argv)
        times.append(time.perf_counter() - began)
        assert code == 0, out.getvalue()
        lines = out.getvalue().count("\n")
    return times, lines


def time_subprocess(args: list[str], repeat: int = 5) -> list[float]:
    argv = [sys.executable, "-c", "from voipctl.cli import main; main()", *args]
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - began)
    return times


def bench(url: str, label: str, count: int, clients: int) -> None:
    print(f"{label}: loading {count:,} CDRs for {clients:,} clients", flush=True)
    store = open_store(url)
    upgrade(store)
    seed_reference_rows(store, clients)
    seconds = load(store, count, clients)
    print(f"  loaded and indexed in {seconds:.1f} s ({count / seconds:,.0f} rows/s)")
    client_id = min(BENCH_CLIENT_INDEX, clients)
    print(f"  query plan for client {client_id}, {MONTH[0]}..{MONTH[1]}:")
    print(plan(store, client_id))
    store.dispose()
    times, lines = time_in_process(url, client_id)
    rows = lines - 3  # header, rule and totals line
    print(
        f"  voipctl cdrs {client_id} --from {MONTH[0]} --to {MONTH[1]}: {rows} calls; "
        f"in-process median {statistics.median(times) * 1000:.0f} ms, "
        f"best {min(times) * 1000:.0f} ms (first {times[0] * 1000:.0f} ms)"
    )
    sub = time_subprocess(
        ["--db", url, "cdrs", str(client_id), "--from", MONTH[0], "--to", MONTH[1]]
    )
    base = time_subprocess(["--version"])
    print(
        f"  as a subprocess: median {statistics.median(sub) * 1000:.0f} ms, "
        f"best {min(sub) * 1000:.0f} ms; of which starting Python and importing voipctl "
        f"(`voipctl --version`): median {statistics.median(base) * 1000:.0f} ms"
    )


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 5_000_000
    clients = int(argv[1]) if len(argv) > 1 else 2_000
    with tempfile.TemporaryDirectory(prefix="voipctl-bench-") as tmp:
        bench(f"sqlite:///{Path(tmp) / 'bench.db'}", "SQLite", count, clients)
    pg_admin = os.environ.get("VOIPCTL_BENCH_PG_URL")
    if not pg_admin:
        print("PostgreSQL: skipped (set VOIPCTL_BENCH_PG_URL to an admin URL)")
        return
    name = f"voipctl_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(pg_admin).set(database=name).render_as_string(hide_password=False)
        bench(url, "PostgreSQL", count, clients)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
