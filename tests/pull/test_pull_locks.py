"""pull-cdrs locks per server: different servers are pulled at once, the same one never.

Two Asterisk servers, each with its own Master.csv (no network: the pull reads a
path). A held server is skipped with one line; a run whose every selected server
is held exits 75 with one line and records no run. The processes that overlap
are really at once: the first holds its server's lock at the test-only pause
point (`VOIPCTL_TEST_PAUSE`, voipctl/store/locks.py) while the others run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from sqlalchemy import func, select

from tests.pull.conftest import SINCE
from tests.support.autobill_runs import VOIPCTL, child_env
from tests.support.pause import pausing, wait_paused
from voipctl.pause import PAUSE_ENV
from voipctl.store.locks import job_lock, pull_lock
from voipctl.store.models import Cdr, JobRun


def _stored(store) -> dict[str, int]:
    with store.transaction() as s:
        rows = s.execute(select(Cdr.server, func.count()).group_by(Cdr.server)).all()
    return dict(rows)


def _pull_runs(store) -> int:
    with store.transaction() as s:
        return s.scalar(select(func.count()).where(JobRun.job == "pull-cdrs"))


def test_a_held_server_is_skipped_with_one_line_and_the_others_are_pulled(two, store):
    with job_lock(store, pull_lock("pbx1")):
        result = two("pull-cdrs", "--since", SINCE)
    assert result.exit_code == 0, result.output
    assert _stored(store) == {"pbx2": 3}
    [line] = result.stderr.splitlines()
    assert line.startswith("pull-cdrs: pbx1 skipped: pull-cdrs:pbx1: another run holds the")
    # The skipped server is pulled by the next run, from where its watermark says.
    again = two("pull-cdrs", "--since", SINCE)
    assert again.exit_code == 0, again.output
    assert _stored(store) == {"pbx1": 3, "pbx2": 3}


def test_every_selected_server_held_exits_75_with_one_line_and_records_nothing(two, store):
    with job_lock(store, pull_lock("pbx1")), job_lock(store, pull_lock("pbx2")):
        every = two("pull-cdrs", "--since", SINCE)
    with job_lock(store, pull_lock("pbx1")):
        one = two("pull-cdrs", "--server", "pbx1", "--since", SINCE)
    for result in (every, one):
        assert result.exit_code == 75, result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "another run holds the" in result.stderr
    assert "(and 1 more servers)" in every.stderr
    assert _stored(store) == {}
    assert _pull_runs(store) == 0


def test_a_held_server_is_not_read_again_by_retry_rejected(two, store, tmp_path):
    master = tmp_path / "pbx1" / "Master.csv"
    with master.open("a") as f:
        f.write('"acct1","101","15195551009","from-internal",not,a,call\n')
    first = two("pull-cdrs", "--server", "pbx1", "--since", SINCE)
    assert first.exit_code == 1 and "set aside" in first.stderr, first.output
    with job_lock(store, pull_lock("pbx1")):
        held = two("pull-cdrs", "--retry-rejected", "--server", "pbx1")
    assert held.exit_code == 75, held.output
    assert len(held.stderr.strip().splitlines()) == 1, held.stderr


# --- real processes, overlapping for certain ------------------------------------------------------


def _start(db_url: str, config: Path, cwd: Path, *argv: str, pause: str | None = None, marker=None):
    env = child_env() if pause is None else pausing(child_env(), pause, marker)
    return subprocess.Popen(
        [VOIPCTL, "--config", str(config), "--db", db_url, *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _end(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    return proc.returncode, err


def test_two_servers_pulled_at_once_and_a_third_run_of_one_exits_75(two, store, db_url, tmp_path):
    marker = tmp_path / "pbx1.paused"
    run = [db_url, two.config, tmp_path]
    first = _start(*run, "pull-cdrs", "--server", "pbx1", "--since", SINCE,
                   pause=pull_lock("pbx1"), marker=marker)  # fmt: skip
    try:
        assert wait_paused(first, marker) == first.pid
        # pbx1 is held for as long as the test likes: pbx2 is pulled meanwhile, to its end.
        code, err = _end(_start(*run, "pull-cdrs", "--server", "pbx2", "--since", SINCE))
        assert (code, err) == (0, "")
        assert _stored(store) == {"pbx2": 3}
        code, err = _end(_start(*run, "pull-cdrs", "--server", "pbx1", "--since", SINCE))
        assert code == 75 and len(err.strip().splitlines()) == 1, err
        assert "pull-cdrs:pbx1: another run holds the" in err
        # A run over every server skips the held one and pulls the other (nothing new).
        code, err = _end(_start(*run, "pull-cdrs", "--since", SINCE))
        assert code == 0 and err.startswith("pull-cdrs: pbx1 skipped:"), err
        assert len(err.strip().splitlines()) == 1, err
        assert first.poll() is None  # still holding pbx1 at its pause point
    finally:
        marker.unlink(missing_ok=True)
    assert _end(first) == (0, "")
    assert _stored(store) == {"pbx1": 3, "pbx2": 3}
    with store.transaction() as s:
        assert s.scalar(select(func.count(func.distinct(Cdr.provider_id)))) == 6
        found = s.scalars(select(JobRun.summary).where(JobRun.job == "pull-cdrs"))
        summaries = [json.loads(j) if isinstance(j, str) else j for j in found]
    # Three runs pulled (pbx2; every server less pbx1; pbx1), the one refused recorded nothing.
    assert len(summaries) == 3
    assert sum("skipped" in summary for summary in summaries) == 1


def test_a_pause_asked_for_another_lock_does_not_pause(two, store, db_url, tmp_path):
    assert PAUSE_ENV not in os.environ
    marker = tmp_path / "other.paused"
    proc = _start(db_url, two.config, tmp_path, "pull-cdrs", "--since", SINCE,
                  pause="pull-cdrs:pbx9", marker=marker)  # fmt: skip
    assert _end(proc) == (0, "")
    assert not marker.exists()
    assert _stored(store) == {"pbx1": 3, "pbx2": 3}
