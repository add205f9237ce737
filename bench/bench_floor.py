"""What the database alone costs with voipctl's own schema: the floor under pull, rate, autobill.

    python -m bench.bench_floor [CALLS]        (default 200000; a 100,000-prefix deck)

Runs the real `pull-cdrs` and `autobill` once on a fresh SQLite database (the
bench scenario's LES.NET file and deck), then replays through plain `sqlite3`,
with no Python work per row beyond the driver's, the very rows voipctl stored:

- the pull's INSERT into `cdrs` as migrated (unique key, foreign keys, every
  index), in chunks of the pull's size, against the same INSERT into a `cdrs`
  with the unique key alone (the raw baseline's table shape);
- `voipctl rate`'s UPDATE of the rating columns by id, on the same rows stored
  unrated (the two-pass path), with its read of those rows (the same columns,
  through the same index), and the UPDATE alone;
- autobill's marking UPDATE, one ranged statement per service.

Each line gives seconds and rows/s. The difference between a job's time and
its floor here is voipctl's Python; the difference between the floor and the
raw baseline is the schema (indexes the support and billing queries need).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from bench import scenarios as S
from voipctl.jobs.pull_cdrs import CHUNK_SIZE
from voipctl.jobs.rate import ROW_COLUMNS as READ_COLUMNS
from voipctl.rating.pull import PULL_COLUMNS
from voipctl.store.models import PENDING_CDR

SECONDARY = ("ix_cdrs_client_start", "ix_cdrs_service_start", "ix_cdrs_pending", "ix_cdrs_unbilled")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    # The pragmas voipctl's own connections use (voipctl/store/engine.py).
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _line(label: str, rows: int, seconds: float) -> None:
    print(f"  {label:58s} {seconds:6.2f} s {rows / seconds:10,.0f} rows/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("calls", nargs="?", type=int, default=200_000)
    parser.add_argument("--deck", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=100)
    args = parser.parse_args(argv)
    n = args.calls
    with tempfile.TemporaryDirectory(prefix="voipctl-floor-") as tmpdir:
        tmp = Path(tmpdir)
        db = tmp / "bench.db"
        config = S._config(tmp, f"sqlite:///{db}")
        source = S.lesnet_file(n, args.deck, args.services)
        S._setup(config, S.deck_file(args.deck), source, args.services)
        empty = tmp / "empty.db"
        shutil.copy(db, empty)
        cfg = ("--config", str(config), "-q")
        print(f"SQLite, {n:,} calls, {args.services} services, {args.deck:,}-prefix deck:")
        started = time.perf_counter()
        S._voipctl(*cfg, "pull-cdrs", "--since", "2026-09-30", "--until", "2026-11-15")
        _line("voipctl pull-cdrs (read, match, rate, insert)", n, time.perf_counter() - started)
        started = time.perf_counter()
        S._voipctl(*cfg, "autobill")
        _line("voipctl autobill", n, time.perf_counter() - started)

        src = sqlite3.connect(db)
        columns = [r[1] for r in src.execute("PRAGMA table_info(cdrs)")][1:]
        columns.remove("billed_entry_id")
        rows = src.execute(f"SELECT {', '.join(columns)} FROM cdrs ORDER BY id").fetchall()
        services = [r[0] for r in src.execute("SELECT DISTINCT service_id FROM cdrs")]
        src.close()
        names = ", ".join(f'"{c}"' for c in columns)
        insert = (
            f"INSERT INTO cdrs ({names}) VALUES ({', '.join('?' * len(columns))}) "
            "ON CONFLICT (server, provider_id) DO NOTHING"
        )

        def fresh(drop: tuple[str, ...] = ()) -> sqlite3.Connection:
            path = tmp / "floor.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            shutil.copy(empty, path)
            conn = _connect(path)
            for index in drop:
                conn.execute(f"DROP INDEX {index}")
            return conn

        def load(conn: sqlite3.Connection, data: list[tuple], sql: str) -> float:
            started = time.perf_counter()
            for i in range(0, len(data), CHUNK_SIZE):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, data[i : i + CHUNK_SIZE])
                conn.execute("COMMIT")
            return time.perf_counter() - started

        conn = fresh(SECONDARY)
        _line("INSERT, unique key only (the raw baseline's shape)", n, load(conn, rows, insert))
        conn.close()
        conn = fresh()
        _line("INSERT into cdrs as migrated (all indexes, FKs)", n, load(conn, rows, insert))

        # autobill's marking, on the rows just inserted (rated, unbilled).
        conn.execute("BEGIN IMMEDIATE")
        started = time.perf_counter()
        for service_id in services:
            conn.execute(
                "UPDATE cdrs INDEXED BY ix_cdrs_unbilled SET billed_entry_id = 1 "
                "WHERE service_id = ? AND status = 'rated' AND billed_entry_id IS NULL "
                "AND cost IS NOT NULL",
                (service_id,),
            )
        conn.execute("COMMIT")
        _line("autobill's marking UPDATE (one per service)", n, time.perf_counter() - started)
        conn.close()

        # The two-pass path: rows stored unrated, then `voipctl rate`'s read and UPDATE.
        rating = [columns.index(c) for c in PULL_COLUMNS]
        width = range(len(columns))
        unrated = [tuple(None if i in rating else row[i] for i in width) for row in rows]
        conn = fresh()
        load(conn, unrated, insert)
        ids = [r[0] for r in conn.execute("SELECT id FROM cdrs ORDER BY id")]
        values = [
            (*(row[i] for i in rating), cdr_id) for row, cdr_id in zip(rows, ids, strict=True)
        ]
        update = f"UPDATE cdrs SET {', '.join(f'{c} = ?' for c in PULL_COLUMNS)} WHERE id = ?"
        read = (
            f"SELECT {READ_COLUMNS} FROM cdrs INDEXED BY ix_cdrs_pending "
            f"WHERE ({PENDING_CDR}) AND id > ? ORDER BY id LIMIT 50000"
        )
        read_s = write_s = 0.0
        for i in range(0, n, 50_000):
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(read, (ids[i] - 1,)).fetchall()
            middle = time.perf_counter()
            conn.executemany(update, values[i : i + 50_000])
            conn.execute("COMMIT")
            read_s += middle - started
            write_s += time.perf_counter() - middle
        _line("voipctl rate's read + UPDATE of unrated rows (no rating)", n, read_s + write_s)
        _line("  of which the UPDATE and commit alone", n, write_s)
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
