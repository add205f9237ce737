"""The adapter contract (docs/providers.md), run by every provider with its own kit
(tests/contract/kits.py): an incremental pull reads from the watermark less the
server's overlap window, the same records read twice are stored once, a 5xx is
retried and one that persists is named, every lever is confirmed (and read back by
state() where the provider can), check() answers. The 4xx, refused credentials and
429 parts are tests/contract/test_contract_http.py. A provider that cannot do something is
skipped with its kit's reason.
"""

from __future__ import annotations

import os
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy import select, update

from tests.contract.kits import (
    KITS,
    TABLE_PASSWORD,
    LeverEnv,
    asterisk_env,
    expected_calls,
    freepbx_table,
    fusion_lever_env,
    sim_env,
    stored,
)
from tests.faults.test_provider_faults import ADAPTERS, SINCE, UNTIL
from tests.faults.test_provider_faults import _env as _fault_env  # noqa: F401 - the secrets' env
from voipctl.errors import ProviderAuthError, ProviderUnavailable
from voipctl.jobs.pull_cdrs import DEDUPE_SCOPE, pull_cdrs
from voipctl.providers import adapter_for
from voipctl.store.models import PullWatermark

KINDS = sorted(KITS)
SECRETS = ("pw-never-shown", "k" * 40)


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def env(kind, request, store, tmp_path, monkeypatch):
    if kind == "asterisk":
        yield asterisk_env(store, tmp_path)
    elif kind == "asterisk-table":
        mariadb = request.getfixturevalue("mariadb")
        source = freepbx_table(mariadb, monkeypatch, request)
        yield asterisk_env(store, tmp_path, source)
    else:
        yield from sim_env(kind, store, tmp_path, monkeypatch)


def spying(starts: list):
    """adapter_for, with the start of every read the job asks for noted in `starts`."""

    def factory(name, config):
        adapter = adapter_for(name, config)
        for method in ("fetch_cdrs", "fetch_feed"):
            real = getattr(adapter, method)

            def spy(services, since, until, _real=real):
                starts.append(since)
                return _real(services, since, until)

            setattr(adapter, method, spy)
        return adapter

    return factory


def _watermarks(store, server: str) -> list:
    with store.transaction() as session:
        rows = session.scalars(select(PullWatermark).where(PullWatermark.server == server))
        # Not the row that records the server's dedupe key (its time is when it was).
        return sorted(row.watermark for row in rows if not row.scope.startswith(DEDUPE_SCOPE))


def test_an_incremental_pull_reads_from_the_watermark_less_the_overlap(env, store):
    expected = expected_calls(env, store)
    first: list = []
    report = pull_cdrs(store, env.config, server=env.server, adapter_factory=spying(first))
    assert report.exit_code == 0, report.failures
    assert stored(store, env.server) == expected > 0
    marks = _watermarks(store, env.server)
    assert marks, "the pull left no watermark"
    overlap = timedelta(minutes=env.config.server(env.server).overlap_minutes)
    assert overlap == timedelta(minutes=60)  # the documented default
    again: list = []
    report = pull_cdrs(store, env.config, server=env.server, adapter_factory=spying(again))
    assert report.exit_code == 0, report.failures
    assert sorted(again) == [mark - overlap for mark in marks]
    # The overlap window is read again and stores nothing twice.
    assert report.servers[0].stored == 0
    assert stored(store, env.server) == expected


def test_the_same_records_read_twice_are_stored_once(env, store):
    expected = expected_calls(env, store)
    since = SINCE - timedelta(days=31)
    for run in (1, 2):
        # A file feed's read position forgotten (Master.csv's): the records are read
        # again from the start, and only the dedupe key keeps them from being stored twice.
        with store.transaction() as session:
            session.execute(
                update(PullWatermark).where(PullWatermark.server == env.server).values(cursor=None)
            )
            session.commit()
        read: list = []
        report = pull_cdrs(
            store, env.config, server=env.server, since=since, adapter_factory=spying(read)
        )
        assert read and all(start == since for start in read)
        assert report.exit_code == 0, report.failures
        assert report.servers[0].stored == (expected if run == 1 else 0)
        assert report.servers[0].duplicates == (0 if run == 1 else expected)
        assert stored(store, env.server) == expected


@pytest.fixture
def lever(kind, request, store, tmp_path, monkeypatch):
    """The kit's lever, pulled for real (FusionPBX's on its own database, see kits)."""
    if kind == "fusionpbx":
        yield from fusion_lever_env(request, monkeypatch)
        return
    env = request.getfixturevalue("env")
    with adapter_for(env.server, env.config.server(env.server)) as adapter:
        secrets = env.extra.get("secrets", ())
        if env.sim:
            secrets = (env.sim.config.vodia_password, env.sim.config.lesnet_api_key)
        log = env.extra["log"] if env.kind != "vodia" else None
        yield LeverEnv(adapter, env.info(store), env.observe, secrets, log)


def test_every_lever_is_confirmed(lever):
    assert lever.observe(lever.info) == "active"
    said = lever.adapter.suspend(lever.info, "balance below zero")
    assert isinstance(said, str) and said.strip()
    assert lever.observe(lever.info) == "suspended"
    said = lever.adapter.unsuspend(lever.info)
    assert isinstance(said, str) and said.strip()
    assert lever.observe(lever.info) == "active"
    assert not any(secret in said for secret in lever.secrets)
    if lever.log is not None:
        # The command lever's placeholders filled from the service (docs/providers.md).
        info = lever.info
        assert lever.runs() == [
            ["off", info.peer_id, info.main_did],
            ["on", info.peer_id, str(info.id)],
        ]
        assert info.peer_id and info.main_did


def test_state_reads_each_lever_back(kind, lever):
    if "state" in KITS[kind].cannot:
        # Unknown, never a guess: the billing job then trusts the lever's own answer.
        assert lever.adapter.state(lever.info).suspended is None
        KITS[kind].skip_unless("state")
    assert lever.adapter.state(lever.info).suspended is False
    lever.adapter.suspend(lever.info, "balance below zero")
    assert lever.adapter.state(lever.info).suspended is True
    lever.adapter.unsuspend(lever.info)
    assert lever.adapter.state(lever.info).suspended is False


def test_check_answers_without_a_secret(lever):
    said = lever.adapter.check()
    assert isinstance(said, str) and said.strip()
    assert not any(secret in said for secret in lever.secrets)


def test_refused_credentials_are_named_without_the_secret(env, kind, store, monkeypatch):
    """The HTTP providers' refusals (401, 403) are tests/contract/test_contract_http.py's; this is
    the refusal of a database-read source."""
    KITS[kind].skip_unless("credentials")
    if "http" not in KITS[kind].cannot:
        pytest.skip(f"{kind}: an HTTP provider, refused in tests/contract/test_contract_http.py")
    url = os.environ["PBX1_CDR_DB_URL"]
    monkeypatch.setenv("PBX1_CDR_DB_URL", url.replace(TABLE_PASSWORD, "not-the-password-9"))
    report = pull_cdrs(store, env.config, server=env.server)
    assert report.exit_code == 1
    assert len(report.failures) == 1
    (line,) = report.failures
    assert line.startswith(f"{env.server}: ") and "credentials were refused" in line, line
    assert TABLE_PASSWORD not in line and "not-the-password-9" not in line
    adapter = adapter_for(env.server, env.config.server(env.server))
    with adapter, pytest.raises(ProviderAuthError) as err:
        adapter.check()
    assert str(err.value) == "pbx1: the credentials were refused (cdr database: MySQL error 1045)"
    assert "not-the-password-9" not in str(err.value)


def _pull(kind: str, answer) -> tuple[Exception | None, respx.Route]:
    adapter, service, url, _ok = ADAPTERS[kind]()
    route = respx.get(url__startswith=url).mock(side_effect=answer)
    with adapter:
        try:
            list(adapter.fetch_cdrs(service, SINCE, UNTIL))
        except ProviderUnavailable as exc:
            return exc, route
    return None, route


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@respx.mock
def test_a_5xx_once_is_retried_and_the_pull_goes_on(kind, status):
    KITS[kind].skip_unless("http")
    _adapter, _service, _url, ok = ADAPTERS[kind]()
    err, route = _pull(kind, [httpx.Response(status, text="busy"), ok])
    assert err is None
    assert route.call_count == 2


@pytest.mark.parametrize("status", [500, 503])
@respx.mock
def test_a_5xx_that_persists_is_named_without_the_secret(kind, status):
    KITS[kind].skip_unless("http")
    err, route = _pull(kind, lambda request: httpx.Response(status, text="busy"))
    assert route.call_count == 2  # retries = 1 in the kit
    assert isinstance(err, ProviderUnavailable)
    assert str(err).startswith("srv: ") and "after 2 attempts" in str(err)
    assert not any(secret in str(err) for secret in SECRETS)
