"""One event socket connection per FusionPBX lever action, one query and one connection
per server for a batch of read-backs (docs/providers.md, "Connections and batched
read-backs"): a real PostgreSQL for FusionPBX, the fake event socket on a real port."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from tests.fakes.esl_memcache import MemcacheFake
from tests.fakes.esl_server import FakeEslServer
from tests.support.fusionpbx_env import TENANT, db_mode_config, service
from tests.suspend.test_autosuspend import env_full, sim, sink  # noqa: F401
from voipctl.providers import adapter_for
from voipctl.providers.base import LeverState

SOFIA = "pbx01:configuration:sofia.conf"


@pytest.fixture
def pbx(fusion_db):
    fusion_db.add_domain(TENANT)
    for extension in ("2112", "2113"):
        fusion_db.add_extension(TENANT, extension)
    fusion_db.gateways = [fusion_db.add_gateway(TENANT, f"trunk{i}") for i in range(3)]
    return fusion_db


def _queries(adapter) -> list[str]:
    seen: list[str] = []
    event.listen(adapter._db(), "before_cursor_execute", lambda *a: seen.append(a[2]), named=False)
    return seen


def test_a_gateway_suspend_and_unsuspend_use_one_connection_each(pbx, monkeypatch):
    pbx.add_default_settings(method="memcache")
    cache = MemcacheFake({SOFIA: "<document/>"}, hostname="pbx01")
    gateway = pbx.gateways[0]
    with FakeEslServer(replies=cache.replies([SOFIA]), sofia=pbx.sofia()) as esl:
        fusion = adapter_for("fusion1", db_mode_config(monkeypatch, pbx.url, esl_port=esl.port))
        svc = service(gateway_uuid=gateway)
        fusion.suspend(svc, "balance below zero")
        # killgw, the sofia.conf cache (hostname, memcache delete), the read-back: one
        # connection (the four commands used to take four).
        assert esl.wait_for(4) == [
            f"api sofia profile external killgw {gateway}",
            "api hostname",
            f"api memcache delete {SOFIA}",
            f"api sofia status gateway {gateway}",
        ]
        assert esl.connections == 1
        fusion.unsuspend(svc)
        assert esl.wait_for(8)[4:] == [
            "api hostname",
            f"api memcache delete {SOFIA}",
            "api sofia profile external rescan",
            f"api sofia status gateway {gateway}",
        ]
        assert esl.connections == 2
        fusion.close()


def test_an_extensions_lever_clears_its_caches_over_one_connection(pbx, monkeypatch):
    pbx.add_default_settings(method="memcache")
    keys = [f"directory:2112@{TENANT}", f"directory:2113@{TENANT}"]
    cache = MemcacheFake({keys[0]: "<user/>", keys[1]: "<user/>"}, hostname="pbx01")
    with FakeEslServer(replies=cache.replies(keys), sofia=pbx.sofia()) as esl:
        config = db_mode_config(monkeypatch, pbx.url, esl_port=esl.port, suspend="extensions")
        fusion = adapter_for("fusion1", config)
        fusion.suspend(service(extensions=("2112", "2113")), "balance below zero")
        assert esl.wait_for(2) == [f"api memcache delete {k}" for k in keys]
        assert esl.connections == 1
        fusion.close()


def test_the_gateway_levers_of_many_services_are_read_with_one_query_and_one_connection(
    pbx, monkeypatch
):
    sofia = pbx.sofia()
    sofia.running.pop(pbx.gateways[2], None)
    with FakeEslServer(sofia=sofia) as esl:
        fusion = adapter_for("fusion1", db_mode_config(monkeypatch, pbx.url, esl_port=esl.port))
        queries = _queries(fusion)
        services = [service(id=i + 1, gateway_uuid=g) for i, g in enumerate(pbx.gateways)]
        # A fourth on the first one's gateway, and one without a gateway.
        services.append(service(id=4, gateway_uuid=pbx.gateways[0]))
        services.append(service(id=5, gateway_uuid=None))
        found = fusion.states(services)
        assert esl.connections == 1
        assert len([q for q in queries if "v_gateways" in q]) == 1
        # One status per gateway, not per service.
        assert sorted(esl.api_commands) == sorted(
            f"api sofia status gateway {g}" for g in pbx.gateways
        )
    running = "v_gateways.enabled = true, FreeSWITCH runs it (State REGED, Status UP)"
    assert {k: v for k, v in found.items() if k != 5} == {
        1: LeverState(False, running),
        2: LeverState(False, running),
        3: LeverState(False, "v_gateways.enabled = true, FreeSWITCH runs no such gateway"),
        4: LeverState(False, running),
    }
    assert str(found[5]) == (
        "fusion1: service 5 has no gateway uuid (voipctl service set 5 --gateway UUID)"
    )


@pytest.mark.parametrize("lever", ["domain", "extensions"])
def test_domain_and_extension_levers_of_many_services_are_one_query(pbx, monkeypatch, lever):
    pbx.add_domain("other.example.com")
    pbx.add_extension("other.example.com", "2112")
    fusion = adapter_for("fusion1", db_mode_config(monkeypatch, pbx.url, suspend=lever))
    queries = _queries(fusion)
    services = [
        service(id=1, extensions=("2112",)),
        service(id=2, extensions=("2112", "2113")),
        service(id=3, tenant="other.example.com", extensions=("2112",)),
        service(id=4, tenant="missing.example.com", extensions=("2112",)),
    ]
    found = fusion.states(services)
    table = "v_domains" if lever == "domain" else "v_extensions"
    assert len([q for q in queries if f"FROM {table}" in q]) == 1
    if lever == "domain":
        assert found == {
            1: LeverState(False, "v_domains.domain_enabled = true"),
            2: LeverState(False, "v_domains.domain_enabled = true"),
            3: LeverState(False, "v_domains.domain_enabled = true"),
            4: LeverState(None, "tenant missing.example.com not found in v_domains"),
        }
    else:
        assert found == {
            1: LeverState(False, "v_extensions.enabled = true for 2112"),
            2: LeverState(False, "v_extensions.enabled = true for 2112, 2113"),
            3: LeverState(False, "v_extensions.enabled = true for 2112"),
            4: LeverState(None, "extension(s) of service 4 not all in missing.example.com"),
        }


def test_autosuspend_reads_every_managed_gateway_back_in_one_batch(cli, env_full):  # noqa: F811
    env = env_full
    for client_id in (41, 42, 43):
        env.client(client_id, credit="50", first_name="Grace")
        env.fusion_service(client_id)
    before = env.esl.connections
    r = cli("autosuspend", "-v", config=env.config)
    assert r.exit_code == 0, r.output
    # Nothing to change: the only connection is the read-back of all three.
    assert env.esl.connections - before == 1
    assert len([c for c in env.esl.api_commands if c.startswith("api sofia status")]) == 3
    assert env.lever_commands() == []
