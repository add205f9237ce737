"""pull-cdrs end to end against the provider simulator on a real port, and the job's rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tests.support.sim_env import start_sim
from voipctl.config import load_config
from voipctl.errors import ProviderDataError
from voipctl.jobs.pull_cdrs import pull_cdrs
from voipctl.providers.base import CallRecord, ProviderAdapter, ServiceInfo, digest
from voipctl.providers.fields import parse_fields
from voipctl.providers.fusionpbx.adapter import FusionPBXAdapter
from voipctl.providers.lesnet.adapter import LesnetAdapter
from voipctl.providers.vodia.adapter import VodiaAdapter
from voipctl.sim import SimConfig, Simulator
from voipctl.store.models import Cdr, Client, JobRun, Product, PullWatermark, Service

END = datetime(2026, 11, 20, tzinfo=UTC)
DAYS = 3
WRONG_PASSWORD = "not-the-right-password-77"


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    for adapter in (VodiaAdapter, LesnetAdapter, FusionPBXAdapter):
        monkeypatch.setattr(adapter, "backoff_s", 0.0)


@pytest.fixture
def sim(monkeypatch) -> Iterator[Simulator]:
    yield from start_sim(monkeypatch, SimConfig(seed=11, days=DAYS, calls_per_day=30, end=END))


@pytest.fixture
def config_file(sim, tmp_path):
    path = tmp_path / "voipctl.toml"
    path.write_text(sim.config_snippet(), encoding="utf-8")
    return path


def add_services(store, sim: Simulator, servers=("sim_vodia", "sim_lesnet", "sim_fusion")):
    """One client per simulated tenant or peer, its service created before the calls."""
    created = sim.start_at - timedelta(days=1)
    ids = {}
    with store.transaction() as session:
        product = Product(name="Metered", created_at=created)
        session.add(product)
        session.flush()
        for n, fields in enumerate(sim.services(), start=1):
            if fields["server"] not in servers:
                continue
            server_type = fields["server"].removeprefix("sim_").replace("fusion", "fusionpbx")
            session.add(
                Client(
                    id=1000 + n,
                    first_name="Ada",
                    last_name="Lovelace",
                    email=f"c{n}@example.com",
                    currency="CAD",
                    created_at=created,
                    updated_at=created,
                )
            )
            service = Service(
                client_id=1000 + n,
                product_id=product.id,
                server=fields["server"],
                server_type=server_type,
                domain_field=fields["domain"],
                billed_field=fields["billed"],
                trunk_id=fields.get("trunk"),
                cdr_link=fields.get("cdr_link"),
                created_at=created,
                **parse_fields(server_type, fields["domain"], fields["billed"]),
            )
            session.add(service)
            session.flush()
            ids.setdefault(fields["server"], []).append(service.id)
    return ids


def count(store, server: str | None = None) -> int:
    query = select(func.count()).select_from(Cdr)
    if server:
        query = query.where(Cdr.server == server)
    with store.transaction() as session:
        return session.scalar(query)


def expected_vodia(sim: Simulator) -> int:
    """Calls of extension 8300 or to the tenant's DIDs (the service bills 8300)."""
    calls = sim.vodia_calls["rucken.sim.example"]
    return sum(
        1 for c in calls if c.direction == "inbound" or c.extension == "8300" or c.called == "8300"
    )


def expected_fusion(sim: Simulator) -> int:
    return len(sim.fusion_calls["mcon.sim.example"])  # every extension billed; a-legs only


def lesnet_rows(sim: Simulator, days: int) -> int:
    last = (sim.start_at + timedelta(days=days)).timestamp()
    return sum(1 for _, call in sim.lesnet_calls["11330_0000"] if call.start < last)


def test_pull_twice_the_second_run_stores_nothing_new(cli, store, sim, config_file):
    add_services(store, sim)
    first = cli("-v", "pull-cdrs", config=config_file)
    assert first.exit_code == 0, first.stderr
    vodia, fusion, lesnet = expected_vodia(sim), expected_fusion(sim), lesnet_rows(sim, DAYS)
    assert count(store, "sim_vodia") == vodia > 0
    assert count(store, "sim_fusion") == fusion > 0
    assert count(store, "sim_lesnet") == lesnet > 0
    assert f"sim_lesnet: stored {lesnet}, 0 duplicates" in first.stdout

    # Again from the very start (not just the overlap): every call is a duplicate.
    since = (sim.start_at - timedelta(days=1)).isoformat()
    second = cli("-v", "pull-cdrs", "--since", since, config=config_file)
    assert second.exit_code == 0, second.stderr
    assert count(store) == vodia + fusion + lesnet
    assert f"sim_vodia: stored 0, {vodia} duplicates" in second.stdout
    assert f"sim_lesnet: stored 0, {lesnet} duplicates" in second.stdout

    with store.transaction() as session:
        marks = {(w.server, w.scope): w.watermark for w in session.scalars(select(PullWatermark))}
        runs = session.scalars(select(JobRun).where(JobRun.job == "pull-cdrs")).all()
    newest_lesnet = max(c.start for _, c in sim.lesnet_calls["11330_0000"])
    link = sim.services()[-1]["cdr_link"]
    assert marks[("sim_lesnet", f"link:{link}")] == datetime.fromtimestamp(int(newest_lesnet), UTC)
    assert len(runs) == 2 and all(r.status == "ok" for r in runs)
    assert runs[0].summary["sim_vodia"]["stored"] == vodia


def test_rows_carry_the_call_and_its_service(cli, store, sim, config_file):
    ids = add_services(store, sim, servers=("sim_vodia",))
    assert cli("pull-cdrs", config=config_file).exit_code == 0
    with store.transaction() as session:
        rows = session.scalars(select(Cdr).order_by(Cdr.start)).all()
    assert {r.service_id for r in rows} == set(ids["sim_vodia"])
    assert all(r.status is None for r in rows)
    inbound = next(r for r in rows if r.direction == "inbound")
    assert inbound.number in ("5484815577", "5197830020")
    assert json.loads(inbound.raw)["callid"] == inbound.provider_id
    answered = next(r for r in rows if r.billsec > 0)
    assert answered.answer is not None and answered.end >= answered.answer


def test_a_lesnet_file_that_grows_by_a_day_stores_only_the_new_day(cli, store, sim, config_file):
    add_services(store, sim, servers=("sim_lesnet",))
    sim.lesnet_days = DAYS - 1
    first = cli("pull-cdrs", config=config_file)
    assert first.exit_code == 0, first.stderr
    before = lesnet_rows(sim, DAYS - 1)
    assert count(store) == before
    requests_before = sum(1 for _, path in sim.requests if path.startswith("/cdr/"))
    assert requests_before == 1  # two services share the link: read once

    sim.lesnet_days = DAYS
    second = cli("-v", "pull-cdrs", config=config_file)
    assert second.exit_code == 0, second.stderr
    new_day = lesnet_rows(sim, DAYS) - before
    assert new_day > 0
    assert count(store) == before + new_day
    assert "sim_lesnet: stored " + str(new_day) in second.stdout


def test_a_refused_password_fails_that_server_only_and_never_shows_a_secret(
    cli, store, sim, config_file, monkeypatch
):
    add_services(store, sim, servers=("sim_vodia", "sim_lesnet"))
    monkeypatch.setenv("SIM_VODIA_PASSWORD", WRONG_PASSWORD)
    result = cli("-vv", "pull-cdrs", config=config_file)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("voipctl: error:")]
    assert errors == [
        "voipctl: error: sim_vodia: the credentials were refused "
        "(HTTP 401 on PUT /rest/system/session)"
    ]
    assert count(store, "sim_vodia") == 0
    assert count(store, "sim_lesnet") == lesnet_rows(sim, DAYS)
    for secret in (WRONG_PASSWORD, sim.config.vodia_password, sim.config.fusion_api_key):
        assert secret not in result.output
    with store.transaction() as session:
        run = session.scalars(select(JobRun)).one()
    assert run.status == "failed" and "sim_vodia" in run.summary["failures"][0]


def test_a_server_that_keeps_failing_is_retried_then_reported(cli, store, sim, config_file):
    add_services(store, sim, servers=("sim_vodia", "sim_lesnet"))
    sim.fail("/rest/domain/", times=10, status=503)
    result = cli("pull-cdrs", config=config_file)
    assert result.exit_code == 1
    assert "voipctl: error: sim_vodia: HTTP 503 on GET /rest/domain/" in result.stderr
    assert count(store, "sim_lesnet") > 0
    sim.fail("/cdr/", times=1, status=503)  # one 503, then the file: retried within the run
    assert cli("pull-cdrs", "--server", "sim_lesnet", config=config_file).exit_code == 0


def test_dry_run_writes_nothing_and_says_what_it_would_store(cli, store, sim, config_file):
    add_services(store, sim, servers=("sim_lesnet",))
    result = cli("pull-cdrs", "--dry-run", config=config_file)
    assert result.exit_code == 0, result.stderr
    assert f"sim_lesnet: would store {lesnet_rows(sim, DAYS)}, 0 duplicates" in result.stdout
    assert count(store) == 0
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(JobRun)) == 0
        assert session.scalar(select(func.count()).select_from(PullWatermark)) == 0


def test_unknown_server_or_service_is_a_usage_error(cli, store, sim, config_file):
    result = cli("pull-cdrs", "--server", "nope", config=config_file)
    assert result.exit_code == 2 and "no server 'nope'" in result.stderr
    assert cli("pull-cdrs", "--service", "999", config=config_file).exit_code == 2


def test_server_check_one_line_each(cli, store, sim, config_file, monkeypatch):
    add_services(store, sim, servers=("sim_lesnet",))
    ok = cli("server", "check", "sim_vodia", config=config_file)
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("sim_vodia (vodia): ok: Vodia PBX at http://127.0.0.1:")
    lesnet = cli("server", "check", "sim_lesnet", config=config_file)
    assert lesnet.exit_code == 0 and "balance 25.00" in lesnet.stdout
    assert "/cdr/11330_0000.txt: readable" in lesnet.stdout
    monkeypatch.setenv("SIM_VODIA_PASSWORD", WRONG_PASSWORD)
    bad = cli("server", "check", "sim_vodia", "sim_lesnet", config=config_file)
    assert bad.exit_code == 2  # one NAME only
    bad = cli("server", "check", "sim_vodia", config=config_file)
    assert bad.exit_code == 1
    assert bad.stdout.startswith("sim_vodia (vodia): FAIL: the credentials were refused")
    assert WRONG_PASSWORD not in bad.output


# -- the job's rules, with a scripted adapter --------------------------------------


class Scripted(ProviderAdapter):
    """Yields `calls` for each service; raises after `fail_after` records when set."""

    type = "scripted"

    def __init__(self, name, config, calls, fail_after=None):
        super().__init__(name, config)
        self.calls = calls
        self.fail_after = fail_after

    def check(self):
        return "ok"

    def fetch_cdrs(self, service: ServiceInfo, since, until):
        for n, call in enumerate(c for c in self.calls if since <= c.start < until):
            if self.fail_after is not None and n == self.fail_after:
                raise ProviderDataError(self.name, f"CDR {call.provider_id}: bad")
            yield call

    def suspend(self, service, reason):
        raise NotImplementedError

    def unsuspend(self, service):
        raise NotImplementedError


def scripted_calls(n: int, start: datetime) -> list[CallRecord]:
    return [
        CallRecord(
            provider_id=f"c{i}",
            direction="outbound",
            start=start + timedelta(minutes=i),
            billsec=i % 90,
            number="15195550100",
        )
        for i in range(n)
    ]


def test_the_watermark_moves_only_with_the_last_chunk(store, sim, config_file):
    add_services(store, sim, servers=("sim_vodia",))
    config = load_config(str(config_file))
    calls = scripted_calls(25, sim.start_at)

    def failing(name, cfg):
        return Scripted(name, cfg, calls, fail_after=12)

    report = pull_cdrs(store, config, chunk_size=5, adapter_factory=failing, until=END)
    assert report.exit_code == 1
    assert report.failures == ["sim_vodia: CDR c12: bad"]
    # The first chunk was stored; the second waited as look-ahead (is it the last?)
    # while the third was read, and the feed broke: the next run reads them again.
    assert count(store) == 5
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(PullWatermark)) == 0

    seen_chunks = []

    def hook(rows):
        seen_chunks.append(len(rows))
        for row in rows:
            row["status"] = "hooked"

    report = pull_cdrs(
        store,
        config,
        chunk_size=5,
        adapter_factory=lambda name, cfg: Scripted(name, cfg, calls),
        before_insert=hook,
        until=END,
    )
    assert report.exit_code == 0
    assert report.servers[0].stored == 20 and report.servers[0].duplicates == 5
    assert seen_chunks == [5, 5, 5, 5, 5]
    with store.transaction() as session:
        (mark,) = session.scalars(select(PullWatermark)).all()
        statuses = set(session.scalars(select(Cdr.status)))
    assert mark.watermark == calls[-1].start
    assert statuses == {None, "hooked"}  # rows already stored keep what they had


def test_a_service_without_a_cdr_link_fails_alone(cli, store, sim, config_file):
    ids = add_services(store, sim, servers=("sim_lesnet",))
    with store.transaction() as session:
        broken = session.get(Service, ids["sim_lesnet"][0])
        broken.cdr_link = None
    result = cli("pull-cdrs", config=config_file)
    assert result.exit_code == 1
    assert (
        f"voipctl: error: sim_lesnet: service {broken.id} has no CDR link "
        f"(voipctl service set {broken.id} --cdr-link URL)"
    ) in result.stderr
    # The other peer on the link was pulled.
    with store.transaction() as session:
        stored = set(session.scalars(select(Cdr.service_id)))
    assert stored == {ids["sim_lesnet"][1]}


def test_debug_output_carries_no_secret(cli, store, sim, config_file):
    add_services(store, sim, servers=("sim_vodia", "sim_fusion", "sim_lesnet"))
    result = cli("-vv", "--log-format", "json", "pull-cdrs", config=config_file)
    assert result.exit_code == 0, result.stderr
    assert '"level": "debug"' in result.stderr and "/rest/domain/" in result.stderr
    assert sim._sessions, "session auth was used"
    secrets = (*sim._sessions, sim.config.vodia_password, sim.config.fusion_api_key)
    for secret in (*secrets, sim.config.lesnet_api_key):
        assert secret not in result.output


def test_a_new_service_starts_when_it_was_added_and_since_reaches_back(
    cli, store, sim, config_file
):
    ids = add_services(store, sim, servers=("sim_lesnet",))
    with store.transaction() as session:
        for service_id in ids["sim_lesnet"]:
            session.get(Service, service_id).created_at = sim.end  # added after every call
    first = cli("-v", "pull-cdrs", config=config_file)
    assert first.exit_code == 0 and count(store) == 0
    day = (sim.start_at - timedelta(days=1)).date().isoformat()  # a date: that UTC day on
    second = cli(
        "-v", "pull-cdrs", "--since", day, "--until", sim.end.isoformat(), config=config_file
    )
    assert second.exit_code == 0, second.stderr
    assert count(store) == lesnet_rows(sim, DAYS)
    bad = cli("pull-cdrs", "--since", "2026-11-20", "--until", "2026-11-19", config=config_file)
    assert bad.exit_code == 2 and "--since must be before --until" in bad.stderr


def test_a_call_id_too_long_for_the_column_is_set_aside(store, sim, config_file):
    add_services(store, sim, servers=("sim_vodia",))
    config = load_config(str(config_file))
    long_call = CallRecord(
        provider_id="x" * 201, direction="outbound", start=sim.start_at, billsec=1, number="1"
    )
    report = pull_cdrs(
        store,
        config,
        adapter_factory=lambda name, cfg: Scripted(name, cfg, [long_call]),
        until=END,
    )
    assert report.failures == []
    # Named by a digest of its kept text ({} : the scripted record's raw), not the long id.
    assert report.set_aside == [
        f"pull-cdrs: sim_vodia: set aside service:1 {digest('{}')}: call id {'x' * 40!r}... "
        "is longer than 200 characters (voipctl pull-cdrs --retry-rejected after a fix)"
    ]
    assert report.exit_code == 1
    assert count(store) == 0


def test_progress_on_a_terminal_counts_each_server_apart_and_q_silences_it(
    cli, store, sim, config_file, monkeypatch
):
    import sys

    add_services(store, sim)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    result = cli("pull-cdrs", config=config_file)
    assert result.exit_code == 0, result.output
    last = result.stderr.split("\r")[-1]
    # Each server's own count, in the order they were read, as the summary says.
    counts = {name: count(store, name) for name in ("sim_vodia", "sim_lesnet", "sim_fusion")}
    shown = dict(
        (part.split()[0], int(part.split()[1].replace(",", "")))
        for part in last.removeprefix("pull-cdrs: ").strip().split(", ")
    )
    assert shown == counts
    assert result.stdout.startswith("pull-cdrs: ")  # the summary line, on a terminal

    quiet = cli("pull-cdrs", "-q", "--since", sim.start_at.isoformat(), config=config_file)
    assert quiet.exit_code == 0, quiet.output
    assert (quiet.stdout, quiet.stderr) == ("", "")
