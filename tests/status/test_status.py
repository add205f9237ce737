"""`voipctl status`: one test per stale condition, the metrics files, and --notify."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select, update

from tests.pull.test_pull_cdrs import END, add_services
from tests.support.billing_data import add_client
from tests.support.sim_env import start_sim
from tests.support.smtp_sink import SmtpSink
from voipctl import status as status_lib
from voipctl.providers.fusionpbx.adapter import FusionPBXAdapter
from voipctl.providers.lesnet.adapter import LesnetAdapter
from voipctl.providers.vodia.adapter import VodiaAdapter
from voipctl.sim import SimConfig, Simulator
from voipctl.store.models import (
    Cdr,
    JobRun,
    OutboxEmail,
    Product,
    ServerPullState,
    Service,
    StatusAlert,
)

OLD = datetime(2026, 3, 1, tzinfo=UTC)
# Only the job a test is about is checked; the others would be stale in a fresh database.
ONLY_AUTOBILL = (
    "[status]\n"
    'jobs = { "pull-cdrs" = 0, rate = 0, "low-balance" = 0, "auto-topup" = 0, autosuspend = 0 }\n'
)
NO_JOBS = (
    "[status]\n"
    'jobs = { "pull-cdrs" = 0, rate = 0, "low-balance" = 0, "auto-topup" = 0, autosuspend = 0, '
    "autobill = 0 }\n"
)


def _config(tmp_path: Path, body: str, name: str = "voipctl.toml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def _families(text: str) -> dict[str, dict[tuple, float]]:
    """Family name -> {(sample name, sorted labels): value}, parsed by prometheus_client."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        samples = out.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _unfold(header: str) -> str:
    # A long Subject is folded onto continuation lines (RFC 5322 section 2.2.3).
    return str(header).replace("\r\n", "").replace("\n", "")


def _service(session, server: str, server_type: str, client_id: int = 42) -> Service:
    add_client(session, client_id)
    product = Product(name=f"P{client_id}", created_at=OLD)
    session.add(product)
    session.flush()
    service = Service(
        client_id=client_id,
        product_id=product.id,
        server=server,
        server_type=server_type,
        domain_field="x",
        created_at=OLD,
    )
    session.add(service)
    session.flush()
    return service


# --- a job not run ------------------------------------------------------------------


def test_a_job_never_run_is_stale_and_clears_when_it_runs(cli, tmp_path):
    config = _config(tmp_path, ONLY_AUTOBILL)
    result = cli("status", "-q", config=config)
    assert result.exit_code == 1
    assert result.stdout == "job autobill: no successful run in 25h (last success: never)\n"
    assert cli("autobill", config=config).exit_code == 0
    result = cli("status", "-q", config=config)
    assert (result.exit_code, result.stdout) == (0, "")


def test_a_job_whose_last_success_is_too_old_is_stale_and_a_failed_run_does_not_help(
    cli, tmp_path, store
):
    config = _config(tmp_path, ONLY_AUTOBILL)
    now = datetime.now(UTC)
    with store.transaction() as s:
        s.add(JobRun(job="autobill", started_at=OLD, finished_at=OLD, status="ok", summary={}))
        s.add(JobRun(job="autobill", started_at=now, finished_at=now, status="failed"))
    result = cli("status", "-q", config=config)
    assert result.exit_code == 1
    assert result.stdout == (
        "job autobill: no successful run in 25h (last success: 2026-03-01T00:00:00Z)\n"
    )
    # A longer interval in [status] makes the same history fine.
    relaxed = _config(
        tmp_path,
        ONLY_AUTOBILL.replace("autosuspend = 0", "autosuspend = 0, autobill = 0"),
        "relaxed.toml",
    )
    assert cli("status", "-q", config=relaxed).exit_code == 0


def test_the_table_and_json_show_the_last_run_and_what_it_did(cli, tmp_path):
    config = _config(tmp_path, ONLY_AUTOBILL)
    assert cli("autobill", config=config).exit_code == 0
    result = cli("status", "--format", "json", config=config)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["problems"] == []
    job = next(j for j in doc["jobs"] if j["job"] == "autobill")
    assert job["interval_minutes"] == 1500
    assert job["last_run"]["status"] == "ok"
    assert job["last_run"]["summary"]["charges"] == 0
    assert job["last_success_at"] == job["last_run"]["finished_at"]
    assert set(doc["backlog"]) == {
        "unrated",
        "no_rate",
        "invalid_number",
        "unbilled",
        "emails_pending",
        "emails_failed",
        "manual_action_services",
        "suspended_clients",
    }
    table = cli("status", config=config)
    assert table.exit_code == 0
    row = next(line for line in table.stdout.splitlines() if line.startswith("autobill"))
    assert " ok " in row and "calls 0, charges 0" in row
    assert table.stdout.rstrip().endswith("problems\n  none: nothing is stale")


# --- a server silent ----------------------------------------------------------------


def test_a_server_without_a_successful_pull_is_stale_with_its_last_error(cli, tmp_path, store):
    config = _config(tmp_path, NO_JOBS)
    with store.transaction() as s:
        _service(s, "fusion1", "fusionpbx")
    result = cli("status", "-q", config=config)
    assert result.exit_code == 1
    assert result.stdout == "server fusion1: no successful pull in 15m (last success: never)\n"
    with store.transaction() as s:
        s.add(
            ServerPullState(
                server="fusion1",
                last_run_at=datetime.now(UTC),
                last_success_at=OLD,
                last_error="fusion1: cannot connect\nHTTP/1.1 502",  # a provider's text, two lines
                cdrs_stored_total=0,
            )
        )
    result = cli("status", "-q", config=config)
    assert result.stdout == (
        "server fusion1: no successful pull in 15m "
        "(last success: 2026-03-01T00:00:00Z; "
        "last error: fusion1: cannot connect\\x0aHTTP/1.1 502)\n"
    )
    # A server with no active service is not pulled, so it cannot be stale.
    with store.transaction() as s:
        s.execute(update(Service).values(active=False))
    assert cli("status", "-q", config=config).exit_code == 0


def test_lesnet_has_a_day_and_an_interval_can_be_set_per_server(cli, tmp_path, store):
    config = _config(tmp_path, NO_JOBS)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    with store.transaction() as s:
        _service(s, "les", "lesnet")
        s.add(ServerPullState(server="les", last_success_at=two_hours_ago, cdrs_stored_total=0))
    assert cli("status", "-q", config=config).exit_code == 0
    strict = _config(tmp_path, NO_JOBS + "servers = { les = 60 }\n", "strict.toml")
    result = cli("status", "-q", config=strict)
    assert result.exit_code == 1
    assert result.stdout == (
        f"server les: no successful pull in 1h (last success: {status_lib.stamp(two_hours_ago)})\n"
    )


@pytest.fixture
def sim(monkeypatch) -> Iterator[Simulator]:
    for adapter in (VodiaAdapter, LesnetAdapter, FusionPBXAdapter):
        monkeypatch.setattr(adapter, "backoff_s", 0.0)
    yield from start_sim(monkeypatch, SimConfig(seed=11, days=2, calls_per_day=20, end=END))


def test_a_silent_server_clears_when_pull_cdrs_reads_it_and_the_counter_only_grows(
    cli, tmp_path, store, sim
):
    config = _config(tmp_path, sim.config_snippet() + "\n" + NO_JOBS)
    add_services(store, sim, servers=("sim_vodia",))
    result = cli("status", "-q", config=config)
    assert result.exit_code == 1
    assert result.stdout == "server sim_vodia: no successful pull in 15m (last success: never)\n"
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    assert (
        cli(
            "pull-cdrs", "--metrics-dir", metrics, "--until", END.isoformat(), config=config
        ).exit_code
        == 0
    )
    assert cli("status", "-q", config=config).exit_code == 0
    with store.transaction() as s:
        stored = s.scalar(
            select(ServerPullState.cdrs_stored_total).where(ServerPullState.server == "sim_vodia")
        )
        newest = s.scalar(select(Cdr.start).order_by(Cdr.start.desc()).limit(1))
    assert stored > 0
    first = _families((metrics / "voipctl_pull-cdrs.prom").read_text())
    key = ("voipctl_cdrs_stored_total", (("server", "sim_vodia"),))
    assert first["voipctl_cdrs_stored"][key] == stored
    calls = ("voipctl_job_last_run_calls", (("job", "pull-cdrs"), ("server", "sim_vodia")))
    assert first["voipctl_job_last_run_calls"][calls] == stored
    newest_key = ("voipctl_server_newest_call_timestamp_seconds", (("server", "sim_vodia"),))
    assert first["voipctl_server_newest_call_timestamp_seconds"][newest_key] == newest.timestamp()
    # A second pull stores nothing new: the run's figure drops to 0, the counter stays.
    assert (
        cli(
            "pull-cdrs", "--metrics-dir", metrics, "--until", END.isoformat(), config=config
        ).exit_code
        == 0
    )
    second = _families((metrics / "voipctl_pull-cdrs.prom").read_text())
    assert second["voipctl_job_last_run_calls"][calls] == 0
    assert second["voipctl_cdrs_stored"][key] == stored


# --- a backlog old ------------------------------------------------------------------


def test_calls_left_unrated_too_long_are_stale_and_clear_when_rate_runs(cli, tmp_path, store):
    config = _config(tmp_path, NO_JOBS)
    pulled = datetime.now(UTC) - timedelta(hours=2)
    with store.transaction() as s:
        service = _service(s, "fusion1", "fusionpbx")
        s.add(
            ServerPullState(
                server="fusion1", last_success_at=datetime.now(UTC), cdrs_stored_total=2
            )
        )
        for n in range(2):
            s.execute(
                insert(Cdr).values(
                    server="fusion1",
                    provider_id=f"call-{n}",
                    service_id=service.id,
                    client_id=42,
                    direction="outbound",
                    number="12125550100",
                    start=OLD,
                    answer=OLD,
                    end=OLD + timedelta(seconds=60),
                    billsec=60,
                    pulled_at=pulled,
                )
            )
    result = cli("status", "-q", config=config)
    assert result.exit_code == 1
    assert result.stdout == (
        f"backlog: 2 calls not rated since {status_lib.stamp(pulled)} (limit 1h)\n"
    )
    # rate finds no deck: the calls go to no_rate, whose limit (a day) is not reached yet.
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    assert cli("rate", "-q", "--metrics-dir", metrics, config=config).exit_code == 1
    # A run with failures still writes its file: that it failed is the news.
    fams = _families((metrics / "voipctl_rate.prom").read_text())
    success = ("voipctl_job_last_run_success", (("job", "rate"),))
    assert fams["voipctl_job_last_run_success"][success] == 0
    assert "voipctl_job_last_success_timestamp_seconds" not in fams
    result = cli("status", "--format", "json", config=config)
    assert result.exit_code == 0
    backlog = json.loads(result.stdout)["backlog"]
    assert backlog["unrated"] == {"count": 0, "since": None}
    assert backlog["no_rate"]["count"] == 2
    tight = _config(tmp_path, NO_JOBS + "no_rate_max_minutes = 30\n", "tight.toml")
    result = cli("status", "-q", config=tight)
    assert result.stdout == (
        f"backlog: 2 calls in no_rate since {status_lib.stamp(pulled)} (limit 30m)\n"
    )


def test_an_email_waiting_too_long_is_stale(cli, tmp_path, store):
    config = _config(tmp_path, NO_JOBS)
    queued = datetime.now(UTC) - timedelta(hours=3)
    with store.transaction() as s:
        s.add(
            OutboxEmail(
                template="low_balance_alert",
                dedupe_key="k1",
                recipient="a@example.com",
                subject="s",
                body_text="b",
                created_at=queued,
                attempts=2,
                last_error="refused",
            )
        )
    result = cli("status", "-q", config=config)
    assert result.exit_code == 1
    assert result.stdout == (
        f"backlog: 1 email failing to send since {status_lib.stamp(queued)} (limit 1h)\n"
    )


# --- Prometheus ---------------------------------------------------------------------


def test_status_prints_prometheus_text_that_prometheus_client_parses(cli, tmp_path, store):
    config = _config(tmp_path, ONLY_AUTOBILL)
    assert cli("autobill", config=config).exit_code == 0
    with store.transaction() as s:
        finished = s.scalar(select(JobRun.finished_at).where(JobRun.job == "autobill"))
    result = cli("status", "--format", "prometheus", config=config)
    assert result.exit_code == 0
    fams = _families(result.stdout)
    job = (("job", "autobill"),)
    assert (
        fams["voipctl_job_last_success_timestamp_seconds"][
            ("voipctl_job_last_success_timestamp_seconds", job)
        ]
        == finished.timestamp()
    )
    assert fams["voipctl_job_last_run_success"][("voipctl_job_last_run_success", job)] == 1
    assert fams["voipctl_job_last_run_calls"][("voipctl_job_last_run_calls", job)] == 0
    assert fams["voipctl_status_problems"][("voipctl_status_problems", ())] == 0
    assert fams["voipctl_backlog_calls"][("voipctl_backlog_calls", (("state", "unrated"),))] == 0
    types = {f.name: f.type for f in text_string_to_metric_families(result.stdout)}
    assert set(types.values()) == {"gauge"}  # no _total outside a stored counter


def test_every_job_writes_its_own_file_and_a_dry_run_writes_none(cli, tmp_path, store):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    config = _config(tmp_path, f'[metrics]\ntextfile_dir = "{metrics}"\n')
    assert cli("autobill", "--dry-run", config=config).exit_code == 0
    assert list(metrics.iterdir()) == []
    for job in ("autobill", "low-balance", "autosuspend", "rate"):
        assert cli(job, config=config).exit_code == 0, job
    assert sorted(p.name for p in metrics.iterdir()) == [
        "voipctl_autobill.prom",
        "voipctl_autosuspend.prom",
        "voipctl_low-balance.prom",
        "voipctl_rate.prom",
    ]
    for path in metrics.iterdir():
        job = path.name.removeprefix("voipctl_").removesuffix(".prom")
        fams = _families(path.read_text())
        # One job per file: no series is repeated in another file.
        labels = {dict(lab)["job"] for samples in fams.values() for _, lab in samples}
        assert labels == {job}, path
        assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_an_unwritable_metrics_dir_is_one_line_naming_it(cli, tmp_path):
    missing = tmp_path / "nope"
    result = cli("autobill", "--metrics-dir", missing)
    assert result.exit_code == 2
    assert result.stderr == (
        f"voipctl: error: metrics directory {missing}: cannot write: No such file or directory\n"
    )


def test_the_metrics_file_is_replaced_by_a_rename_never_written_in_place(tmp_path, monkeypatch):
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((str(src), str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    target = status_lib.write_textfile(tmp_path, "autobill", "a 1\n")
    assert len(replaced) == 1
    src, dst = replaced[0]
    assert dst == str(target) and Path(src).parent == tmp_path and not src.endswith(".prom")
    assert os.listdir(tmp_path) == ["voipctl_autobill.prom"]  # no temporary file left


def test_a_reader_during_writes_only_ever_sees_a_whole_file(tmp_path):
    # Big enough that a write in place would be seen half done.
    versions = [("".join(f'm{{i="{i}"}} {v}\n' for i in range(20_000))) for v in (1, 2)]
    status_lib.write_textfile(tmp_path, "job", versions[0])
    path = tmp_path / "voipctl_job.prom"
    stop = threading.Event()
    seen: list[bool] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(path.read_text() in versions)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(40):
            status_lib.write_textfile(tmp_path, "job", versions[n % 2])
    finally:
        stop.set()
        reader.join()
    assert seen and all(seen)


# --- --notify -----------------------------------------------------------------------


def test_notify_mails_once_when_a_problem_appears_and_once_when_it_clears(cli, tmp_path, store):
    with SmtpSink() as sink:
        config = _config(
            tmp_path,
            f'[email]\nsmtp_host = "{sink.host}"\nsmtp_port = {sink.port}\n'
            f'operator = "noc@example.com"\n' + ONLY_AUTOBILL,
        )
        for _ in range(3):
            result = cli("status", "--notify", "-q", config=config)
            assert (result.exit_code, result.stdout, result.stderr) == (1, "", "")
        assert sink.received == 1
        appeared = sink.messages[0]
        assert appeared["To"] == "noc@example.com"
        assert _unfold(appeared["Subject"]) == (
            "voipctl: job autobill: no successful run in 25h (last success: never)"
        )
        with store.transaction() as s:
            assert s.scalars(select(StatusAlert.problem)).all() == ["job:autobill"]
        assert cli("autobill", config=config).exit_code == 0
        for _ in range(2):
            assert cli("status", "--notify", "-q", config=config).exit_code == 0
        assert sink.received == 2
        cleared = sink.messages[1]
        assert _unfold(cleared["Subject"]) == (
            "voipctl: cleared: job autobill: no successful run in 25h (last success: never)"
        )
        with store.transaction() as s:
            assert s.scalars(select(StatusAlert.problem)).all() == []
            assert all(s.scalars(select(OutboxEmail.sent_at)).all())


def test_notify_without_an_operator_address_is_a_config_error(cli, tmp_path):
    config = _config(tmp_path, ONLY_AUTOBILL)
    result = cli("status", "--notify", config=config)
    assert result.exit_code == 2
    assert result.stderr == (
        f"voipctl: error: {config}: email.operator: required by status --notify\n"
    )


def test_a_negative_interval_is_refused_naming_the_key(cli, tmp_path):
    config = _config(tmp_path, "[status]\njobs = { autobill = -5 }\n")
    result = cli("status", config=config)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"voipctl: error: {config}: status.jobs")
    assert "autobill: minutes must be 0 or more, got -5" in result.stderr


def test_a_notice_that_smtp_refused_is_sent_by_the_next_run_once(cli, tmp_path):
    sink = SmtpSink()  # not started: the SMTP server is down
    config = _config(
        tmp_path,
        f'[email]\nsmtp_host = "{sink.host}"\nsmtp_port = {sink.port}\ntimeout_s = 2.0\n'
        f'operator = "noc@example.com"\n' + ONLY_AUTOBILL,
    )
    result = cli("status", "--notify", "-q", config=config)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("voipctl: error: email 1 (status_problem) to noc@example.com: ")
    assert result.stderr.endswith("; will retry next run\n")
    with sink:
        for _ in range(2):
            result = cli("status", "--notify", "-q", config=config)
            assert (result.exit_code, result.stderr) == (1, "")
        assert sink.received == 1
