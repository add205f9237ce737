"""Waiting for a run held at a test-only pause point (voipctl/pause.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from voipctl.pause import PAUSE_ENV


def pausing(env: dict[str, str], point: str, marker: Path) -> dict[str, str]:
    """`env` with the pause asked for: the run waits at `point` while `marker` exists."""
    return {**env, PAUSE_ENV: f"{point}={marker}"}


def wait_paused(proc: subprocess.Popen, marker: Path, timeout: float = 60) -> int:
    """Wait until `proc` waits at its pause point; its pid (which it wrote to `marker`)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"ended before its pause point: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached its pause point ({marker.name})")
        time.sleep(0.01)
    return int(marker.read_text())


def kill_paused(proc: subprocess.Popen, marker: Path) -> None:
    """SIGKILL `proc` once it waits at its pause point; the marker is removed in any case."""
    try:
        assert wait_paused(proc, marker) == proc.pid
        proc.kill()
        proc.wait()
    finally:
        marker.unlink(missing_ok=True)
