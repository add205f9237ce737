"""Rating benchmark on SQLite: deck import and bulk rating, against raw sqlite3 inserts.

    python bench/bench_rating.py                       # 1,000,000 CDRs, 100,000-prefix deck,
                                                       # 300,000-row deck import
    python bench/bench_rating.py --cdrs 100000 --deck 10000 --deck-rows 30000   # quick
    python bench/bench_rating.py --pg ADMIN_URL        # also rating on PostgreSQL, beside COPY

Each figure is printed with the rows per second of a raw `sqlite3` executemany
insert of the same rows into a table of the same shape, measured in the same run,
and the ratio between the two. Targets: at least 150,000 CDRs rated per second;
a 300,000-row deck imported in under 5 seconds.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from voipctl.jobs.rate import rate_cdrs
from voipctl.rating.deck import import_deck_file
from voipctl.rating.pull import PullRater
from voipctl.store import open_store
from voipctl.store.migrate import upgrade
from voipctl.store.models import Cdr, Client, Product, Service

T0 = datetime(2026, 1, 1, tzinfo=UTC)
INTERNATIONAL = ["44", "4420", "4416", "49", "4930", "33", "331", "61", "81", "52", "5255"]


def prefixes(n: int, rng: random.Random) -> list[str]:
    """`n` distinct prefixes: short international codes, then NANP 1+NPA+NXX (7 digits)."""
    chosen = list(INTERNATIONAL[: min(n, len(INTERNATIONAL))])
    if n > len(chosen):
        # 800 area codes x 800 exchanges (both 200-999): room for 640,000 distinct prefixes.
        for value in rng.sample(range(800 * 800), n - len(chosen)):
            npa, nxx = divmod(value, 800)
            chosen.append(f"1{npa + 200:03d}{nxx + 200:03d}")
    return chosen


def write_deck(path: Path, deck: list[str], rng: random.Random) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("Description,Prefix,RateValue,Increment\n")
        for prefix in deck:
            fh.write(f"Dest {prefix},{prefix},0.{rng.randrange(10**6, 10**7):07d},60/6\n")


def raw_deck_insert(path: Path) -> float:
    """Seconds for sqlite3 to insert the same deck rows (parsed by csv) into a bare table."""
    import csv

    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE rates (id INTEGER PRIMARY KEY, version_id INT, direction TEXT, "
            "prefix TEXT, description TEXT, rate BIGINT, increment_a INT, increment_b INT, "
            "connect_fee BIGINT, UNIQUE (version_id, direction, prefix))"
        )
        started = time.perf_counter()
        conn.execute("BEGIN")
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            next(reader)
            batch = []
            for desc, prefix, rate, _inc in reader:
                batch.append((1, "outbound", prefix, desc, int(rate[2:]) * 100, 60, 6, 0))
                if len(batch) == 5000:
                    conn.executemany("INSERT INTO rates VALUES (NULL,?,?,?,?,?,?,?,?)", batch)
                    batch.clear()
            conn.executemany("INSERT INTO rates VALUES (NULL,?,?,?,?,?,?,?,?)", batch)
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return elapsed


def cdr_rows(n: int, deck: list[str], services: list[int], rng: random.Random):
    """CDR rows for `cdrs`: numbers under the deck's prefixes, some unanswered, 2% no_rate."""
    start = int(T0.timestamp())
    n_services = len(services)
    for i in range(n):
        prefix = deck[rng.randrange(len(deck))]
        number = "+" + prefix + str(rng.randrange(10**9, 10**10))[: 12 - len(prefix)]
        if i % 50 == 0:
            number = "+99" + str(rng.randrange(10**9, 10**10))  # no deck row
        billsec = rng.randrange(0, 600) if i % 10 else 0
        when = start + i * 2
        yield (
            "bench",
            f"c{i}",
            services[i % n_services],
            42,
            "outbound",
            number,
            when,
            when if billsec else None,
            billsec,
            start,
        )


def setup_accounts(store, args: argparse.Namespace) -> list[int]:
    """Products Import and Rate, client 42 and its services; returns the service ids."""
    with store.transaction() as session:
        session.add(Product(id=1, name="Import", created_at=T0))
        session.add(Product(id=2, name="Rate", free_minutes=args.free_minutes, created_at=T0))
        session.add(
            Client(
                id=42,
                first_name="Bench",
                last_name="Mark",
                email="bench@example.com",
                currency="CAD",
                created_at=T0,
                updated_at=T0,
            )
        )
        session.flush()
        for i in range(args.services):
            session.add(
                Service(
                    product_id=2,
                    client_id=42,
                    server="bench",
                    server_type="lesnet",
                    domain_field=f"peer{i}",
                    created_at=T0,
                )
            )
    with store.transaction() as session:
        return list(session.scalars(select(Service.id).order_by(Service.id)))


def pg_rating(args: argparse.Namespace, rng: random.Random) -> None:
    """Rating on PostgreSQL: COPY the CDRs into `cdrs` (the reference), then `voipctl rate`."""
    import psycopg

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_pull import pg_database

    with pg_database(args.pg) as url, tempfile.TemporaryDirectory() as tmp:
        store = open_store(url)
        upgrade(store)
        services = setup_accounts(store, args)
        deck = prefixes(args.deck, rng)
        deck_csv = Path(tmp) / "rate.csv"
        write_deck(deck_csv, deck, rng)
        import_deck_file(store, "Rate", deck_csv, effective_from=T0)
        rows = [(*row, 0) for row in cdr_rows(args.cdrs, deck, services, rng)]
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            started = time.perf_counter()
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY cdrs (server, provider_id, service_id, client_id, direction, number, "
                    "start, answer, billsec, pulled_at, rerate_count) FROM STDIN"
                ) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            copy_s = time.perf_counter() - started
        started = time.perf_counter()
        report = rate_cdrs(store)
        rate_s = time.perf_counter() - started
        store.dispose()
        per_s = args.cdrs / rate_s
        print(
            f"PostgreSQL rating: {args.cdrs} CDRs in {rate_s:.2f} s = {per_s:,.0f} CDRs/s; "
            f"raw COPY of the same rows {args.cdrs / copy_s:,.0f} rows/s; "
            f"ratio {copy_s / rate_s:.2f}; {report.line()}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdrs", type=int, default=1_000_000, help="CDRs to rate")
    parser.add_argument("--deck", type=int, default=100_000, help="prefixes of the rating deck")
    parser.add_argument("--deck-rows", type=int, default=300_000, help="rows of the import deck")
    parser.add_argument("--services", type=int, default=100, help="services the CDRs belong to")
    parser.add_argument(
        "--free-minutes", type=int, default=0, help="free minutes of the rated product"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pg",
        metavar="ADMIN_URL",
        help="also rate on PostgreSQL (throwaway database), beside a raw COPY of the CDRs",
    )
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    if args.pg:
        pg_rating(args, random.Random(args.seed))

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        db = tmpdir / "bench.db"
        store = open_store(f"sqlite:///{db}")
        upgrade(store)
        services = setup_accounts(store, args)

        # 1. Deck import: voipctl rates import vs raw sqlite3 of the same rows.
        big = tmpdir / "import.csv"
        write_deck(big, prefixes(args.deck_rows, rng), rng)
        raw_s = raw_deck_insert(big)
        started = time.perf_counter()
        result = import_deck_file(store, "Import", big, effective_from=T0)
        import_s = time.perf_counter() - started
        rows = sum(result.rows.values())
        print(
            f"deck import: {rows} rows in {import_s:.2f} s = {rows / import_s:,.0f} rows/s; "
            f"raw sqlite3 insert {rows / raw_s:,.0f} rows/s; ratio {raw_s / import_s:.2f} "
            f"({'under' if import_s < 5 else 'OVER'} the 5 s target)"
        )

        # 2. Rating: raw insert of the CDRs (the reference), then voipctl rate.
        deck = prefixes(args.deck, rng)
        deck_csv = tmpdir / "rate.csv"
        write_deck(deck_csv, deck, rng)
        import_deck_file(store, "Rate", deck_csv, effective_from=T0)
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")
        started = time.perf_counter()
        conn.execute("BEGIN")
        batch = []
        sql = (
            "INSERT INTO cdrs (server, provider_id, service_id, client_id, direction, number, "
            "start, answer, billsec, pulled_at, rerate_count) VALUES (?,?,?,?,?,?,?,?,?,?,0)"
        )
        for row in cdr_rows(args.cdrs, deck, services, rng):
            batch.append(row)
            if len(batch) == 10_000:
                conn.executemany(sql, batch)
                batch.clear()
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
        insert_s = time.perf_counter() - started
        conn.close()

        started = time.perf_counter()
        report = rate_cdrs(store)
        rate_s = time.perf_counter() - started
        with store.transaction() as session:
            unrated = session.scalar(select(func.count()).where(Cdr.status.is_(None)))
        counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
        per_s = args.cdrs / rate_s
        print(
            f"rating: {args.cdrs} CDRs against a {len(deck)}-prefix deck in {rate_s:.2f} s = "
            f"{per_s:,.0f} CDRs/s; raw sqlite3 insert of the same rows "
            f"{args.cdrs / insert_s:,.0f} rows/s; ratio {insert_s / rate_s:.2f} "
            f"({'meets' if per_s >= 150_000 else 'BELOW'} the 150,000/s target)"
        )
        print(f"  statuses: {counts}; left unrated: {unrated}")

        # 3. The rating engine alone, on the same calls held in memory (what pull-cdrs'
        # one pass pays per call): no read, no UPDATE, no commit.
        with store.engine.connect() as conn:
            calls = conn.exec_driver_sql(
                "SELECT service_id, direction, number, billsec, start, answer, NULL FROM cdrs"
            ).all()
        hook = PullRater(store)
        try:
            started = time.perf_counter()
            for i in range(0, len(calls), 10_000):
                hook.rate_fields(calls[i : i + 10_000])
            engine_s = time.perf_counter() - started
        finally:
            hook.close()
        print(
            f"  the rating engine alone (calls in memory, as pull-cdrs rates them): "
            f"{len(calls) / engine_s:,.0f} CDRs/s"
        )
        store.dispose()
    return 0 if unrated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
