"""The fraud guard's check (docs/fraud.md) beside autosuspend's own time.

    python -m bench.bench_fraud [--clients 10000] [--calls 1000000] [--pg URL] [--no-autosuspend]

Builds a database (SQLite in a temporary directory, or with --pg a PostgreSQL
database of its own, dropped at the end) with CLIENTS clients, one Vodia service
each, and CALLS stored, rated calls spread over the last 24 hours (2% of them to
a default risk prefix). Then times, best of three:

- the check alone (`fraud.measure` and `evaluate` for every client) with every
  limit set and none reached: the work each autosuspend run adds;
- the same with `trailing_multiple` alone, where every client that spent in the
  last hour needs its 30-day average (the check's worst case);
- `voipctl autosuspend` over the same clients on the provider simulator (one
  lever read-back per service), without and with the guard.

Setup is not timed.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from voipctl.config import Config, FraudConfig

RISK_NUMBERS = ("5372001234", "3712001234", "18095550100")


def _best(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def build(db_url: str, clients: int, calls: int, sim_url: str | None) -> None:
    from voipctl.store import open_store
    from voipctl.store.migrate import upgrade
    from voipctl.store.models import Cdr, Client, LedgerEntry, Product, Service

    store = open_store(db_url)
    upgrade(store)
    now = datetime.now(UTC)
    rng = random.Random(18)
    with store.engine.begin() as conn:
        product_id = conn.execute(
            insert(Product.__table__).returning(Product.__table__.c.id),
            {"name": "bench", "created_at": now},
        ).scalar_one()
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
                    "domain_field": f"c{i}.sim.example | 5{i:09d}",
                    "billed_field": f"{i:05d}",
                    "tenant": f"c{i}.sim.example",
                    "main_did": f"5{i:09d}",
                    "dids": [f"5{i:09d}"],
                    "extensions": [f"{i:05d}"],
                    "trunk_id": str(i),
                    "suspended": False,
                    "manual_action_required": False,
                    "active": True,
                    "created_at": now,
                }
                for i in range(1, clients + 1)
            ],
        )
        conn.execute(
            insert(LedgerEntry.__table__),
            [
                {
                    "client_id": i,
                    "kind": "topup",
                    "amount": Decimal("100000.00"),
                    "reference": f"bench-{i}",
                    "note": "",
                    "cdr_count": 0,
                    "created_at": now,
                }
                for i in range(1, clients + 1)
            ],
        )
    table = Cdr.__table__
    chunk = 50_000
    for first in range(0, calls, chunk):
        rows = []
        for n in range(first, min(calls, first + chunk)):
            client = rng.randint(1, clients)
            start = now - timedelta(seconds=rng.randint(0, 86_399))
            number = RISK_NUMBERS[n % 3] if n % 50 == 0 else f"1519{rng.randint(0, 9_999_999):07d}"
            rows.append(
                {
                    "server": "sim_vodia",
                    "provider_id": f"b{n}",
                    "service_id": client,
                    "client_id": client,
                    "direction": "outbound",
                    "number": number,
                    "normalized": number,
                    "start": start,
                    "billsec": 60,
                    "pulled_at": start,
                    "status": "rated",
                    "cost": Decimal(rng.randint(0, 500)).scaleb(-4),
                    "billable_seconds": 60,
                    "rerate_count": 0,
                    # Billed already: autosuspend's unbilled-cost query is not what is measured.
                    "billed_entry_id": 1,
                }
            )
        with store.engine.begin() as conn:
            conn.execute(insert(table), rows)
    if store.engine.dialect.name == "postgresql":
        # What autovacuum does on a live server: statistics, and the visibility map
        # an index-only scan needs.
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE cdrs"))
    store.dispose()


def check(db_url: str, fraud: FraudConfig) -> tuple[float, int, int]:
    from voipctl.jobs import fraud as guard_mod
    from voipctl.store import open_store

    store = open_store(db_url)
    config = Config(fraud=fraud)

    def once():
        with store.transaction() as session:
            g = guard_mod.measure(session, config, datetime.now(UTC))
            tripped = sum(1 for cid in g.limits if g.trip(cid) is not None)
            averaged = sum(1 for f in g.figures.values() if f.hourly_average is not None)
            return tripped, averaged

    seconds, (tripped, averaged) = _best(once)
    store.dispose()
    return seconds, tripped, averaged


def autosuspend(db_url: str, sim_url: str, tmp: Path, fraud_toml: str) -> float:
    from voipctl.cli import run

    config = tmp / f"bench-{uuid.uuid4().hex[:6]}.toml"
    (tmp / "mail").mkdir(exist_ok=True)
    config.write_text(
        f'[database]\nurl = "{db_url}"\n\n[email]\ncapture_dir = "{tmp / "mail"}"\n'
        'operator = "noc@example.com"\n\n'
        f'[servers.sim_vodia]\ntype = "vodia"\nurl = "{sim_url}"\n'
        'auth = "basic"\nusername = "admin"\npassword_env = "SIM_VODIA_PASSWORD"\n'
        f'suspend = "trunk"\n\n{fraud_toml}'
    )

    def once():
        code = run(["--config", str(config), "-q", "autosuspend"])
        if code != 0:
            raise SystemExit(f"autosuspend exited {code}")

    seconds, _ = _best(once, repeat=1)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--pg", metavar="ADMIN_URL", help="PostgreSQL instead of SQLite")
    parser.add_argument("--no-autosuspend", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1,000 clients, 100,000 calls")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.calls = 1_000, 100_000
    every = FraudConfig(
        max_spend_per_hour=Decimal("1000"),
        max_spend_per_day=Decimal("10000"),
        max_risk_calls_per_hour=1000,
        trailing_multiple=Decimal("1000"),
    )
    trailing = FraudConfig(trailing_multiple=Decimal("1000"))
    fraud_toml = (
        '[fraud]\nmax_spend_per_hour = "1000"\nmax_spend_per_day = "10000"\n'
        'max_risk_calls_per_hour = 1000\ntrailing_multiple = "1000"\n'
    )
    with tempfile.TemporaryDirectory(prefix="voipctl-fraud-") as tmpdir:
        tmp = Path(tmpdir)
        admin = None
        if args.pg:
            name = f"voipctl_bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            db_url = args.pg.rsplit("/", 1)[0] + f"/{name}"
        else:
            db_url = f"sqlite:///{tmp / 'bench.db'}"
        sim = None
        try:
            started = time.perf_counter()
            build(db_url, args.clients, args.calls, None)
            backend = "PostgreSQL" if args.pg else "SQLite"
            print(
                f"{backend}: {args.clients} clients, {args.calls} calls of the last day "
                f"(setup {time.perf_counter() - started:.1f} s, not timed)"
            )
            seconds, tripped, averaged = check(db_url, every)
            print(
                f"  check, every limit set          {seconds:7.2f} s  "
                f"({tripped} tripped, {averaged} averages read)"
            )
            seconds, tripped, averaged = check(db_url, trailing)
            print(
                f"  check, trailing_multiple alone  {seconds:7.2f} s  "
                f"({tripped} tripped, {averaged} averages read)"
            )
            if not args.no_autosuspend:
                from voipctl.sim import server as sim_server
                from voipctl.sim.server import SimConfig, Simulator, VodiaTenant

                tenants = tuple(
                    VodiaTenant(
                        domain=f"c{i}.sim.example",
                        extensions=(f"{i:05d}",),
                        dids=(f"5{i:09d}",),
                        trunk_id=str(i),
                    )
                    for i in range(1, args.clients + 1)
                )
                sim_server._Handler.disable_nagle_algorithm = True
                sim = Simulator(
                    SimConfig(days=1, calls_per_day=0, vodia=tenants, fusion=(), lesnet=())
                )
                sim.start()
                os.environ["SIM_VODIA_PASSWORD"] = sim.config.vodia_password
                off = autosuspend(db_url, sim.base_url, tmp, "")
                on = autosuspend(db_url, sim.base_url, tmp, fraud_toml)
                print(f"  autosuspend, guard off          {off:7.2f} s")
                print(f"  autosuspend, guard on           {on:7.2f} s")
        finally:
            if sim is not None:
                sim.stop()
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
