"""Start-up time of `voipctl --version` and `voipctl balance` against `python -c pass`.

Run: python bench/bench_startup.py. Each command
is run N times (default 10) in a fresh interpreter; the best time is kept, as the
least disturbed by the other work of the machine. Prints the times and the ratios.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(os.environ.get("BENCH_RUNS", "10"))


def best_of(argv: list[str], env: dict[str, str], cwd: str, runs: int = RUNS) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        env = {k: v for k, v in os.environ.items() if k != "VOIPCTL_CONFIG"}
        env["VOIPCTL_DATABASE_URL"] = f"sqlite:///{db}"
        voipctl = [str(Path(python).parent / "voipctl")]
        # `balance` needs a schema and a client: make them once, outside the timing.
        subprocess.run(
            [*voipctl, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=tmp
        )
        subprocess.run(
            [*voipctl, "client", "add", "1", "--first-name", "A", "--last-name", "B",
             "--email", "a@example.com"],
            env=env, check=True, capture_output=True, cwd=tmp,
        )  # fmt: skip
        floor = best_of([python, "-c", "pass"], env, tmp)
        version = best_of([*voipctl, "--version"], env, tmp)
        balance = best_of([*voipctl, "balance", "1"], env, tmp)
    print(f"python -c pass      {floor * 1000:7.1f} ms")
    print(f"voipctl --version   {version * 1000:7.1f} ms  ({version / floor:.1f}x)")
    print(f"voipctl balance 1   {balance * 1000:7.1f} ms  ({balance / floor:.1f}x)")


if __name__ == "__main__":
    main()
