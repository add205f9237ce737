"""The installed `voipctl autobill`, each run in a process of its own: for the kill tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.pause import pausing

VOIPCTL = str(Path(sys.executable).with_name("voipctl"))


def child_env() -> dict[str, str]:
    """This environment without VOIPCTL_* settings (the suite's VOIPCTL_TEST_* kept)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VOIPCTL_") or k.startswith("VOIPCTL_TEST_")
    }


def start_autobill(
    db_url: str,
    cwd: Path,
    *,
    config: Path | None = None,
    pause: tuple[str, Path] | None = None,
) -> subprocess.Popen:
    """Start one quiet autobill run against `db_url` (and `config`, when given).

    `pause` (LOCK, PATH): the run holds the lock LOCK at the test-only pause point
    until PATH, which it writes, is removed (voipctl/store/locks.py).
    """
    options = ["--config", str(config)] if config is not None else []
    env = child_env() if pause is None else pausing(child_env(), *pause)
    return subprocess.Popen(
        [VOIPCTL, *options, "--db", db_url, "autobill", "-q"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_autobill_to_end(
    db_url: str, cwd: Path, *, config: Path | None = None
) -> subprocess.CompletedProcess:
    """One autobill run to its end, started again while it finds its lock held."""
    # Just after a kill, PostgreSQL may not yet have ended the dead session that
    # held the advisory lock: 75 then means "try again in a moment", as cron would.
    for _ in range(50):
        proc = start_autobill(db_url, cwd, config=config)
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 75:
            return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        time.sleep(0.1)
    raise AssertionError("autobill kept finding its lock held")
