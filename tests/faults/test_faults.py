"""Fault injection across every writing job, checked by the one invariant checker.

Each job is the installed `voipctl` program in a process of its own, against the
test database (SQLite file or PostgreSQL: VOIPCTL_TEST_DB), the provider simulator
on a real port and an aiosmtpd server:

- kill -9 of pull-cdrs, rate, autobill, low-balance and autosuspend at a random
  instant, then the same job run to the end; the invariants after each;
- two runs of each job at once: the second exits 75 (or finds nothing left to do);
- provider outages (503s) and slow answers (past the timeout) in the middle of a pull;
- the SMTP server stopped in the middle of a batch and started again;
- the SQLite file's directory full (a small tmpfs; needs root to mount).

The default run is short (one round). The full run, by hand:
`VOIPCTL_FAULT_ROUNDS=20 python -m pytest -m slow tests/faults/test_faults.py -s`. Each
test prints what it injected and on which database, and appends it to
bench/out/faults.jsonl.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.fakes.trickle import trickling_server
from tests.support import ROOT
from tests.support.invariants import check_invariants, identical_call_excess
from tests.support.pause import pausing, wait_paused
from tests.support.smtp_sink import SmtpSink
from voipctl.cli import run as run_in_process
from voipctl.sim.server import LesnetAccount, LesnetPeer, SimConfig, Simulator, VodiaTenant
from voipctl.store import open_store
from voipctl.store.locks import lock_key, pull_lock
from voipctl.store.models import Service

BACKEND = os.environ.get("VOIPCTL_TEST_DB", "sqlite")
VOIPCTL = str(Path(sys.executable).with_name("voipctl"))
JOBS = ("pull-cdrs", "rate", "autobill", "low-balance", "autosuspend")
REPORT = ROOT / "bench" / "out" / "faults.jsonl"
EXIT_LOCKED = 75


def full_rounds(request) -> int:
    """Rounds of the full run: `-m slow` or VOIPCTL_FAULT_ROUNDS; skipped otherwise."""
    wanted = os.environ.get("VOIPCTL_FAULT_ROUNDS")
    if wanted:
        return int(wanted)
    if "slow" in (request.config.getoption("-m") or ""):
        return 10
    pytest.skip("the full fault run: -m slow or VOIPCTL_FAULT_ROUNDS=N")


@dataclass
class Tally:
    """What was injected, for the printed and recorded counts."""

    test: str
    backend: str = BACKEND
    kills: Counter = field(default_factory=Counter)  # job -> kills that hit a running job
    kills_after_exit: int = 0  # the job had already finished when the signal was due
    overlaps: Counter = field(default_factory=Counter)  # job -> runs that found the lock held
    outages: Counter = field(default_factory=Counter)
    checks: int = 0
    emails_resent_same_id: int = 0

    def record(self) -> None:
        doc = {
            "test": self.test,
            "backend": self.backend,
            "kills": dict(self.kills),
            "kills_total": sum(self.kills.values()),
            "kills_after_exit": self.kills_after_exit,
            "overlaps": dict(self.overlaps),
            "outages": dict(self.outages),
            "invariant_checks": self.checks,
            "emails_resent_same_id": self.emails_resent_same_id,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        print(f"\nfaults: {json.dumps(doc)}")
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with REPORT.open("a") as fh:
            fh.write(json.dumps(doc) + "\n")


def _outcome_counts(conn) -> dict[str, int]:
    """What a run of the whole pipeline left: calls, billed calls, emails, suspended services."""
    return {
        "cdrs": conn.execute(text("SELECT COUNT(*) FROM cdrs")).scalar_one(),
        "billed": conn.execute(
            text("SELECT COUNT(*) FROM cdrs WHERE billed_entry_id IS NOT NULL")
        ).scalar_one(),
        "emails": conn.execute(text("SELECT COUNT(*) FROM outbox")).scalar_one(),
        "suspended": conn.execute(
            text("SELECT COUNT(*) FROM services WHERE suspended = :t"), {"t": True}
        ).scalar_one(),
    }


class World:
    """Clients on a simulated Vodia PBX (one tenant each) and a LES.NET account, a deck,
    SMTP to a sink; jobs run as separate processes."""

    def __init__(self, tmp_path: Path, db_url: str, monkeypatch, *, clients: int, per_day: int):
        self.tmp = tmp_path
        self.db_url = db_url
        tenants = tuple(
            VodiaTenant(
                domain=f"c{i}.sim.example",
                extensions=(f"8{i:03d}", f"9{i:03d}"),
                dids=(f"548481{i:04d}",),
                trunk_id=str(100 + i),
            )
            for i in range(1, clients + 1)
        )
        lesnet = LesnetAccount(
            peers=(
                LesnetPeer("D4E3CD2BFC791", "12046664021"),
                LesnetPeer("A1B2C3D4E5F6", "12045550199"),
            )
        )
        self.sim = Simulator(
            SimConfig(seed=11, days=2, calls_per_day=per_day, vodia=tenants, lesnet=(lesnet,))
        )
        self.sim.start()
        self.sink = SmtpSink().start()
        monkeypatch.setenv("SIM_VODIA_PASSWORD", self.sim.config.vodia_password)
        self.config = tmp_path / "voipctl.toml"
        self.config.write_text(
            f'[database]\nurl = "{db_url}"\n\n'
            "[email]\n"
            'from = "billing@example.net"\noperator = "noc@example.net"\n'
            f'smtp_host = "{self.sink.host}"\nsmtp_port = {self.sink.port}\ntimeout_s = 3\n\n'
            "[servers.sim_vodia]\n"
            f'type = "vodia"\nurl = "{self.sim.base_url}"\nauth = "basic"\n'
            'username = "admin"\npassword_env = "SIM_VODIA_PASSWORD"\n'
            f'timezone = "{self.sim.config.vodia_timezone}"\nsuspend = "trunk"\n'
            "timeout_s = 1\nretries = 1\n\n"
            '[servers.sim_lesnet]\ntype = "lesnet"\nsuspend = "manual"\n'
            "timeout_s = 1\nretries = 1\n"
            f'[servers.sim_lesnet.cdr_format]\ntimezone = "{self.sim.config.lesnet_timezone}"\n'
        )
        self.config.chmod(0o600)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("VOIPCTL_") or k.startswith("VOIPCTL_TEST_")
        }
        self.env["SIM_VODIA_PASSWORD"] = self.sim.config.vodia_password
        self._setup(tenants, lesnet)
        self.durations: dict[str, float] = {}
        self.identical = 0

    def close(self) -> None:
        self.sink.stop()
        self.sim.stop()

    def cli(self, *argv: str) -> None:
        # Setup commands print what they created; only the fault counts belong in -s output.
        with contextlib.redirect_stdout(io.StringIO()):
            code = run_in_process(["--config", str(self.config), "-q", *argv])
        assert code == 0, argv

    def _setup(self, tenants, lesnet) -> None:
        deck = self.tmp / "deck.csv"
        deck.write_text(
            "prefix,rate,description\n" + "".join(f"{d},0.05,Zone {d}\n" for d in range(1, 10))
        )
        self.cli("db", "upgrade")
        self.cli("product", "add", "std", "--increment", "6/6")
        self.cli("rates", "import", "std", str(deck), "--effective", "2020-01-01")
        cid = 0
        for tenant in tenants:
            cid += 1
            self._client(cid)
            self.cli(
                "service", "add", "--client", str(cid), "--product", "std",
                "--server", "sim_vodia", "--domain", f"{tenant.domain} | {tenant.dids[0]}",
                "--billed", tenant.extensions[0], "--trunk", tenant.trunk_id,
            )  # fmt: skip
        for peer in lesnet.peers:
            cid += 1
            self._client(cid)
            self.cli(
                "service", "add", "--client", str(cid), "--product", "std",
                "--server", "sim_lesnet", "--domain", f"{peer.peer} | {peer.did}",
                "--cdr-link", f"{self.sim.base_url}/cdr/{lesnet.account}.txt",
            )  # fmt: skip

    def _client(self, cid: int) -> None:
        # Odd clients run out of credit (suspended, mailed); even ones have plenty.
        credit = "0.50" if cid % 2 else "100000.00"
        self.cli(
            "client", "add", str(cid), "--first-name", f"First{cid}", "--last-name", "Sim",
            "--email", f"client{cid}@example.net", "--has-voip-service",
            "--low-balance-threshold", "5.00",
        )  # fmt: skip
        self.cli("credit", "add", str(cid), credit, "--reference", f"topup-{cid}")

    # -- jobs -------------------------------------------------------------------

    def argv(self, job: str) -> list[str]:
        extra: list[str] = []
        if job == "pull-cdrs":
            extra = ["--since", self.sim.start_at.isoformat(), "--until", self.sim.end.isoformat()]
        return [VOIPCTL, "--config", str(self.config), job, "-q", *extra]

    def start(self, job: str, pause: tuple[str, Path] | None = None) -> subprocess.Popen:
        """Start a run; `pause` (LOCK, PATH): it holds LOCK at the pause point while PATH is."""
        env = self.env if pause is None else pausing(self.env, *pause)
        return subprocess.Popen(
            self.argv(job),
            cwd=self.tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, job: str, ok=(0,)) -> subprocess.CompletedProcess:
        """Run a job to its end; 75 (a dead run's lock not yet released) is retried."""
        for _ in range(100):
            started = time.perf_counter()
            proc = self.start(job)
            out, err = proc.communicate(timeout=300)
            if proc.returncode != EXIT_LOCKED:
                self.durations[job] = time.perf_counter() - started
                assert proc.returncode in ok, f"{job} exited {proc.returncode}: {err}"
                assert "Traceback" not in err, err
                return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            time.sleep(0.1)
        raise AssertionError(f"{job} kept finding its lock held")

    def kill_at_random(self, job: str, rng: random.Random, tally: Tally) -> None:
        proc = self.start(job)
        delay = rng.uniform(0.05, 1.0) * self.durations.get(job, 1.0)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            tally.kills[job] += 1
        else:
            tally.kills_after_exit += 1
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err

    def pipeline(self, tally: Tally | None = None, ok=(0, 1)) -> None:
        for job in JOBS:
            self.finish(job, ok=ok)

    # -- state ------------------------------------------------------------------

    def provider_suspended(self) -> dict[int, bool]:
        store = open_store(self.db_url)
        try:
            with store.transaction() as session:
                services = session.scalars(select(Service).where(Service.server == "sim_vodia"))
                rows = [(s.id, s.tenant, s.trunk_id) for s in services]
        finally:
            store.dispose()
        out = {}
        for service_id, tenant, trunk in rows:
            state = self.sim.vodia_state.get(f"{tenant}/trunk/{trunk}", {})
            out[service_id] = str(state.get("dis", "false")).lower() == "true"
        return out

    def check(self, tally: Tally, *, settled: bool) -> None:
        """The invariants; `settled`: after a completed run (emails sent, provider agrees)."""
        report = check_invariants(
            self.db_url,
            smtp=self.sink if settled else None,
            provider_suspended=self.provider_suspended() if settled else None,
            allow_unsent=not settled,
            allow_identical_calls=self.identical or True,
        )
        tally.checks += 1
        tally.emails_resent_same_id = max(tally.emails_resent_same_id, report.emails_resent)

    def calibrate(self) -> dict[str, int]:
        """One clean pipeline: job durations, the feed's equal calls, and the outcome counts."""
        self.pipeline()
        store = open_store(self.db_url)
        try:
            with store.engine.connect() as conn:
                self.identical = identical_call_excess(conn)
                counts = _outcome_counts(conn)
        finally:
            store.dispose()
        return counts

    def reset(self) -> None:
        """Back to the state before the first pull: same clients, services and top-ups."""
        store = open_store(self.db_url)
        try:
            with store.engine.begin() as conn:
                for sql in (
                    "DELETE FROM cdrs",
                    "DELETE FROM ledger_entries WHERE kind <> 'topup'",
                    "DELETE FROM outbox",
                    "DELETE FROM suspension_events",
                    "DELETE FROM job_runs",
                    "DELETE FROM pull_watermarks",
                    "DELETE FROM external_postings",
                ):
                    conn.execute(text(sql))
                conn.execute(
                    text(
                        "UPDATE services SET suspended = :f, suspended_by = NULL, "
                        "suspend_reason = NULL, suspended_at = NULL, manual_action_required = :f"
                    ),
                    {"f": False},
                )
                conn.execute(text("UPDATE clients SET low_balance_alerted = :f"), {"f": False})
        finally:
            store.dispose()
        self.sim.vodia_state.clear()
        with self.sink.handler.lock:
            self.sink.handler.messages.clear()
            self.sink.handler.envelopes.clear()

    def outcome(self) -> dict[str, int]:
        store = open_store(self.db_url)
        try:
            with store.engine.connect() as conn:
                return _outcome_counts(conn)
        finally:
            store.dispose()


@pytest.fixture
def world(tmp_path, db_url, monkeypatch):
    w = World(tmp_path, db_url, monkeypatch, clients=3, per_day=100)
    yield w
    w.close()


# --- kill -9 -------------------------------------------------------------------------------------


def kill_rounds(world: World, rounds: int, tally: Tally) -> None:
    rng = random.Random(f"kill:{BACKEND}:{rounds}:{time.time_ns()}")
    expected = world.calibrate()
    world.check(tally, settled=True)
    for _ in range(rounds):
        world.reset()
        for job in JOBS:
            world.kill_at_random(job, rng, tally)
            world.check(tally, settled=False)
            world.finish(job, ok=(0, 1))
            world.check(tally, settled=job in ("low-balance", "autosuspend"))
        # Killed or not, the round ends where the clean run ended: nothing lost, nothing twice.
        assert world.outcome() == expected


def test_kill_9_and_overlap_of_every_writing_job(world):
    tally = Tally("kill-9 and overlap (short)")
    kill_rounds(world, 1, tally)
    assert sum(tally.kills.values()) + tally.kills_after_exit == len(JOBS)
    overlap_rounds(world, 1, tally, calibrated=world.outcome())
    assert sum(tally.overlaps.values()) == len(JOBS)
    tally.record()


@pytest.mark.slow
def test_kill_9_of_every_writing_job_repeated(world, request):
    rounds = full_rounds(request)
    tally = Tally(f"kill-9 x{rounds}")
    kill_rounds(world, rounds, tally)
    tally.record()
    assert sum(tally.kills.values()) >= rounds  # most signals land on a running job


# --- overlapping runs ----------------------------------------------------------------------------


# Where the first of two overlapping runs pauses (the test-only pause point,
# voipctl/store/locks.py): at its job's lock; pull-cdrs at the last of its servers'
# locks, which it takes in name order, so that it holds them all.
PAUSE_AT = {job: job for job in JOBS} | {"pull-cdrs": pull_lock("sim_vodia")}


def overlap_once(world: World, job: str, tally: Tally) -> None:
    """A second run while the first holds its lock at the pause point: it exits 75 at once,
    with one line; the first then goes on as if alone."""
    marker = world.tmp / f"{job}.paused"
    first = world.start(job, pause=(PAUSE_AT[job], marker))
    try:
        assert wait_paused(first, marker) == first.pid, job
        second = world.start(job)
        _, err = second.communicate(timeout=300)
        assert second.returncode == EXIT_LOCKED, (job, second.returncode, err)
        assert "another run holds the" in err and len(err.strip().splitlines()) == 1, err
    finally:
        marker.unlink(missing_ok=True)
    _, err = first.communicate(timeout=300)
    assert "Traceback" not in err, err
    assert first.returncode in (0, 1), (job, first.returncode, err)
    tally.overlaps[job] += 1


def overlap_rounds(world: World, rounds: int, tally: Tally, *, calibrated=None) -> None:
    expected = calibrated or world.calibrate()
    for _ in range(rounds):
        world.reset()
        for job in JOBS:
            overlap_once(world, job, tally)
            world.check(tally, settled=False)
            world.finish(job, ok=(0, 1))  # whatever the pair left undone
            world.check(tally, settled=job in ("low-balance", "autosuspend"))
        assert world.outcome() == expected


@pytest.mark.slow
def test_two_runs_of_each_job_at_once_repeated(world, request):
    rounds = full_rounds(request)
    tally = Tally(f"overlap x{rounds}")
    overlap_rounds(world, rounds, tally)
    tally.record()
    assert sum(tally.overlaps.values()) >= rounds


# --- provider outages and slow answers mid-pull --------------------------------------------------


def outage_rounds(world: World, rounds: int, tally: Tally) -> None:
    expected = world.calibrate()
    rng = random.Random(f"outage:{BACKEND}")
    for _ in range(rounds):
        world.reset()
        # Vodia answers the first pages, then fails past its retries (503), then is slow
        # past its 1 s timeout; the LES.NET file is slow, then fails.
        world.sim.fail("/rest/domain/", times=rng.randint(2, 4), status=503)
        world.sim.delay("/cdr/", seconds=1.5, times=2)
        tally.outages["vodia-503"] += 1
        tally.outages["lesnet-slow"] += 1
        result = world.finish("pull-cdrs", ok=(0, 1))
        world.check(tally, settled=False)
        if result.returncode == 1:
            assert "sim_" in result.stderr, result.stderr  # names the server that failed
        world.sim.delay("/rest/domain/", seconds=1.5, times=2)
        world.sim.fail("/cdr/", times=2, status=500)
        tally.outages["vodia-slow"] += 1
        tally.outages["lesnet-500"] += 1
        world.finish("pull-cdrs", ok=(0, 1))
        world.check(tally, settled=False)
        # As cron would: the next runs read again until the servers answer (faults the
        # runs above did not use up are still waiting in the simulator).
        for _attempt in range(10):
            if world.finish("pull-cdrs", ok=(0, 1)).returncode == 0:
                break
            tally.outages["pull-retried"] += 1
        else:
            raise AssertionError("pull-cdrs never recovered from the outage")
        world.pipeline()
        world.check(tally, settled=True)
        assert world.outcome() == expected  # nothing lost, nothing twice
        # A full re-read from the start finds nothing new.
        again = world.finish("pull-cdrs")
        assert again.returncode == 0
        assert world.outcome() == expected
    tally.record()


def test_provider_outages_and_slow_answers_mid_pull(world):
    tally = Tally("outages (short)")
    outage_rounds(world, 1, tally)


@pytest.mark.slow
def test_provider_outages_repeated(world, request):
    rounds = full_rounds(request)
    tally = Tally(f"outages x{rounds}")
    outage_rounds(world, rounds, tally)


# --- SMTP down mid-batch -------------------------------------------------------------------------


def test_smtp_down_mid_batch_then_back(world):
    tally = Tally("smtp down")
    expected = world.calibrate()
    world.reset()
    for job in ("pull-cdrs", "rate", "autobill"):
        world.finish(job, ok=(0, 1))
    world.sink.handler_delay = 0.3
    proc = world.start("low-balance")
    deadline = time.time() + 30
    while world.sink.received < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    world.sink.stop()
    tally.outages["smtp-stopped-mid-batch"] += 1
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    world.check(tally, settled=False)
    # While it is down, autosuspend decides (and queues) its emails anyway.
    world.finish("autosuspend", ok=(0, 1))
    world.check(tally, settled=False)
    world.sink.start()
    world.finish("low-balance", ok=(0, 1))  # delivers what is pending
    world.check(tally, settled=True)
    assert world.outcome() == expected
    tally.record()


# --- disk full -----------------------------------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1.5 MB tmpfs for the SQLite file (root only); grown to 256 MB on request."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'not root'})")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)

    yield mount, grow
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.skipif(BACKEND != "sqlite", reason="a full disk is simulated for the SQLite file")
def test_disk_full_under_the_sqlite_file(small_tmpfs, tmp_path, monkeypatch):
    mount, grow = small_tmpfs
    db_file = mount / "voipctl.db"
    tally = Tally("disk full")
    world = World(tmp_path, f"sqlite:///{db_file}", monkeypatch, clients=4, per_day=400)
    try:
        failures = 0
        for job in JOBS:
            proc = world.start(job)
            _, err = proc.communicate(timeout=300)
            assert "Traceback" not in err, err
            if proc.returncode != 0:
                failures += 1
                assert "voipctl: " in err, err
        tally.outages["disk-full-runs-failed"] = failures
        assert failures >= 1, "the tmpfs never filled: make it smaller or the pull bigger"
        world.check(tally, settled=False)
        grow()
        world.pipeline()
        world.check(tally, settled=True)
        again = world.finish("pull-cdrs")
        assert again.returncode == 0
        tally.record()
    finally:
        world.close()


# --- a trickling server --------------------------------------------------------------------------


@pytest.fixture
def trickler():
    with trickling_server(size=100000, interval_s=1.0) as url:
        yield url


# (limits of the trickling server's table, the line it fails with, its limit in seconds)
TRICKLE_LIMITS = {
    "min-rate": (
        "min_rate_bps = 100\nrate_window_s = 2\nmax_request_s = 60\n",
        "transfer slower than 100 B/s over 2 s (servers.a_trickle.min_rate_bps)",
        2,
    ),
    "max-request": (
        "min_rate_bps = 0\nmax_request_s = 3\n",
        "transfer longer than 3 s (servers.a_trickle.max_request_s)",
        3,
    ),
}


@pytest.mark.parametrize("limit", sorted(TRICKLE_LIMITS))
def test_a_trickling_server_fails_alone_within_its_limit(world, trickler, limit):
    """A server that sends its headers and then a byte a second fails that server with one
    line naming the limit; the servers after it (name order) are pulled and billed."""
    table, reason, seconds = TRICKLE_LIMITS[limit]
    tally = Tally(f"trickling server ({limit})")
    expected = world.calibrate()
    world.check(tally, settled=True)
    world.reset()
    # Pulled first (servers go in name order), so the others come after the stuck one.
    with world.config.open("a") as fh:
        fh.write(
            '\n[servers.a_trickle]\ntype = "lesnet"\nsuspend = "manual"\n'
            f"timeout_s = 3\nretries = 0\n{table}"
        )
    world.cli(
        "client", "add", "90", "--first-name", "Slow", "--last-name", "Peer",
        "--email", "client90@example.net", "--has-voip-service",
    )  # fmt: skip
    world.cli("credit", "add", "90", "100000.00", "--reference", "topup-90")
    world.cli(
        "service", "add", "--client", "90", "--product", "std", "--server", "a_trickle",
        "--domain", "F00DFACE0001 | 12045550777", "--cdr-link", f"{trickler}/cdr/slow.txt",
    )  # fmt: skip
    started = time.monotonic()
    pulled = world.finish("pull-cdrs", ok=(1,))
    took = time.monotonic() - started
    tally.outages[f"trickle-{limit}"] += 1
    assert pulled.stderr == f"voipctl: error: a_trickle: {reason}\n"
    # The limit plus what the other servers' pull takes, never the 100000 s of the body.
    assert took < seconds + 30, took
    world.check(tally, settled=False)
    for job in JOBS[1:]:
        world.finish(job, ok=(0, 1))
    world.check(tally, settled=True)
    outcome = world.outcome()
    assert (outcome["cdrs"], outcome["billed"]) == (expected["cdrs"], expected["billed"])
    tally.record()


# --- a PostgreSQL lock held by another session ---------------------------------------------------


@pytest.mark.skipif(
    BACKEND != "postgresql", reason="PostgreSQL's lock_timeout (SQLite: busy_timeout)"
)
def test_autobill_behind_a_held_row_lock_stops_then_bills_once(world):
    """Another session holds a row lock on a call autobill must mark: autobill gives up
    within lock_timeout with one line, exits 1 and lets its advisory lock go; once the
    lock is released, the next run bills every call exactly once."""
    tally = Tally("held PostgreSQL lock")
    expected = world.calibrate()
    world.check(tally, settled=True)
    world.reset()
    text_ = world.config.read_text()
    world.config.write_text(text_.replace("[database]\n", "[database]\nlock_timeout_s = 1\n", 1))
    for job in ("pull-cdrs", "rate"):
        world.finish(job, ok=(0, 1))
    store = open_store(world.db_url)
    try:
        with store.engine.connect() as held:
            locked = held.execute(
                text(
                    "SELECT id FROM cdrs WHERE billed_entry_id IS NULL AND status = 'rated' "
                    "ORDER BY id DESC LIMIT 1 FOR UPDATE"
                )
            ).scalar_one()
            started = time.monotonic()
            stuck = world.start("autobill")
            _, err = stuck.communicate(timeout=120)
            took = time.monotonic() - started
            tally.outages["held-row-lock"] += 1
            assert stuck.returncode == 1, err
            assert err == (
                "voipctl: error: autobill: gave up waiting for a lock another session holds "
                "([database] lock_timeout_s); nothing of the unfinished transaction was written, "
                "the next run goes on\n"
            )
            assert took < 1 + 20, took
            # Its advisory lock went with it: none is held on this database (the server is
            # shared), autobill's own key can be taken, and the locked row is unbilled.
            advisory = held.execute(
                text(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
            assert advisory == 0
            key = {"k": lock_key("autobill")}
            assert held.execute(text("SELECT pg_try_advisory_lock(:k)"), key).scalar_one()
            assert held.execute(text("SELECT pg_advisory_unlock(:k)"), key).scalar_one()
            billed = held.execute(
                text("SELECT billed_entry_id FROM cdrs WHERE id = :i"), {"i": locked}
            ).scalar_one()
            assert billed is None
            held.rollback()
        world.check(tally, settled=False)
    finally:
        store.dispose()
    world.finish("autobill")
    world.check(tally, settled=False)
    world.finish("autobill")  # a third run finds nothing left to bill
    for job in ("low-balance", "autosuspend"):
        world.finish(job, ok=(0, 1))
    world.check(tally, settled=True)
    assert world.outcome() == expected  # every call billed once, nothing twice
    tally.record()
