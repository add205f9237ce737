"""Test-only pause points: hold a run at a named place while a test acts.

With `VOIPCTL_TEST_PAUSE=NAME=PATH` in its environment, a run that reaches the
point NAME writes its pid to PATH and waits until PATH is removed (at most
`PAUSE_MAX_S`). The points: every job lock just taken (its name: `autobill`,
`pull-cdrs:NAME`, ...; voipctl/store/locks.py), `autobill:batch` after each
committed batch of charges (voipctl/jobs/autobill.py) and `pull-cdrs:chunk`
after each committed chunk of calls but the last (voipctl/jobs/pull_cdrs.py). The overlap and kill
tests start a second run, or send SIGKILL, then, instead of hoping for the
moment (docs/tests.md, "Overlapping runs: the pause point"). Without the
variable, or with another point named in it, a point costs one environment
lookup and does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_ENV = "VOIPCTL_TEST_PAUSE"
PAUSE_MAX_S = 300


def pause_point(name: str) -> None:
    """Wait here while a test asks for it (see the module docstring)."""
    asked = os.environ.get(PAUSE_ENV)
    if not asked:
        return
    point, _, marker = asked.partition("=")
    if point != name or not marker:
        return
    path = Path(marker)
    written = path.with_name(path.name + ".tmp")
    written.write_text(f"{os.getpid()}\n")
    written.replace(path)  # whole or not at all: the test reads the pid
    deadline = time.monotonic() + PAUSE_MAX_S
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
