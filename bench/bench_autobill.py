"""autobill benchmark: the installed `voipctl autobill` on a database of rated, unbilled calls.

    python bench/bench_autobill.py                                 # SQLite, 200,000 calls
    python bench/bench_autobill.py --db postgresql+psycopg://postgres@127.0.0.1:55432/bench
    python bench/bench_autobill.py --services 20 --calls 500       # quick
    python bench/bench_autobill.py --calls 10000 --interleave      # 1M calls, services in turn

The database (a new SQLite file, or the given PostgreSQL database, which must be
empty) is filled with `--services` metered services of `--calls` rated calls
each (one service after the other, or with `--interleave` in turn, as the calls
of one provider file arrive), then `voipctl autobill` runs once as its own process; the time printed
includes its start-up. The charges are checked against the costs afterwards.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.billing_data import (  # noqa: E402 - after the path is set
    add_calls,
    add_client,
    add_product,
    add_service,
    call_row,
    random_costs,
)
from voipctl.store import open_store  # noqa: E402
from voipctl.store.migrate import upgrade  # noqa: E402
from voipctl.store.models import Cdr, LedgerEntry  # noqa: E402


def _add_interleaved(store, services, rng: random.Random, calls: int) -> None:
    """`calls` rated calls per service, the services taking turns call by call."""
    rows = []
    for i in range(calls):
        for service, cost in zip(services, random_costs(rng, len(services)), strict=True):
            rows.append(call_row(service, cost))
        if len(rows) >= 20_000 or i == calls - 1:
            with store.transaction() as s:
                s.execute(insert(Cdr), rows)
            rows = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="database URL (default: a new SQLite file)")
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--calls", type=int, default=2000, help="calls per service")
    parser.add_argument(
        "--interleave", action="store_true", help="calls of all services in turn by id"
    )
    args = parser.parse_args()
    url = args.db or f"sqlite:///{tempfile.mkdtemp(prefix='bench-autobill-')}/voipctl.db"
    store = open_store(url)
    upgrade(store)
    rng = random.Random(1)
    with store.transaction() as s:
        product = add_product(s)
        services = []
        for cid in range(1, args.services + 1):
            add_client(s, cid)
            services.append(add_service(s, cid, product.id))
    if args.interleave:
        _add_interleaved(store, services, rng, args.calls)
    else:
        for service in services:
            add_calls(store, service, random_costs(rng, args.calls))
    voipctl = str(Path(sys.executable).with_name("voipctl"))
    began = time.monotonic()
    proc = subprocess.run([voipctl, "--db", url, "autobill", "-v"], capture_output=True, text=True)
    seconds = time.monotonic() - began
    with store.transaction() as s:
        charged = s.scalar(select(func.sum(LedgerEntry.amount)).where(LedgerEntry.kind == "charge"))
        cost = s.scalar(select(func.sum(Cdr.cost)))
    total = args.services * args.calls
    print(proc.stdout.strip() or proc.stderr.strip())
    print(
        f"{store.dialect}: {total} calls of {args.services} services"
        f"{' (interleaved)' if args.interleave else ''} billed in {seconds:.2f} s "
        f"({total / seconds:,.0f} calls/s with start-up); "
        f"charges {'equal' if (charged or Decimal(0)) == -(cost or Decimal(0)) else 'DIFFER FROM'} "
        "the costs"
    )
    store.dispose()


if __name__ == "__main__":
    main()
