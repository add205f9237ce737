"""Pull N calls from a LES.NET-format CDR file into SQLite, against a raw sqlite3 insert.

    python bench/bench_pull.py [ROWS ...] [--deck N] [--two-pass] [--pg ADMIN_URL]
    (default 1000000 calls, a 100000-prefix deck)

For each size: writes a CDR file in the default LES.NET layout, runs the real
`pull_cdrs` job on a fresh migrated SQLite database (parse, match, dedupe key,
rating in the same pass against an N-prefix deck, chunked INSERT ... ON CONFLICT
DO NOTHING, watermark), then `voipctl rate`'s job for whatever the pull left
unrated, then inserts the very same rows with plain `sqlite3` `executemany`
(INSERT OR IGNORE on the same unique key, one transaction, same pragmas) into a
fresh table, and prints the rates and their ratio. The raw figure is what the
database alone can take: the ratio is the cost of everything else.
`--pg ADMIN_URL` runs the same on PostgreSQL in a throwaway database, beside a
raw psycopg `COPY` of the same rows into a table with the same unique key.
`--two-pass` pulls without rating and rates afterwards (what pull-cdrs did before
it rated as it stored); `--deck 0` pulls into a product with no deck (no rating).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from voipctl.config import Config
from voipctl.jobs.pull_cdrs import pull_cdrs
from voipctl.providers.fields import parse_fields
from voipctl.store import open_store
from voipctl.store.migrate import upgrade
from voipctl.store.models import Client, Product, Service

try:
    from voipctl.jobs.rate import rate_cdrs
    from voipctl.rating.deck import import_deck_file
except ImportError:  # pragma: no cover - a checkout without rating
    import_deck_file = rate_cdrs = None

PEERS = [("D4E3CD2BFC791", "12046664021"), ("A1B2C3D4E5F60", "12045550199")]
START = datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
COLUMNS = (
    "server, provider_id, service_id, client_id, direction, extension, caller, number, "
    '"start", answer, "end", billsec, hangup_cause, raw, pulled_at, status'
)


def write_file(path: Path, rows: int) -> None:
    """`rows` calls over the year, about one every 30 s, in the default layout (Toronto time)."""
    rng = random.Random(42)
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/Toronto")
    t = START
    with path.open("w", encoding="utf-8") as out:
        out.write("date,src,dst,duration,peer,did\n")
        lines = []
        for i in range(rows):
            t += timedelta(seconds=rng.randint(1, 59))
            peer, did = PEERS[i % 2]
            number = f"1{rng.choice('2345678')}{rng.randint(10, 99)}{rng.randint(2000000, 9999999)}"
            if rng.random() < 0.3:
                src, dst = number, did
            else:
                src, dst = did, number
            seconds = rng.randint(0, 900)
            lines.append(
                f"{t.astimezone(zone):%Y-%m-%d %H:%M:%S},{src},{dst},{seconds},{peer},{did}\n"
            )
            if len(lines) == 10_000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)


def write_deck(path: Path, prefixes: int) -> None:
    """A catch-all `1` row each way, then `prefixes` NANP 1+NPA+NXX outbound rows."""
    rng = random.Random(7)
    with path.open("w", encoding="utf-8") as out:
        out.write("prefix,rate,increment,connect fee,direction\n")
        out.write("1,0.02,60/6,0,outbound\n1,0.0075,6/6,0,inbound\n")
        for value in rng.sample(range(800 * 800), prefixes):
            npa, nxx = divmod(value, 800)
            out.write(f"1{npa + 200:03d}{nxx + 200:03d},0.{rng.randrange(10**6, 10**7):07d},6/6,0,")
            out.write("outbound\n")


def setup_store(db: Path, link: Path, deck: int = 0, url: str | None = None):
    store = open_store(url or f"sqlite:///{db}")
    upgrade(store)
    created = START - timedelta(days=1)
    with store.transaction() as session:
        session.add(
            Product(name="Metered", bill_inbound=True, markup_percent=10, created_at=created)
        )
        session.flush()
        for n, (peer, did) in enumerate(PEERS, start=1):
            session.add(
                Client(
                    id=n,
                    first_name="Bench",
                    last_name=str(n),
                    email=f"b{n}@example.com",
                    currency="CAD",
                    created_at=created,
                    updated_at=created,
                )
            )
            session.add(
                Service(
                    client_id=n,
                    product_id=1,
                    server="les",
                    server_type="lesnet",
                    domain_field=f"{peer} | {did}",
                    billed_field=did,
                    cdr_link=str(link),
                    created_at=created,
                    **parse_fields("lesnet", f"{peer} | {did}", did),
                )
            )
    if deck:
        write_deck(db.with_suffix(".deck.csv"), deck)
        import_deck_file(store, "Metered", db.with_suffix(".deck.csv"), effective_from=created)
    return store


def raw_insert(db: Path, rows: list[tuple]) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE cdrs (id INTEGER PRIMARY KEY, server TEXT NOT NULL, provider_id TEXT NOT "
        "NULL, service_id INTEGER, client_id INTEGER, direction TEXT, extension TEXT, caller "
        'TEXT, number TEXT, "start" INTEGER, answer INTEGER, "end" INTEGER, billsec INTEGER, '
        "hangup_cause TEXT, raw TEXT, pulled_at INTEGER, status TEXT, "
        "UNIQUE (server, provider_id))"
    )
    marks = ",".join("?" * 16)
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(f"INSERT OR IGNORE INTO cdrs ({COLUMNS}) VALUES ({marks})", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def raw_copy(url: str, rows: list[tuple]) -> float:
    """Seconds for psycopg's COPY of the rows into a bare table with the same unique key."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(
            "CREATE TABLE raw_cdrs (id BIGSERIAL PRIMARY KEY, server TEXT NOT NULL, provider_id "
            "TEXT NOT NULL, service_id INTEGER, client_id INTEGER, direction TEXT, extension "
            'TEXT, caller TEXT, number TEXT, "start" BIGINT, answer BIGINT, "end" BIGINT, '
            "billsec INTEGER, hangup_cause TEXT, raw TEXT, pulled_at BIGINT, status TEXT, "
            "UNIQUE (server, provider_id))"
        )
        conn.commit()
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY raw_cdrs ({COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - t0


@contextmanager
def pg_database(admin_url: str):
    """A throwaway database on the server of `admin_url`, dropped at the end."""
    from sqlalchemy import create_engine, make_url, text

    name = f"voipctl_bench_pull_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(rows: int, workdir: Path, deck: int, two_pass: bool, pg: str | None = None) -> None:
    link = workdir / f"cdr_{rows}.txt"
    t0 = time.perf_counter()
    if not link.exists():
        write_file(link, rows)
    size = link.stat().st_size
    print(f"{rows:,} rows: file written in {time.perf_counter() - t0:.1f}s ({size:,} bytes)")

    store = setup_store(workdir / f"pull_{rows}.db", link, deck, url=pg)
    config = Config.model_validate({"servers": {"les": {"type": "lesnet"}}})
    until = datetime(2100, 1, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    if two_pass or not deck:
        report = pull_cdrs(store, config, until=until)
    else:
        report = pull_cdrs(store, config, until=until, rate=True)
    pull_s = time.perf_counter() - t0
    assert report.exit_code == 0, report.failures
    stored = report.stored
    assert stored == rows, (stored, rows)
    rate_s = 0.0
    if deck:
        t0 = time.perf_counter()
        rated = rate_cdrs(store)
        rate_s = time.perf_counter() - t0
        print(f"  rate afterwards: {rated.line()}")

    with store.engine.connect() as conn:
        table = conn.exec_driver_sql(f"SELECT {COLUMNS} FROM cdrs").fetchall()
        unrated = conn.exec_driver_sql("SELECT COUNT(*) FROM cdrs WHERE status IS NULL").scalar()
    store.dispose()
    assert not deck or unrated == 0, unrated
    if pg:
        raw_s = raw_copy(pg, [tuple(r) for r in table])
    else:
        raw_s = raw_insert(workdir / f"raw_{rows}.db", [tuple(r) for r in table])

    what = "pull-cdrs (parse, match, dedupe key, chunked insert)"
    if deck:
        what = "pull-cdrs, then rate" if two_pass else "pull-cdrs rating as it stores, then rate"
    total_s = pull_s + rate_s
    pull_rate, raw_rate = stored / total_s, rows / raw_s
    print(f"  {what}: {pull_s:.2f}s + {rate_s:.2f}s = {total_s:.2f}s", end="")
    print(f", {pull_rate:,.0f} rows/s")
    raw_what = "raw COPY" if pg else "raw sqlite3 executemany"
    print(f"  {raw_what}, same rows and unique key:  {raw_s:.2f}s", end="")
    print(f", {raw_rate:,.0f} rows/s")
    print(f"  ratio / raw: {pull_rate / raw_rate:.2f}", end="")
    print(f" (raw is {raw_rate / pull_rate:.1f}x faster)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", type=lambda a: int(a.replace("_", "")))
    parser.add_argument("--deck", type=int, default=100_000, help="outbound deck prefixes")
    parser.add_argument("--two-pass", action="store_true", help="rate after the pull")
    parser.add_argument(
        "--pg", metavar="ADMIN_URL", help="also on PostgreSQL, in a throwaway database"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="voipctl-bench-") as tmp:
        for rows in args.rows or [1_000_000]:
            print("SQLite:")
            run(rows, Path(tmp), args.deck, args.two_pass)
            if args.pg:
                print("PostgreSQL:")
                with pg_database(args.pg) as url:
                    run(rows, Path(tmp), args.deck, args.two_pass, pg=url)


if __name__ == "__main__":
    main(sys.argv[1:])
