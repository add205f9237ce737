"""Hypothesis settings shared by the hostile-input tests.

The default run is short (CI); `VOIPCTL_FUZZ_EXAMPLES=5000 python -m pytest tests/hostile/`
is the long run by hand.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("VOIPCTL_FUZZ_EXAMPLES", "100"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
