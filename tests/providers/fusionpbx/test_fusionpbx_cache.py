"""FusionPBX's caches cleared after a lever writes, as FusionPBX clears them itself:
a real PostgreSQL with v_default_settings and a fake event socket on a real port."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.fakes.esl_memcache import MemcacheFake
from tests.fakes.esl_server import FakeEslServer
from tests.support.fusionpbx_env import TENANT, db_mode_config, service
from voipctl.config import FusionPBXServer
from voipctl.errors import ProviderError
from voipctl.providers import adapter_for

SOFIA = "pbx01:configuration:sofia.conf"


@pytest.fixture(params=["boolean", "text"])
def pbx(request):
    db = request.getfixturevalue("fusion_db" if request.param == "boolean" else "fusion_db_legacy")
    db.true, db.false = (True, False) if request.param == "boolean" else ("true", "false")
    db.add_domain(TENANT)
    for extension in ("2112", "2113"):
        db.add_extension(TENANT, extension)
    db.gw = db.add_gateway(TENANT, "mcon-trunk")
    return db


def adapter(monkeypatch, pbx, esl, **overrides):
    config = db_mode_config(
        monkeypatch, pbx.url, **{"esl_port": esl.port, "timeout_s": 2, **overrides}
    )
    fusion = adapter_for("fusion1", config)
    return fusion


def test_gateway_lever_clears_the_memcached_sofia_conf(pbx, monkeypatch):
    pbx.add_default_settings(method="memcache")
    cache = MemcacheFake({SOFIA: "<document/>"}, hostname="pbx01")
    with FakeEslServer(replies=cache.replies([SOFIA]), sofia=pbx.sofia()) as esl:
        fusion = adapter(monkeypatch, pbx, esl)
        svc = service(gateway_uuid=pbx.gw)
        result = fusion.suspend(svc, "no credit")
        assert result == (
            f"gateway mcon-trunk ({pbx.gw}) disabled; FreeSWITCH: +OK gateway marked for "
            f"deletion.; FreeSWITCH runs no such gateway; memcache cleared: {SOFIA}"
        )
        assert pbx.gateway_enabled(pbx.gw) == pbx.false
        assert esl.wait_for(4) == [
            f"api sofia profile external killgw {pbx.gw}",
            "api hostname",
            f"api memcache delete {SOFIA}",
            f"api sofia status gateway {pbx.gw}",  # the read-back
        ]
        assert cache.entries == {}

        # Unsuspend: the stale entry is gone before the rescan reads sofia.conf again;
        # nothing cached any more is mod_memcache's -ERR NOT FOUND, which is fine.
        result = fusion.unsuspend(svc)
        assert "+OK scan complete; FreeSWITCH runs it (State REGED, Status UP)" in result
        assert result.endswith(f"; memcache cleared: {SOFIA}")
        assert esl.wait_for(8)[4:] == [
            "api hostname",
            f"api memcache delete {SOFIA}",
            "api sofia profile external rescan",
            f"api sofia status gateway {pbx.gw}",
        ]
        assert pbx.gateway_enabled(pbx.gw) == pbx.true
        fusion.close()


def test_the_older_key_format_by_switchname(pbx, monkeypatch):
    pbx.add_default_settings(method="memcache")
    key = "configuration:sofia.conf:fs-node-1"
    cache = MemcacheFake({key: "<document/>"}, hostname="pbx01", switchname="fs-node-1")
    with FakeEslServer(replies=cache.replies([key]), sofia=pbx.sofia()) as esl:
        fusion = adapter(
            monkeypatch, pbx, esl, sofia_cache_key="configuration:sofia.conf:{switchname}"
        )
        fusion.suspend(service(gateway_uuid=pbx.gw), "no credit")
        assert esl.wait_for(4)[1:3] == ["api switchname", f"api memcache delete {key}"]
        assert cache.entries == {}
        fusion.close()


def test_extensions_lever_clears_their_directory_entries(pbx, monkeypatch):
    pbx.add_default_settings(method="memcache")
    keys = [f"directory:2112@{TENANT}", f"directory:2113@{TENANT}"]
    cache = MemcacheFake({keys[0]: "<user/>"}, hostname="pbx01")  # 2113 not cached
    with FakeEslServer(replies=cache.replies(keys)) as esl:
        fusion = adapter(monkeypatch, pbx, esl, suspend="extensions")
        result = fusion.suspend(service(), "no credit")
        assert result == (
            f"extensions 2112, 2113 of {TENANT} disabled (v_extensions.enabled); "
            f"memcache cleared: {keys[0]}, {keys[1]}"
        )
        assert esl.wait_for(2) == [f"api memcache delete {k}" for k in keys]
        assert cache.deleted == keys and cache.entries == {}
        assert pbx.extensions_enabled(TENANT)["2112"] == pbx.false
        fusion.close()


def test_file_cache_entries_are_removed_from_cache_dir(pbx, monkeypatch, tmp_path):
    pbx.add_default_settings()  # FusionPBX's default: cache/method file
    sofia = tmp_path / "pbx01.configuration.sofia.conf"
    entries = [sofia, tmp_path / f"{sofia.name}.tmp", tmp_path / f"directory.2112@{TENANT}"]
    for path in entries:
        path.write_text("<document/>")
    kept = tmp_path / "other.entry"
    kept.write_text("x")
    cache = MemcacheFake({}, hostname="pbx01")
    with FakeEslServer(replies=cache.replies([]), sofia=pbx.sofia()) as esl:
        fusion = adapter(monkeypatch, pbx, esl, cache_dir=str(tmp_path))
        result = fusion.suspend(service(gateway_uuid=pbx.gw), "no credit")
        assert result.endswith(f"; file cache cleared: {SOFIA}")
        assert [p.exists() for p in entries] == [False, False, True] and kept.exists()
        fusion.close()
        fusion = adapter(monkeypatch, pbx, esl, cache_dir=str(tmp_path), suspend="extensions")
        fusion.suspend(service(extensions=("2112",)), "no credit")
        assert not entries[2].exists() and kept.exists()
        fusion.close()


def test_a_file_cache_voipctl_cannot_reach_is_refused_before_any_write(pbx, monkeypatch):
    pbx.add_default_settings(location="/var/cache/fusionpbx")
    with FakeEslServer() as esl:
        fusion = adapter(monkeypatch, pbx, esl)
        with pytest.raises(ProviderError) as caught:
            fusion.suspend(service(gateway_uuid=pbx.gw), "no credit")
        assert str(caught.value) == (
            "fusion1: servers.fusion1.cache_dir: FusionPBX caches in files at "
            "/var/cache/fusionpbx (cache/location); set cache_dir to that directory as "
            "voipctl sees it (same host or a mount), or switch FusionPBX's cache/method to "
            "memcache"
        )
        with pytest.raises(ProviderError, match=r"servers\.fusion1\.cache_dir: FusionPBX"):
            fusion.check()
        fusion.close()
        assert pbx.gateway_enabled(pbx.gw) == pbx.true
        assert esl.api_commands == []


def test_gateways_in_xml_files_are_refused(pbx, monkeypatch):
    pbx.add_default_settings(method="memcache", sip_profiles="/etc/freeswitch/sip_profiles")
    with FakeEslServer() as esl:
        fusion = adapter(monkeypatch, pbx, esl)
        with pytest.raises(ProviderError) as caught:
            fusion.suspend(service(gateway_uuid=pbx.gw), "no credit")
        assert str(caught.value) == (
            'fusion1: servers.fusion1: suspend = "gateway" is refused: FusionPBX writes its '
            "gateways as XML files in /etc/freeswitch/sip_profiles (switch/sip_profiles in "
            "v_default_settings; save_gateway_xml()), which voipctl cannot write, so a rescan "
            'would bring a suspended gateway back; disable that setting or use suspend = "domain"'
        )
        assert pbx.gateway_enabled(pbx.gw) == pbx.true
        assert esl.api_commands == []
        fusion.close()


def test_the_domain_lever_needs_no_cache(pbx, monkeypatch):
    pbx.add_default_settings()  # file cache, no cache_dir: not needed for v_domains
    with FakeEslServer() as esl:
        fusion = adapter(monkeypatch, pbx, esl, suspend="domain")
        assert fusion.suspend(service(), "no credit").endswith("(v_domains.domain_enabled)")
        fusion.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sofia_cache_key", "{hostname}:{extension}"),
        ("sofia_cache_key", "configuration sofia"),
        ("directory_cache_key", "directory:{ext}@{user_context}"),
    ],
)
def test_a_cache_key_template_is_checked(field, value):
    with pytest.raises(ValidationError, match="a key without spaces"):
        FusionPBXServer(type="fusionpbx", db_url_env="X", **{field: value})
