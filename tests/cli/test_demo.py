"""`voipctl demo`: the README's "run it" command, run as the installed program."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.invariants import check_invariants

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
    _every_call_is_accounted_for(out, db)


def _every_call_is_accounted_for(out: str, db: Path) -> None:
    import sqlite3

    section = out[out.index("== what became of every call") : out.index("== where things")]
    lines = section.strip().splitlines()[1:]
    total = int(lines[0].split()[0])
    assert lines[0] == f"{total} calls pulled from the three servers:"
    counts = {line.split(":")[0].split(None, 1)[1]: int(line.split()[0]) for line in lines[1:-1]}
    with sqlite3.connect(db) as conn:
        by_status = dict(conn.execute("SELECT status, COUNT(*) FROM cdrs GROUP BY status"))
        assert total == conn.execute("SELECT COUNT(*) FROM cdrs").fetchone()[0]
    # The simulator's calls: some of each kind the demo explains.
    assert counts == {
        "rated": by_status["rated"],
        "unanswered": by_status["unanswered"],
        "inbound, not billed": by_status["inbound_not_billed"],
        "internal": by_status["internal"],
    }
    assert sum(counts.values()) == total
    parts = " + ".join(str(n) for n in counts.values())
    assert lines[-1] == f"  {parts} = {total} calls"
    assert "(pull-cdrs prices each call it can as it stores it" in out
