"""One table of faults pushed through every HTTP adapter: each becomes ProviderUnavailable.

ConnectError, ReadTimeout and a 503 that does not go away are retried (retries = 1
here, so two attempts) and then reported with the server's name; a 503 once is
retried and the pull succeeds.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import respx

from tests.support.recorded import recorded
from voipctl.config import FusionPBXServer, LesnetServer, VodiaServer
from voipctl.errors import ProviderUnavailable
from voipctl.providers.base import ServiceInfo
from voipctl.providers.fusionpbx.adapter import FusionPBXAdapter
from voipctl.providers.lesnet.adapter import LesnetAdapter
from voipctl.providers.vodia.adapter import VodiaAdapter

BASE = "https://pbx.test"
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
FUSION_CSV = (
    '"xml_cdr_uuid","domain_name","direction","extension","caller_id_number",'
    '"caller_destination","destination_number","start_epoch","billsec","leg"\n'
)


def vodia():
    config = VodiaServer.model_validate(
        {"type": "vodia", "url": BASE, "password_env": "T_PW", "retries": 1}
    )
    service = ServiceInfo(id=1, client_id=1, server="srv", tenant="t.example", dids=("5195550100",))
    return (
        VodiaAdapter("srv", config),
        service,
        f"{BASE}/rest/domain/t.example/cdrs",
        (recorded("vodia", "cdrs__empty")),
    )


def lesnet():
    config = LesnetServer.model_validate({"type": "lesnet", "retries": 1})
    link = f"{BASE}/cdr/11330_0000.txt"
    service = ServiceInfo(
        id=1, client_id=1, server="srv", peer_id="P", dids=("12045550100",), cdr_link=link
    )
    return LesnetAdapter("srv", config), service, link, recorded("lesnet", "cdr__empty")


def fusion():
    config = FusionPBXServer.model_validate(
        {
            "type": "fusionpbx",
            "mode": "export",
            "url": BASE,
            "api_key_env": "T_KEY",
            "db_url_env": "T_DB",
            "retries": 1,
        }
    )
    service = ServiceInfo(id=1, client_id=1, server="srv", tenant="t.example", dids=("5195550100",))
    url = f"{BASE}/app/xml_cdr/xml_cdr_export.php"
    return FusionPBXAdapter("srv", config), service, url, httpx.Response(200, text=FUSION_CSV)


ADAPTERS = {"vodia": vodia, "lesnet": lesnet, "fusionpbx": fusion}
FAULTS = {
    "connect": lambda: httpx.ConnectError("refused"),
    "read-timeout": lambda: httpx.ReadTimeout("slow"),
    "503": lambda: httpx.Response(503, text="busy"),
}


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("T_PW", "pw-never-shown")
    monkeypatch.setenv("T_KEY", "k" * 40)
    monkeypatch.setenv("T_DB", "postgresql://nobody@127.0.0.1:1/unused")
    for cls in (VodiaAdapter, LesnetAdapter, FusionPBXAdapter):
        monkeypatch.setattr(cls, "backoff_s", 0.0)


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@respx.mock
def test_a_fault_that_persists_is_provider_unavailable_naming_the_server(kind, fault):
    adapter, service, url, _ok = ADAPTERS[kind]()
    route = respx.get(url__startswith=url).mock(side_effect=lambda request: _raise(fault))
    with adapter, pytest.raises(ProviderUnavailable) as err:
        list(adapter.fetch_cdrs(service, SINCE, UNTIL))
    message = str(err.value)
    assert message.startswith("srv: ") and "after 2 attempts" in message
    assert route.call_count == 2
    assert "pw-never-shown" not in message and "k" * 40 not in message


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@respx.mock
def test_a_fault_once_is_retried(kind, fault):
    adapter, service, url, ok = ADAPTERS[kind]()
    outcome = FAULTS[fault]()
    route = respx.get(url__startswith=url).mock(side_effect=[outcome, ok])
    with adapter:
        assert list(adapter.fetch_cdrs(service, SINCE, UNTIL)) == []
    assert route.call_count == 2


def _raise(fault):
    outcome = FAULTS[fault]()
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
