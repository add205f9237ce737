"""`python -m bench`: every benchmark of voipctl in one run, one process per scenario.

    python -m bench                      # full sizes: 100k and 1M calls, 100k-prefix deck
    python -m bench --quick              # small sizes, a minute or two
    python -m bench --only sqlite        # one family (sqlite, pg, autosuspend, extra)
    python -m bench --write bench/RESULTS.md

PostgreSQL: VOIPCTL_BENCH_PG_URL (an admin URL; default the local dev server). The run
creates a database of its own per scenario and drops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.scenarios import TIME_FORMATS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:55432/postgres"
GOAL_RATIO = 1 / 3
GOAL_RSS_MB = 300


def run_scenario(name: str, params: dict, *, timeout: float = 7200) -> dict:
    """Run one scenario in a child process and return its JSON result (or the error)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scenarios", name, "--params", json.dumps(params)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        error = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"scenario": name, "error": error, "params": params, "wall_s": wall}
    result = json.loads(lines[-1])
    result.update(params=params, wall_s=wall)
    return result


class PgDatabases:
    """Creates a database per scenario on the benchmark server and drops it afterwards."""

    def __init__(self, admin_url: str):
        from sqlalchemy import create_engine

        self.admin_url = admin_url
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def create(self) -> tuple[str, str]:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = f"voipctl_bench_{uuid.uuid4().hex[:10]}"
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(self.admin_url).set(database=name)
        return name, url.render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def version(self) -> str:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return conn.execute(text("SHOW server_version")).scalar_one()


def machine(pg: PgDatabases | None) -> dict:
    mem_kb = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pg_version = None
    if pg is not None:
        try:
            pg_version = pg.version()
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            pg_version = f"unreachable ({type(exc).__name__})"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg_version,
        "os": platform.platform(),
    }


def _pg_scenario(pg: PgDatabases, name: str, params: dict) -> dict:
    db, url = pg.create()
    try:
        return run_scenario(name, {**params, "db_url": url})
    finally:
        pg.drop(db)


def plan(args) -> list[tuple[str, str, dict]]:
    """(family, scenario, params) in the order they run."""
    steps: list[tuple[str, str, dict]] = []
    for time_format in args.time_format:
        base = {"deck": args.deck, "n_services": args.services, "time_format": time_format}
        for n in args.sizes:
            steps.append(("sqlite", "raw_sqlite", {**base, "n": n}))
            steps.append(
                (
                    "sqlite",
                    "end_to_end",
                    {**base, "n": n, "db_url": "sqlite", "profile": args.profile},
                )
            )
        for n in args.sizes:
            steps.append(("pg", "raw_pg", {**base, "n": n}))
            steps.append(("pg", "end_to_end", {**base, "n": n, "db_url": "pg"}))
    for n in args.sizes[-1:]:
        base = {"deck": args.deck, "n_services": args.services}
        steps.append(("pg", "two_pulls", {**base, "n": n, "db_url": "pg"}))
    steps.append(("autosuspend", "autosuspend", {"clients": args.clients, "runs": 3}))
    for script in sorted(HERE.glob("bench_*.py")):
        steps.append(("extra", script.stem, {"quick": args.quick}))
    return [s for s in steps if not args.only or s[0] in args.only]


# The other bench_*.py scripts: (full-size arguments, --quick arguments). A script not
# listed runs with its own defaults, and not at all with --quick.
EXTRA_ARGS: dict[str, tuple[list[str], list[str] | None]] = {
    "bench_pull": (["1000000"], ["100000"]),
    "bench_rating": ([], ["--cdrs", "100000", "--deck", "10000", "--deck-rows", "30000"]),
    "bench_cdrs": (["1000000", "2000"], ["200000", "100"]),
    "bench_fusionpbx_db": (["--rows", "200000"], ["--rows", "20000"]),
    "bench_floor": (["200000"], ["20000"]),
    "bench_fraud": ([], ["--quick"]),
    "bench_times": (["1000000"], ["100000"]),
}


def run_extra(script: str, quick: bool) -> dict:
    """Another bench_*.py script, run as a module in its own process; its last lines kept."""
    full, short = EXTRA_ARGS.get(script, ([], None))
    if quick and short is None:
        return {"scenario": script, "params": {}, "wall_s": 0.0, "output": ["(skipped)"]}
    argv = [sys.executable, "-m", f"bench.{script}", *(short if quick else full)]
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    out = (proc.stdout.strip().splitlines() or [""])[-15:]
    result = {
        "scenario": script,
        "params": {"argv": argv[3:]},
        "wall_s": time.perf_counter() - started,
        "output": out,
    }
    if proc.returncode != 0:
        result["error"] = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return result


def _layout(result: dict) -> str:
    """The time layout a scenario's LES.NET file was written in (older runs: the default)."""
    return result.get("params", {}).get("time_format", "default")


def _heading(title: str, columns: str, aligns: str) -> list[str]:
    """A report section's title and its table's first two lines."""
    return [f"## {title}", "", columns, aligns]


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def report(info: dict, results: list[dict]) -> str:
    """The Markdown report: machine, then one table per family, then the verdicts."""
    out = ["# voipctl benchmark results", ""]
    out.append(
        f"Run {info['date']} on {info['nproc']} CPU ({info['cpu']}), {info['ram_gb']} GB RAM, "
        f"Python {info['python']}, SQLite {info['sqlite']}, PostgreSQL {info['postgresql']} "
        f"({info['os']}). Command: `{info['command']}`."
    )
    out.append("")
    errors = [r for r in results if "error" in r]
    by = {}
    for r in results:
        if "error" in r:
            continue
        key = (r["scenario"], r["params"].get("n"), r["params"].get("db_url"), _layout(r))
        by[key] = r
    layouts = sorted({_layout(r) for r in results if r.get("scenario") == "end_to_end"})
    for layout, (backend, raw_name, label) in (
        (layout, family)
        for layout in layouts
        for family in (("sqlite", "raw_sqlite", "sqlite3.executemany"), ("pg", "raw_pg", "COPY"))
    ):
        rows = []
        for r in results:
            if (
                r.get("scenario") != "end_to_end"
                or r["params"]["db_url"] != backend
                or _layout(r) != layout
                or "error" in r
            ):
                continue
            n = r["params"]["n"]
            raw = by.get((raw_name, n, None, layout))
            ratio = r["calls_per_s"] / raw["calls_per_s"] if raw else None
            raw_rate = fmt_rate(raw["calls_per_s"]) if raw else "-"
            raw_rss = f"{raw['rss_mb']:.0f}" if raw else "-"
            shown_ratio = "-" if ratio is None else f"{ratio:.2f}"
            rows.append(
                f"| {n:,} | {r['pull_s']:.1f} | {r['rate_s']:.1f} | {r['autobill_s']:.1f} | "
                f"{r['seconds']:.1f} | {fmt_rate(r['calls_per_s'])} | {raw_rate} | "
                f"{shown_ratio} | {r['rss_mb']:.0f} | {raw_rss} |"
            )
        if not rows:
            continue
        name = "SQLite" if backend == "sqlite" else "PostgreSQL"
        shown = TIME_FORMATS.get(layout, layout)
        out += [
            f"## End to end on {name} (pull-cdrs + rate + autobill) vs raw {label}, "
            f"times `{shown}`",
            "",
            "| calls | pull s | rate s | autobill s | total s | calls/s | raw calls/s | ratio "
            "| peak RSS MB | raw RSS MB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
        sizes = sorted(
            r["params"]["n"]
            for r in results
            if r.get("scenario") == "end_to_end"
            and r["params"]["db_url"] == backend
            and _layout(r) == layout
            and "error" not in r
        )
        if len(sizes) >= 2:
            small = by[("end_to_end", sizes[0], backend, layout)]
            big = by[("end_to_end", sizes[-1], backend, layout)]
            growth = big["seconds"] / small["seconds"]
            out += [
                f"Growth {sizes[0]:,} -> {sizes[-1]:,} calls ({sizes[-1] / sizes[0]:.0f}x): time "
                f"x{growth:.1f}, peak RSS {small['rss_mb']:.0f} -> {big['rss_mb']:.0f} MB.",
                "",
            ]
    for r in results:
        if r.get("scenario") == "two_pulls" and "error" not in r:
            title = f"Two servers pulled at once on PostgreSQL, {r['calls']:,} calls each"
            out += [
                *_heading(title, "| run | seconds | calls/s |", "|---|---:|---:|"),
                f"| one server alone | {r['one_s']:.1f} | {fmt_rate(r['one_calls_per_s'])} |",
                f"| two servers at once (two processes) | {r['both_s']:.1f} "
                f"({r['two_s']:.1f} and {r['three_s']:.1f}) | "
                f"{fmt_rate(r['both_calls_per_s'])} |",
                "",
            ]
    for r in results:
        if r.get("scenario") == "autosuspend" and "error" not in r:
            out += _heading(
                f"autosuspend over {r['clients']:,} clients (provider simulator)",
                "| run | seconds | suspended | unsuspended | unchanged |",
                "|---:|---:|---:|---:|---:|",
            )
            for i, run in enumerate(r["runs"], start=1):
                out.append(
                    f"| {i} | {run['seconds']:.2f} | {run.get('suspended', '-')} | "
                    f"{run.get('unsuspended', '-')} | {run.get('unchanged', '-')} |"
                )
            out += ["", f"Peak RSS {r['rss_mb']:.0f} MB.", ""]
    extras = [r for r in results if r.get("output") is not None]
    for r in extras:
        out += [f"## {r['scenario']} ({r['wall_s']:.0f} s)", "", "```", *r["output"], "```", ""]
    if errors:
        out += ["## Scenarios that failed", ""]
        out += [f"- {r['scenario']} {r.get('params', '')}: {r['error']}" for r in errors]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (10k/100k calls)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--deck", type=int, default=None, help="prefixes in the rate deck")
    parser.add_argument("--services", type=int, default=100, help="LES.NET services (clients)")
    parser.add_argument("--clients", type=int, default=None, help="autosuspend clients")
    parser.add_argument(
        "--only", action="append", choices=["sqlite", "pg", "autosuspend", "extra"], default=[]
    )
    parser.add_argument(
        "--time-format",
        action="append",
        choices=sorted(TIME_FORMATS),
        default=[],
        help="the LES.NET file's time layout (repeatable; default: default and day-first)",
    )
    parser.add_argument("--pg-url", default=os.environ.get("VOIPCTL_BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument(
        "--profile", action="store_true", help="cProfile each end-to-end step (bench/out/)"
    )
    parser.add_argument("--write", metavar="PATH", help="write the Markdown report here")
    parser.add_argument("--json", metavar="PATH", help="write every result as JSON here")
    parser.add_argument(
        "--report-only", metavar="JSON", help="print (and --write) the report of a saved --json run"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads(Path(args.report_only).read_text())
        text = report(saved["machine"], saved["results"])
        print(text)
        if args.write:
            Path(args.write).write_text(text + "\n")
        return 0
    if not args.time_format:
        args.time_format = ["default", "day-first"]
    if args.sizes is None:
        args.sizes = [10_000, 100_000] if args.quick else [100_000, 1_000_000]
    if args.deck is None:
        args.deck = 10_000 if args.quick else 100_000
    if args.clients is None:
        args.clients = 1_000 if args.quick else 10_000

    pg = (
        PgDatabases(args.pg_url)
        if (not args.only or "pg" in args.only or "autosuspend" in args.only)
        else None
    )
    info = machine(pg)
    info["command"] = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(json.dumps(info), flush=True)
    results = []
    for family, scenario, params in plan(args):
        print(f"== {scenario} {params}", file=sys.stderr, flush=True)
        if family == "extra":
            result = run_extra(scenario, args.quick)
        elif family == "pg" and pg is not None:
            if params.get("db_url") == "pg":
                result = _pg_scenario(pg, scenario, params)
                result["params"]["db_url"] = "pg"
            else:
                result = _pg_scenario(pg, scenario, params)
                result["params"].pop("db_url", None)
        else:
            result = run_scenario(scenario, params)
        print(json.dumps(result), flush=True)
        results.append(result)
        if args.json:  # kept as the run goes: a long run's figures are never lost
            Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=2))
    text = report(info, results)
    print(text)
    if args.write:
        Path(args.write).write_text(text + "\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
