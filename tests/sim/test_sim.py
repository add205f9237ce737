"""The provider simulator: determinism, levers recorded, and `voipctl simulate` serving."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest

from voipctl.config import VodiaServer
from voipctl.jobs.common import service_info
from voipctl.providers.vodia.adapter import VodiaAdapter
from voipctl.sim import SimConfig, Simulator
from voipctl.store.models import Service

END = datetime(2026, 11, 20, tzinfo=UTC)


def test_same_seed_same_calls_and_a_mix_of_kinds():
    a = Simulator(SimConfig(seed=3, end=END))
    b = Simulator(SimConfig(seed=3, end=END))
    assert a.vodia_calls == b.vodia_calls and a.lesnet_file("11330_0000") == b.lesnet_file(
        "11330_0000"
    )
    calls = [c for calls in a.fusion_calls.values() for c in calls]
    assert {c.direction for c in calls} == {"inbound", "outbound", "local"}
    assert any(c.answer is None for c in calls) and any(c.billsec > 0 for c in calls)
    dialled = [c.called for c in calls if c.direction == "outbound"]
    assert any(n.startswith("011") for n in dialled)  # international
    assert any(len(n) == 10 for n in dialled)  # NANP
    assert all(a.start_at.timestamp() <= c.start < END.timestamp() for c in calls)


def test_vodia_levers_are_recorded(monkeypatch):
    monkeypatch.setattr(VodiaAdapter, "backoff_s", 0.0)
    with Simulator(SimConfig(end=END)) as sim:
        monkeypatch.setenv("SIM_VODIA_PASSWORD", sim.config.vodia_password)
        config = VodiaServer.model_validate(
            {
                "type": "vodia",
                "url": sim.base_url,
                "auth": "session",
                "password_env": "SIM_VODIA_PASSWORD",
            }
        )
        service = service_info(
            Service(
                id=1,
                client_id=1,
                server="v",
                tenant="rucken.sim.example",
                trunk_id="106",
                dids=[],
                extensions=["8300"],
            )
        )
        with VodiaAdapter("v", config) as adapter:
            adapter.suspend(service, "test")
            assert sim.vodia_state["rucken.sim.example/trunk/106"] == {"dis": "true"}
            sim.expire_sessions()  # the next call logs in again
            adapter.unsuspend(service)
        assert sim.vodia_state["rucken.sim.example/trunk/106"] == {"dis": "false"}
        logins = [p for m, p in sim.requests if p == "/rest/system/session"]
        assert len(logins) == 2


def test_voipctl_simulate_serves_until_stopped(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from voipctl.cli import main; sys.argv[0] = 'voipctl'; main()",
            "simulate",
            "--port",
            "0",
            "--days",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("provider simulator at http://127.0.0.1:")
        url = first.split()[3]
        text = httpx.get(f"{url}/cdr/11330_0000.txt", timeout=10).text
        assert text.startswith("date,src,dst,duration,peer,did\n")
        denied = httpx.get(f"{url}/app/xml_cdr/xml_cdr_export.php?key=wrong", timeout=10)
        assert denied.text == "access denied"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_slow_answer_times_out_and_the_retry_gets_the_file(monkeypatch):
    from voipctl.config import LesnetServer
    from voipctl.errors import ProviderUnavailable
    from voipctl.providers.base import ServiceInfo
    from voipctl.providers.lesnet.adapter import LesnetAdapter

    monkeypatch.setattr(LesnetAdapter, "backoff_s", 0.0)
    with Simulator(SimConfig(end=END, days=1)) as sim:
        link = sim.services()[-1]["cdr_link"]
        service = ServiceInfo(
            id=1,
            client_id=1,
            server="les",
            peer_id="A1B2C3D4E5F60",
            dids=("12045550199",),
            cdr_link=link,
        )
        config = LesnetServer.model_validate({"type": "lesnet", "timeout_s": 0.3, "retries": 1})
        sim.delay("/cdr/", seconds=1.0, times=1)
        with LesnetAdapter("les", config) as adapter:
            records = list(adapter.fetch_cdrs(service, sim.start_at, END))
        assert records and all(r.service_id == 1 for r in records)
        assert [p for _, p in sim.requests].count("/cdr/11330_0000.txt") == 2
        sim.delay("/cdr/", seconds=1.0, times=2)
        with LesnetAdapter("les", config) as adapter, pytest.raises(ProviderUnavailable):
            list(adapter.fetch_cdrs(service, sim.start_at, END))
