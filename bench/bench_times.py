"""Reading a CDR file's local times: slicing (voipctl/providers/times.py) beside strptime.

    python -m bench.bench_times [ROWS]     (default 1000000 times per layout)

For each layout, ROWS local times 2.6 s apart over a month (Toronto, across the
DST change of 2026-11-01) are read three ways in the same run: `strptime` with
the zone attached (what every layout but the default cost per row before, and
Asterisk's Master.csv three times a row), `LocalTimes.epoch`, and a bare
`str.split` of the same text, the floor of touching each string at all. Every
way must give the same epochs.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from voipctl.providers.times import LocalTimes

ZONE = ZoneInfo("America/Toronto")
LAYOUTS = ("%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%Y%m%d%H%M%S")


def texts(time_format: str, rows: int) -> list[str]:
    first = datetime(2026, 10, 15)
    return [(first + timedelta(seconds=i * 13 // 5)).strftime(time_format) for i in range(rows)]


def timed(fn, values: list[str]) -> tuple[float, list]:
    started = time.perf_counter()
    out = [fn(v) for v in values]
    return time.perf_counter() - started, out


def main(argv: list[str]) -> int:
    rows = int(argv[0]) if argv else 1_000_000
    print(f"{rows:,} local times per layout (America/Toronto)")
    print("| layout | strptime /s | slicing /s | x | str.split /s (floor) |")
    print("|---|---:|---:|---:|---:|")
    for time_format in LAYOUTS:
        values = texts(time_format, rows)

        def old(text: str, time_format=time_format) -> int:
            return int(datetime.strptime(text, time_format).replace(tzinfo=ZONE).timestamp())

        slow, expected = timed(old, values)
        fast, got = timed(LocalTimes(time_format, ZONE).epoch, values)
        floor, _ = timed(str.split, values)
        assert got == expected, time_format
        print(
            f"| `{time_format}` | {rows / slow:,.0f} | {rows / fast:,.0f} | {slow / fast:.1f} | "
            f"{rows / floor:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
