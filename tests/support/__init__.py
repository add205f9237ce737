"""Helpers shared by the test suites: data builders, real servers started for a test,
and the invariant checker. `ROOT` is the project's folder, `FIXTURES` the recorded
answers of the real systems (each with its source beside it)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
