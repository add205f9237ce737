"""autobill really killed with SIGKILL at random instants, and started twice at once.

Each run is the installed `voipctl` program in a process of its own against the
test database (SQLite file or PostgreSQL, whichever the suite runs on). After
every kill the database must already satisfy docs/billing.md: the charges equal the
cost of the calls they marked billed, to the last unit, and no call is billed
twice; the final run bills exactly what was left. The moments that must happen
(a kill between two committed batches, a second run while the first holds the
lock) are made certain by the test-only pause points (voipctl/pause.py).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.support.autobill_runs import VOIPCTL, child_env, run_autobill_to_end, start_autobill
from tests.support.billing_data import add_calls, add_client, add_product, add_service, random_costs
from tests.support.invariants import check_invariants
from tests.support.pause import kill_paused, wait_paused
from voipctl.store.models import Cdr, LedgerEntry


def _billing_state(store) -> tuple[int, int, Decimal, Decimal]:
    with store.transaction() as s:
        total = s.scalar(select(func.count()).select_from(Cdr))
        billed = s.scalar(select(func.count()).where(Cdr.billed_entry_id.is_not(None)))
        charged = s.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), Decimal(0))).where(
                LedgerEntry.kind == "charge"
            )
        )
        cost = s.scalar(select(func.coalesce(func.sum(Cdr.cost), Decimal(0))))
    return total, billed, charged, cost


def _setup(store, rng: random.Random, services: int, calls: int) -> list:
    with store.transaction() as s:
        product = add_product(s)
        made = []
        for cid in range(1, services + 1):
            add_client(s, cid)
            made.append(add_service(s, cid, product.id))
    for service in made:
        add_calls(store, service, random_costs(rng, calls))
    return made


def _dry_run_seconds(db_url: str, cwd: Path) -> float:
    """How long a whole run takes here and now (a dry run reads what a run would bill)."""
    began = time.monotonic()
    subprocess.run(
        [VOIPCTL, "--db", db_url, "autobill", "--dry-run", "-q"],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        check=True,
    )
    return time.monotonic() - began


def _kill_mid_run(store, db_url: str, tmp_path: Path) -> None:
    """One run killed for certain between two committed batches of charges: held at the
    test-only pause point after its first batch (voipctl/pause.py), then SIGKILL."""
    _, billed_before, _, _ = _billing_state(store)
    marker = tmp_path / "autobill.batch.paused"
    proc = start_autobill(db_url, tmp_path, pause=("autobill:batch", marker))
    kill_paused(proc, marker)
    check_invariants(store)  # raises with every broken rule
    total, billed, _, _ = _billing_state(store)
    assert billed_before < billed < total, (billed_before, billed, total)


def _kill_loop(store, db_url: str, tmp_path: Path, kills: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    made = _setup(store, rng, services=120, calls=200)
    _kill_mid_run(store, db_url, tmp_path)
    whole = _dry_run_seconds(db_url, tmp_path)
    mid_run, done, before_work = 1, 0, 0
    attempts = 0
    # Then kills at random instants: wherever they land, the invariants hold.
    while attempts < kills:
        attempts += 1
        _, billed_before, _, _ = _billing_state(store)
        proc = start_autobill(db_url, tmp_path)
        began = time.monotonic()
        try:
            proc.wait(timeout=rng.uniform(0.4 * whole, 1.1 * whole))
            # It ran to the end first: learn how long a whole run takes on this machine now.
            whole = time.monotonic() - began
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        check_invariants(store)  # raises with every broken rule
        total, billed, _, _ = _billing_state(store)
        if proc.returncode == 0 or billed == total:
            done += 1
        elif billed > billed_before:
            mid_run += 1
        else:
            before_work += 1
        # New rated calls arrive between runs, as `voipctl rate` would add them: every
        # service has some, so each run has as many charges to write as the first.
        for service in made:
            add_calls(store, service, random_costs(rng, 10), prefix=f"k{attempts}")

    final = run_autobill_to_end(db_url, tmp_path)
    assert final.returncode == 0, final.stderr
    total, billed, charged, cost = _billing_state(store)
    assert billed == total
    assert charged == -cost  # to the last of nine decimal places
    report = check_invariants(store)
    assert report.billed_cdrs == total
    return {"kills": attempts + 1, "mid_run": mid_run, "done": done, "before_work": before_work}


def test_killed_at_random_instants_then_run_again_bills_each_call_once(store, db_url, tmp_path):
    counts = _kill_loop(store, db_url, tmp_path, kills=10, seed=11)
    print(f"autobill kill -9: {counts}")


@pytest.mark.slow
def test_killed_many_times(store, db_url, tmp_path):
    counts = _kill_loop(store, db_url, tmp_path, kills=80, seed=12)
    print(f"autobill kill -9 (slow): {counts}")


@pytest.mark.slow
def test_killed_between_windows_of_a_backlog_bills_each_call_once(store, db_url, tmp_path):
    # Over 50,000 calls to bill: autobill cuts them into windows of consecutive ids,
    # one transaction each. Each run is killed as soon as its first window shows
    # committed, so the kill lands while the next window is being written.
    rng = random.Random(13)
    made = _setup(store, rng, services=50, calls=1200)
    between = 0
    for attempt in range(4):
        _, billed_before, _, _ = _billing_state(store)
        proc = start_autobill(db_url, tmp_path)
        while proc.poll() is None and _billing_state(store)[1] == billed_before:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_invariants(store)
        total, billed, _, _ = _billing_state(store)
        between += billed_before < billed < total
        for service in made:
            add_calls(store, service, random_costs(rng, 1200), prefix=f"w{attempt}")
    final = run_autobill_to_end(db_url, tmp_path)
    assert final.returncode == 0, final.stderr
    total, billed, charged, cost = _billing_state(store)
    assert billed == total and charged == -cost
    assert check_invariants(store).billed_cdrs == total
    assert between >= 1, "no kill landed between two windows"
    print(f"autobill kill -9 between windows: {between} of 4")


def test_two_runs_started_at_once_never_bill_a_call_twice(store, db_url, tmp_path):
    # The first run holds its lock at the test-only pause point (voipctl/store/locks.py)
    # while the second starts: the two overlap for certain, however fast autobill is.
    rng = random.Random(21)
    services = _setup(store, rng, services=30, calls=500)
    for round_ in range(3):
        marker = tmp_path / f"autobill.{round_}.paused"
        billed_before = _billing_state(store)[1]
        first = start_autobill(db_url, tmp_path, pause=("autobill", marker))
        try:
            assert wait_paused(first, marker) == first.pid
            second = start_autobill(db_url, tmp_path)
            _, err = second.communicate(timeout=120)
            assert second.returncode == 75, err
            assert "another run holds the" in err and err.count("\n") == 1, err
            assert _billing_state(store)[1] == billed_before  # nothing billed meanwhile
        finally:
            marker.unlink(missing_ok=True)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        total, billed, charged, cost = _billing_state(store)
        assert billed == total and charged == -cost
        check_invariants(store)
        for service in rng.sample(services, 10):
            add_calls(store, service, random_costs(rng, 1000), prefix=f"r{round_}")
    final = run_autobill_to_end(db_url, tmp_path)
    assert final.returncode == 0, final.stderr
    total, billed, charged, cost = _billing_state(store)
    assert billed == total and charged == -cost
    check_invariants(store)
