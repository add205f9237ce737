"""The benchmark scenarios. Each runs in a process of its own (`python -m bench.scenarios NAME`)
and prints one JSON line of results, so one scenario's memory never counts in another's RSS.

Inputs are generated deterministically (seeded) under `bench/out/` and reused between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
SEED = 20261126
# Calls are spread over these days (local time of the LES.NET file).
FIRST_DAY = datetime(2026, 10, 1)
DAYS = 30
LESNET_ZONE = "America/Toronto"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The layouts `python -m bench --time-format NAME` writes the LES.NET file in.
TIME_FORMATS = {"default": TIME_FORMAT, "day-first": "%d/%m/%Y %H:%M:%S"}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- inputs ------------------------------------------------------------------------------------


def deck_prefixes(n: int) -> list[str]:
    """`n` distinct prefixes: NANP area codes and exchanges, then international codes."""
    rng = random.Random(SEED)
    prefixes: set[str] = set()
    while len(prefixes) < n:
        if rng.random() < 0.7:
            prefixes.add("1" + str(rng.randint(201, 989)) + str(rng.randint(200, 999)))
        else:
            # International prefixes as normalised (country code first), dialled with 011.
            prefixes.add(str(rng.randint(20, 99)) + str(rng.randint(0, 99999)))
    return sorted(prefixes)


def deck_file(n: int) -> Path:
    """A rate deck CSV of `n` prefixes (prefix,rate,description), one rate per prefix."""
    path = OUT / f"deck_{n}.csv"
    if path.is_file():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED + 1)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        fh.write("prefix,rate,description\n")
        for prefix in deck_prefixes(n):
            fh.write(f"{prefix},0.{rng.randint(50, 9999):04d},Destination {prefix}\n")
    tmp.rename(path)
    return path


def services(n: int) -> list[tuple[str, str]]:
    """(peer, DID) of each LES.NET service."""
    return [(f"P{i:05d}BENCH", f"1204555{i:04d}") for i in range(n)]


def lesnet_file(n: int, deck: int, n_services: int, time_format: str = "default") -> Path:
    """`n` calls in LES.NET's layout (date,src,dst,duration,peer,did), oldest first; the
    times in TIME_FORMATS[time_format]."""
    tag = "" if time_format == "default" else f"_{time_format}"
    path = OUT / f"lesnet_{n}_{deck}_{n_services}{tag}.txt"
    written = TIME_FORMATS[time_format]
    if path.is_file():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED + 2)
    prefixes = deck_prefixes(deck)
    svc = services(n_services)
    step = DAYS * 86400 / n
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", buffering=1 << 20) as fh:
        fh.write("date,src,dst,duration,peer,did\n")
        for i in range(n):
            peer, did = svc[i % n_services]
            at = FIRST_DAY + timedelta(seconds=int(i * step))
            prefix = prefixes[rng.randrange(len(prefixes))]
            if prefix[0] == "1":
                number = (prefix + f"{rng.randrange(10**7):07d}")[:11]
            else:
                number = "011" + (prefix + f"{rng.randrange(10**9):09d}")[:13]
            seconds = rng.choice((0, 0, 5, 30, 61, 65, 120, 300, 1200)) + rng.randrange(10)
            fh.write(f"{at.strftime(written)},{did},{number},{seconds},{peer},{did}\n")
    tmp.rename(path)
    return path


def lesnet_lines(path: Path) -> Iterator[list[str]]:
    with path.open() as fh:
        next(fh)
        for line in fh:
            yield line.rstrip("\n").split(",")


# --- raw baselines ------------------------------------------------------------------------------

RAW_COLUMNS = ("server", "provider_id", "start", "caller", "number", "billsec", "peer", "did")


def raw_sqlite(n: int, deck: int, n_services: int, time_format: str = "default", **_) -> dict:
    """Read, split and insert the same rows with sqlite3.executemany (same unique key)."""
    src = lesnet_file(n, deck, n_services, time_format)
    db = OUT / f"raw_{os.getpid()}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE cdrs (id INTEGER PRIMARY KEY, server TEXT NOT NULL, provider_id TEXT NOT "
        "NULL, start TEXT, caller TEXT, number TEXT, billsec INTEGER, peer TEXT, did TEXT, "
        "UNIQUE (server, provider_id))"
    )
    sql = f"INSERT INTO cdrs ({', '.join(RAW_COLUMNS)}) VALUES ({', '.join('?' * 8)})"
    started = time.perf_counter()
    rows = 0
    with src.open() as fh:
        next(fh)
        batch: list[tuple] = []
        for line in fh:
            start, caller, number, billsec, peer, did = line.rstrip("\n").split(",")
            # The raw line is the natural key (what the adapter hashes when there is no call id).
            batch.append(("lesnet", line, start, caller, number, int(billsec), peer, did))
            if len(batch) == 50_000:
                conn.execute("BEGIN")
                conn.executemany(sql, batch)
                conn.execute("COMMIT")
                rows += len(batch)
                batch = []
        if batch:
            conn.execute("BEGIN")
            conn.executemany(sql, batch)
            conn.execute("COMMIT")
            rows += len(batch)
    seconds = time.perf_counter() - started
    stored = conn.execute("SELECT COUNT(*) FROM cdrs").fetchone()[0]
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    assert stored == rows == n, (stored, rows, n)
    return {"calls": n, "seconds": seconds, "calls_per_s": n / seconds, "rss_mb": peak_rss_mb()}


def raw_pg(
    n: int, deck: int, n_services: int, db_url: str, time_format: str = "default", **_
) -> dict:
    """Read, split and COPY the same rows into PostgreSQL (same unique key)."""
    import psycopg

    src = lesnet_file(n, deck, n_services, time_format)
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE raw_cdrs (id BIGSERIAL PRIMARY KEY, server TEXT NOT NULL, provider_id "
            "TEXT NOT NULL, start TEXT, caller TEXT, number TEXT, billsec INTEGER, peer TEXT, "
            "did TEXT, UNIQUE (server, provider_id))"
        )
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            copy_sql = f"COPY raw_cdrs ({', '.join(RAW_COLUMNS)}) FROM STDIN"
            with cur.copy(copy_sql) as copy, src.open() as fh:
                next(fh)
                for line in fh:
                    start, caller, number, billsec, peer, did = line.rstrip("\n").split(",")
                    copy.write_row(("lesnet", line, start, caller, number, billsec, peer, did))
        seconds = time.perf_counter() - started
        stored = conn.execute("SELECT COUNT(*) FROM raw_cdrs").fetchone()[0]
        conn.execute("DROP TABLE raw_cdrs")
    assert stored == n, (stored, n)
    return {"calls": n, "seconds": seconds, "calls_per_s": n / seconds, "rss_mb": peak_rss_mb()}


# --- end to end through voipctl -----------------------------------------------------------------


def _voipctl(*argv: str) -> str:
    """Run one voipctl command in this process; its stdout, or SystemExit on failure."""
    from voipctl.cli import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(argv))
    if code != 0:
        raise SystemExit(f"voipctl {' '.join(argv)} exited {code}: {err.getvalue().strip()}")
    return out.getvalue()


def _config(
    tmp: Path, db_url: str, time_format: str = "default", servers: tuple[str, ...] = ("lesnet",)
) -> Path:
    path = tmp / "bench.toml"
    blocks = "".join(
        f'[servers.{name}]\ntype = "lesnet"\n\n'
        f"[servers.{name}.cdr_format]\n"
        'delimiter = ","\nheader = true\n'
        'columns = { start = "date", caller = "src", number = "dst", seconds = "duration", '
        'peer = "peer", did = "did" }\n'
        f'time_format = "{TIME_FORMATS[time_format]}"\ntimezone = "{LESNET_ZONE}"\n\n'
        for name in servers
    )
    path.write_text(
        f'[database]\nurl = "{db_url}"\n\n'
        '[email]\ncapture_dir = "' + str(tmp / "mail") + '"\n\n' + blocks
    )
    path.chmod(0o600)
    (tmp / "mail").mkdir(exist_ok=True)
    return path


def _setup(
    config: Path, deck: Path, src: Path, n_services: int, servers: tuple[str, ...] = ("lesnet",)
) -> dict:
    cfg = ("--config", str(config))
    started = time.perf_counter()
    _voipctl(*cfg, "db", "upgrade")
    _voipctl(*cfg, "product", "add", "bench", "--increment", "6/6")
    _voipctl(*cfg, "rates", "import", "bench", str(deck), "--effective", "2026-01-01")
    for i, (peer, did) in enumerate(services(n_services), start=1):
        _voipctl(
            *cfg, "client", "add", str(i), "--first-name", f"F{i}", "--last-name", "Bench",
            "--email", f"c{i}@example.com", "--has-voip-service",
        )  # fmt: skip
        for server in servers:
            _voipctl(
                *cfg, "service", "add", "--client", str(i), "--product", "bench", "--server",
                server, "--domain", f"{peer} | {did}", "--cdr-link", str(src),
            )  # fmt: skip
        _voipctl(*cfg, "credit", "add", str(i), "100000.00", "--reference", f"bench-topup-{i}")
    return {"setup_s": time.perf_counter() - started}


def _profiled(step: str, fn: Callable[[], object], profile: bool) -> None:
    """Run `fn`; with `profile`, under cProfile, the top functions to bench/out/."""
    if not profile:
        fn()
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        fn()
    finally:
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        (OUT / f"profile-{step}.txt").write_text(out.getvalue())


def end_to_end(
    n: int,
    deck: int,
    n_services: int,
    db_url: str,
    profile: bool = False,
    time_format: str = "default",
    **_,
) -> dict:
    """pull-cdrs, rate, autobill of `n` LES.NET calls against a `deck`-prefix deck."""
    import tempfile

    deck_csv = deck_file(deck)
    src = lesnet_file(n, deck, n_services, time_format)
    with tempfile.TemporaryDirectory(prefix="voipctl-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if db_url == "sqlite":
            db_url = f"sqlite:///{tmp / 'bench.db'}"
        config = _config(tmp, db_url, time_format)
        result = _setup(config, deck_csv, src, n_services)
        result["rss_setup_mb"] = peak_rss_mb()
        cfg = ("--config", str(config), "-q")
        total = 0.0
        for step, argv in (
            ("pull", ("pull-cdrs", "--since", "2026-09-30", "--until", "2026-11-15")),
            ("rate", ("rate",)),
            ("autobill", ("autobill",)),
        ):
            started = time.perf_counter()
            _profiled(step, lambda argv=argv: _voipctl(*cfg, *argv), profile)
            seconds = time.perf_counter() - started
            total += seconds
            result[f"{step}_s"] = seconds
            result[f"rss_after_{step}_mb"] = peak_rss_mb()
        result.update(_verify(db_url, n))
    result.update(calls=n, seconds=total, calls_per_s=n / total, rss_mb=peak_rss_mb())
    return result


def two_pulls(n: int, deck: int, n_services: int, db_url: str, **_) -> dict:
    """Two servers pulled at once by two processes, against one server pulled alone.

    Three LES.NET servers read the same `n`-call file for services of their own (the
    same peers and DIDs: a server's calls are its own by the unique key). `pull-cdrs
    --server one` runs alone; then `--server two` and `--server three` start together,
    each in a process of its own, as two cron hosts would. Every server must end with
    `n` calls stored and rated.
    """
    import subprocess
    import tempfile

    from sqlalchemy import text

    from voipctl.store import open_store

    deck_csv = deck_file(deck)
    src = lesnet_file(n, deck, n_services)
    servers = ("one", "two", "three")
    voipctl = str(Path(sys.executable).with_name("voipctl"))
    with tempfile.TemporaryDirectory(prefix="voipctl-bench-") as tmpdir:
        tmp = Path(tmpdir)
        config = _config(tmp, db_url, servers=servers)
        result = _setup(config, deck_csv, src, n_services, servers)
        window = ("--since", "2026-09-30", "--until", "2026-11-15")

        def start(server: str) -> subprocess.Popen:
            argv = [voipctl, "--config", str(config), "-q", "pull-cdrs", "--server", server]
            return subprocess.Popen([*argv, *window], stderr=subprocess.PIPE, text=True)

        def wait(proc: subprocess.Popen) -> float:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"pull-cdrs exited {proc.returncode}: {err.strip()}")
            return time.perf_counter()

        began = time.perf_counter()
        result["one_s"] = wait(start("one")) - began
        began = time.perf_counter()
        pair = [start("two"), start("three")]
        ends = [wait(proc) - began for proc in pair]
        result["two_s"], result["three_s"] = ends
        result["both_s"] = max(ends)
        store = open_store(db_url)
        with store.engine.connect() as conn:
            counts = dict(
                conn.execute(
                    text(
                        "SELECT server, COUNT(*) FROM cdrs WHERE status IS NOT NULL GROUP BY server"
                    )
                ).all()
            )
        store.dispose()
        if counts != {name: n for name in servers}:
            raise SystemExit(f"verification failed: rated calls per server {counts}, {n} each")
    result.update(
        calls=n,
        one_calls_per_s=n / result["one_s"],
        both_calls_per_s=2 * n / result["both_s"],
        rss_mb=peak_rss_mb(),
    )
    return result


def _verify(db_url: str, n: int) -> dict:
    """Every call stored once, rated and billed; charges equal costs."""
    from sqlalchemy import text

    from voipctl.store import open_store

    store = open_store(db_url)
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT COUNT(*) FROM cdrs")).scalar_one()
        rated = conn.execute(text("SELECT COUNT(*) FROM cdrs WHERE status IS NOT NULL")).scalar()
        billed = conn.execute(
            text("SELECT COUNT(*) FROM cdrs WHERE billed_entry_id IS NOT NULL")
        ).scalar()
        cost = conn.execute(text("SELECT SUM(cost) FROM cdrs WHERE billed_entry_id IS NOT NULL"))
        charged = conn.execute(text("SELECT SUM(amount) FROM ledger_entries WHERE kind='charge'"))
        cost_units, charged_units = int(cost.scalar() or 0), int(charged.scalar() or 0)
    store.dispose()
    if stored != n or rated != n or cost_units != -charged_units:
        raise SystemExit(
            f"verification failed: {stored} stored, {rated} rated of {n}; "
            f"cost {cost_units} vs charged {-charged_units} units"
        )
    return {"stored": stored, "billed": billed, "charged_units": -charged_units}


def autosuspend(clients: int, runs: int = 3, **_) -> dict:
    """autosuspend over `clients` clients, one Vodia tenant each on the provider simulator.

    Half the clients are below zero: run 1 suspends them (one provider call each),
    run 2 finds nothing to change, then they are topped up and run 3 restores them.
    """
    import tempfile
    from datetime import UTC
    from decimal import Decimal

    from sqlalchemy import insert

    from voipctl.sim import server as sim_server
    from voipctl.sim.server import SimConfig, Simulator, VodiaTenant
    from voipctl.store import open_store
    from voipctl.store.models import Client, LedgerEntry, Service

    tenants = tuple(
        VodiaTenant(
            domain=f"c{i}.sim.example",
            extensions=(f"{i:05d}",),
            dids=(f"5{i:09d}",),
            trunk_id=str(i),
        )
        for i in range(1, clients + 1)
    )
    # The simulator writes headers and body separately: without TCP_NODELAY each answer
    # waits out the client's delayed ACK (~40 ms), which would be measured as voipctl's.
    sim_server._Handler.disable_nagle_algorithm = True
    sim = Simulator(SimConfig(days=1, calls_per_day=0, vodia=tenants, fusion=(), lesnet=()))
    sim.start()
    os.environ["SIM_VODIA_PASSWORD"] = sim.config.vodia_password
    result: dict = {"clients": clients, "runs": []}
    try:
        with tempfile.TemporaryDirectory(prefix="voipctl-bench-") as tmpdir:
            tmp = Path(tmpdir)
            db_url = f"sqlite:///{tmp / 'bench.db'}"
            config = tmp / "bench.toml"
            (tmp / "mail").mkdir()
            config.write_text(
                f'[database]\nurl = "{db_url}"\n\n[email]\ncapture_dir = "{tmp / "mail"}"\n'
                'operator = "noc@example.com"\n\n'
                f'[servers.sim_vodia]\ntype = "vodia"\nurl = "{sim.base_url}"\n'
                'auth = "basic"\nusername = "admin"\npassword_env = "SIM_VODIA_PASSWORD"\n'
                'suspend = "trunk"\n'
            )
            cfg = ("--config", str(config))
            _voipctl(*cfg, "db", "upgrade")
            _voipctl(*cfg, "product", "add", "bench")
            now = datetime.now(UTC)
            store = open_store(db_url)
            with store.engine.begin() as conn:
                product_id = conn.exec_driver_sql("SELECT id FROM products").scalar_one()
                conn.execute(
                    insert(Client.__table__),
                    [
                        {
                            "id": i,
                            "first_name": f"F{i}",
                            "last_name": "Bench",
                            "company": "",
                            "email": f"c{i}@example.com",
                            "currency": "USD",
                            "has_voip_service": True,
                            "voip_suspended": "none",
                            "manual_voip_suspend": False,
                            "credit_limit": Decimal(0),
                            "timezone": "UTC",
                            "cc_auth_on_file": False,
                            "low_balance_alerted": False,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i in range(1, clients + 1)
                    ],
                )
                conn.execute(
                    insert(Service.__table__),
                    [
                        {
                            "id": i,
                            "client_id": i,
                            "product_id": product_id,
                            "server": "sim_vodia",
                            "server_type": "vodia",
                            "domain_field": f"{t.domain} | {t.dids[0]}",
                            "billed_field": t.extensions[0],
                            "tenant": t.domain,
                            "main_did": t.dids[0],
                            "dids": list(t.dids),
                            "extensions": list(t.extensions),
                            "trunk_id": t.trunk_id,
                            "suspended": False,
                            "manual_action_required": False,
                            "active": True,
                            "created_at": now,
                        }
                        for i, t in enumerate(tenants, start=1)
                    ],
                )
                conn.execute(
                    insert(LedgerEntry.__table__),
                    [
                        {
                            "client_id": i,
                            "kind": "adjustment",
                            "amount": Decimal("-1.00") if i % 2 else Decimal("100.00"),
                            "reference": f"bench-{i}",
                            "note": "",
                            "cdr_count": 0,
                            "created_at": now,
                        }
                        for i in range(1, clients + 1)
                    ],
                )
            for run in range(1, runs + 1):
                if run == runs and runs >= 3:
                    with store.engine.begin() as conn:
                        conn.execute(
                            insert(LedgerEntry.__table__),
                            [
                                {
                                    "client_id": i,
                                    "kind": "topup",
                                    "amount": Decimal("50.00"),
                                    "reference": f"bench-topup-{i}",
                                    "note": "",
                                    "cdr_count": 0,
                                    "created_at": now,
                                }
                                for i in range(1, clients + 1, 2)
                            ],
                        )
                started = time.perf_counter()
                out = _voipctl(*cfg, "-v", "autosuspend")
                seconds = time.perf_counter() - started
                summary = next((line for line in out.splitlines() if "suspended," in line), "")
                numbers = dict(
                    (word, int(n))
                    for n, word in (
                        part.strip().split(" ")[:2]
                        for part in summary.split(":", 1)[-1].split(",")
                        if part.strip()[:1].isdigit()
                    )
                )
                result["runs"].append(
                    {
                        "seconds": seconds,
                        "suspended": numbers.get("suspended", 0),
                        "unsuspended": numbers.get("unsuspended", 0),
                        "unchanged": clients
                        - numbers.get("suspended", 0)
                        - numbers.get("unsuspended", 0),
                        "summary": summary,
                    }
                )
            store.dispose()
    finally:
        sim.stop()
    result["rss_mb"] = peak_rss_mb()
    return result


SCENARIOS: dict[str, Callable[..., dict]] = {
    "autosuspend": autosuspend,
    "raw_sqlite": raw_sqlite,
    "raw_pg": raw_pg,
    "end_to_end": end_to_end,
    "two_pulls": two_pulls,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scenarios")
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--params", required=True, help="JSON object of the scenario's arguments")
    args = parser.parse_args(argv)
    params = json.loads(args.params)
    result = SCENARIOS[args.scenario](**params)
    result["scenario"] = args.scenario
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
