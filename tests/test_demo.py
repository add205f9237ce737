"""`voipctl demo`: the README's "run it" command, run as the installed program."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.invariants import check_invariants

VOIPCTL = str(Path(sys.executable).with_name("voipctl"))


def test_demo_runs_every_job_against_the_simulator_and_exits_0(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOIPCTL_", "SIM_"))}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run(
        [VOIPCTL, "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for command in ("pull-cdrs", "rate", "autobill", "low-balance", "autosuspend"):
        assert f"$ voipctl {command}" in out
    assert re.search(r"autobill: [1-9]\d* charges, [1-9]\d* calls", out)
    assert "service 1 of client 101 on sim_vodia: suspended (trunk 106 disabled" in out
    assert "manual action required: disable peer D4E3CD2BFC791" in out
    assert "steps that failed" not in out

    db = Path(re.search(r"database:\s+sqlite:///(\S+)", out).group(1))
    emails = Path(re.search(r"emails:\s+(\S+)", out).group(1))
    assert db.is_file() and db.is_relative_to(tmp_path)
    names = sorted(p.name for p in emails.glob("*.eml"))
    assert any(n.endswith("low_balance_alert.eml") for n in names)
    assert any(n.endswith("voip_zero_balance.eml") for n in names)
    assert any(n.endswith("manual_action_required.eml") for n in names)
    report = check_invariants(f"sqlite:///{db}")
    assert report.billed_cdrs > 0 and report.suspended_services == 2
