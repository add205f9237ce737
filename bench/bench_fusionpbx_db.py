"""FusionPBX db mode: how fast `fetch_cdrs` streams v_xml_cdr, and how little it holds.

    python -m bench.bench_fusionpbx_db [--rows 200000] [--pg-url ADMIN_URL]

Creates a throwaway FusionPBX-shaped database (tests/fakes/fusionpbx_db.py) on
the PostgreSQL server, fills it with answered outbound a-legs, reads them all
through the adapter, and drops the database. Prints rows/second, then the peak
Python memory of a second read under tracemalloc (slower; it proves the rows
are streamed, not loaded).
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.fakes.fusionpbx_db import FusionDb
from voipctl.config import FusionPBXServer
from voipctl.providers import adapter_for
from voipctl.providers.base import ServiceInfo

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
TENANT = "bench.example.com"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--pg-url", default=os.environ.get("VOIPCTL_BENCH_PG_URL", DEFAULT_PG))
    args = parser.parse_args()

    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    name = f"voipctl_bench_fusion_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
        db = FusionDb(url)
        db.add_domain(TENANT)
        extension = db.add_extension(TENANT, "2112")
        start = datetime(2026, 3, 1, tzinfo=UTC)
        db.add_many_cdrs(TENANT, args.rows, extension_uuid=extension, start=start)
        db.execute("ANALYZE v_xml_cdr")
        db.dispose()

        os.environ["BENCH_FUSION_DB_URL"] = url
        config = FusionPBXServer(type="fusionpbx", mode="db", db_url_env="BENCH_FUSION_DB_URL")
        service = ServiceInfo(
            id=1, client_id=1, server="bench", tenant=TENANT, extensions=("2112",)
        )
        until = start + timedelta(seconds=args.rows)

        with adapter_for("bench", config) as adapter:
            began = time.perf_counter()
            count = sum(1 for _ in adapter.fetch_cdrs(service, start, until))
            elapsed = time.perf_counter() - began
            tracemalloc.start()
            again = sum(1 for _ in adapter.fetch_cdrs(service, start, until))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert count == again == args.rows, (count, again)
        print(
            f"fusionpbx db mode: {count} calls in {elapsed:.2f}s = {count / elapsed:,.0f} rows/s;"
            f" peak Python memory while streaming {peak / 1e6:.1f} MB"
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
