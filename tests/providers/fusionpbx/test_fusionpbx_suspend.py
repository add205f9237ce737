"""FusionPBX suspend levers end to end: a real PostgreSQL and a fake event socket on a real port."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.fakes.esl_server import FakeEslServer
from tests.support.fusionpbx_env import OTHER, TENANT, db_mode_config, service
from voipctl.config import FusionPBXServer
from voipctl.errors import ProviderAuthError, ProviderError
from voipctl.providers import adapter_for
from voipctl.providers.base import LeverState


def config_for(monkeypatch, url: str, esl: FakeEslServer, **overrides) -> FusionPBXServer:
    return db_mode_config(monkeypatch, url, **{"esl_port": esl.port, "timeout_s": 2, **overrides})


@pytest.fixture(params=["boolean", "text"])
def pbx(request):
    """FusionPBX 5.x (boolean flags) and an older schema (text 'true'/'false')."""
    db = request.getfixturevalue("fusion_db" if request.param == "boolean" else "fusion_db_legacy")
    db.true, db.false = (True, False) if request.param == "boolean" else ("true", "false")
    db.add_domain(TENANT)
    db.add_domain(OTHER)
    for extension in ("2112", "2113", "2199"):
        db.add_extension(TENANT, extension)
    db.add_extension(OTHER, "2112")
    db.gw = db.add_gateway(TENANT, "mcon-trunk")
    db.other_gw = db.add_gateway(OTHER, "other-trunk")
    return db


def test_gateway_suspend_and_unsuspend(pbx, monkeypatch):
    sofia = pbx.sofia()
    with FakeEslServer(sofia=sofia) as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl))
        # Operators paste uuids in any case; FreeSWITCH knows the gateway lower-cased.
        svc = service(gateway_uuid=pbx.gw.upper())
        assert fusion.state(svc) == LeverState(
            False, "v_gateways.enabled = true, FreeSWITCH runs it (State REGED, Status UP)"
        )

        answer = fusion.suspend(svc, "balance below zero")
        assert pbx.gateway_enabled(pbx.gw) == pbx.false
        assert esl.wait_for(3)[1:] == [
            f"api sofia profile external killgw {pbx.gw}",
            f"api sofia status gateway {pbx.gw}",
        ]
        assert answer == (
            f"gateway mcon-trunk ({pbx.gw}) disabled; FreeSWITCH: +OK gateway marked for "
            "deletion.; FreeSWITCH runs no such gateway"
        )
        assert pbx.gw not in sofia.running and pbx.other_gw in sofia.running
        assert pbx.gateway_enabled(pbx.other_gw) == pbx.true
        assert fusion.state(svc) == LeverState(
            True, "v_gateways.enabled = false, FreeSWITCH runs no such gateway"
        )

        # FreeSWITCH's real rescan reply starts with "Reload XML [Success]": success.
        answer = fusion.unsuspend(svc)
        assert pbx.gateway_enabled(pbx.gw) == pbx.true
        assert esl.wait_for(6)[4:] == [
            "api sofia profile external rescan",
            f"api sofia status gateway {pbx.gw}",
        ]
        assert answer == (
            f"gateway mcon-trunk ({pbx.gw}) enabled; FreeSWITCH: +OK scan complete; "
            "FreeSWITCH runs it (State REGED, Status UP)"
        )
        assert sofia.running[pbx.gw] == "external"
        assert pbx.gateway_enabled(pbx.other_gw) == pbx.true


def test_refused_rescan_is_a_partial_effect_the_next_call_repairs(pbx, monkeypatch):
    sofia = pbx.sofia()
    with FakeEslServer(sofia=sofia) as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl))
        svc = service(gateway_uuid=pbx.gw)
        fusion.suspend(svc, "r")
        sofia.refuse_rescan = True
        with pytest.raises(ProviderError) as caught:
            fusion.unsuspend(svc)
        assert str(caught.value) == (
            f"fusion1: gateway mcon-trunk ({pbx.gw}): v_gateways.enabled set true, but after "
            "`-ERR cannot find config for profile external` FreeSWITCH runs no such gateway; "
            "recorded as before, the next run acts again"
        )
        # The row changed and FreeSWITCH did not: read back as it is, not suspended
        # (a restart would start the gateway), so a suspend acts again.
        assert pbx.gateway_enabled(pbx.gw) == pbx.true
        assert fusion.state(svc) == LeverState(
            False, "v_gateways.enabled = true, FreeSWITCH runs no such gateway"
        )
        sofia.refuse_rescan = False
        assert "enabled; FreeSWITCH: +OK scan complete" in fusion.unsuspend(svc)
        assert pbx.gw in sofia.running


def test_gateway_still_running_after_killgw_is_a_failure(pbx, monkeypatch):
    # killgw answered +OK, yet FreeSWITCH still shows the gateway: the read-back wins.
    replies = {f"sofia profile external killgw {pbx.gw}": "+OK gateway marked for deletion.\n"}
    with FakeEslServer(replies=replies, sofia=pbx.sofia()) as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl))
        with pytest.raises(ProviderError) as caught:
            fusion.suspend(service(gateway_uuid=pbx.gw), "r")
    assert "v_gateways.enabled set false, but after `+OK gateway marked for deletion.` " in (
        str(caught.value)
    )
    assert "FreeSWITCH runs it (State REGED, Status UP)" in str(caught.value)


def test_gateway_suspend_is_idempotent(pbx, monkeypatch):
    with FakeEslServer(sofia=pbx.sofia()) as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl))
        fusion.suspend(service(gateway_uuid=pbx.gw), "r")
        again = fusion.suspend(service(gateway_uuid=pbx.gw), "r")
        assert "gateway was not running" in again
        assert pbx.gateway_enabled(pbx.gw) == pbx.false
        assert (
            esl.wait_for(4)
            == [
                f"api sofia profile external killgw {pbx.gw}",
                f"api sofia status gateway {pbx.gw}",
            ]
            * 2
        )


def test_gateway_profile_comes_from_its_row(pbx, monkeypatch):
    other_profile = pbx.add_gateway(TENANT, "second", profile="carrier-b")
    no_profile = pbx.add_gateway(TENANT, "third", profile=None)
    with FakeEslServer(sofia=pbx.sofia()) as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl))
        fusion.suspend(service(gateway_uuid=other_profile), "r")
        fusion.unsuspend(service(gateway_uuid=other_profile))
        fusion.suspend(service(gateway_uuid=no_profile), "r")
        commands = [c for c in esl.wait_for(6) if "status gateway" not in c]
        assert commands == [
            f"api sofia profile carrier-b killgw {other_profile}",
            "api sofia profile carrier-b rescan",
            f"api sofia profile external killgw {no_profile}",
        ]


def test_unknown_gateway_changes_nothing(pbx, monkeypatch):
    unknown = str(uuid.uuid4())
    with FakeEslServer() as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl))
        with pytest.raises(ProviderError) as caught:
            fusion.suspend(service(gateway_uuid=unknown), "r")
        assert str(caught.value) == (
            f"fusion1: service 7: gateway {unknown} not found in v_gateways (0 rows matched); "
            "nothing changed"
        )
        with pytest.raises(ProviderError, match="is not a uuid"):
            fusion.suspend(service(gateway_uuid="gw-42"), "r")
        with pytest.raises(ProviderError, match="has no gateway uuid"):
            fusion.suspend(service(gateway_uuid=None), "r")
        assert esl.api_commands == []
    assert pbx.gateway_enabled(pbx.gw) == pbx.true
    assert pbx.gateway_enabled(pbx.other_gw) == pbx.true


def test_event_socket_refusal_rolls_the_gateway_back(pbx, monkeypatch):
    with FakeEslServer(password="not-the-default") as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl))
        with pytest.raises(ProviderAuthError, match="fusion1: event socket .* credentials"):
            fusion.suspend(service(gateway_uuid=pbx.gw), "r")
    assert pbx.gateway_enabled(pbx.gw) == pbx.true  # FreeSWITCH was not told: nothing recorded


def test_killgw_answer_without_ok_is_a_failure(pbx, monkeypatch):
    replies = {f"sofia profile external killgw {pbx.gw}": "Invalid Profile [external]"}
    with FakeEslServer(replies=replies) as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl))
        with pytest.raises(ProviderError, match="answered 'Invalid Profile"):
            fusion.suspend(service(gateway_uuid=pbx.gw), "r")
    assert pbx.gateway_enabled(pbx.gw) == pbx.true


def test_esl_password_from_its_variable(pbx, monkeypatch):
    monkeypatch.setenv("FUSION1_ESL_PASSWORD", "s3cret-esl")
    with FakeEslServer(password="s3cret-esl", sofia=pbx.sofia()) as esl:
        config = config_for(monkeypatch, pbx.url, esl, esl_password_env="FUSION1_ESL_PASSWORD")
        adapter_for("fusion1", config).suspend(service(gateway_uuid=pbx.gw), "r")
        assert esl.auth_failures == 0
    assert pbx.gateway_enabled(pbx.gw) == pbx.false


def test_domain_lever(pbx, monkeypatch):
    with FakeEslServer() as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl, suspend="domain"))
        assert fusion.suspend(service(), "r") == (
            f"tenant {TENANT} disabled (v_domains.domain_enabled)"
        )
        assert pbx.domain_enabled(TENANT) == pbx.false
        fusion.suspend(service(), "r")  # idempotent
        assert pbx.domain_enabled(TENANT) == pbx.false
        assert pbx.domain_enabled(OTHER) == pbx.true
        fusion.unsuspend(service())
        assert pbx.domain_enabled(TENANT) == pbx.true
        with pytest.raises(ProviderError, match="tenant nosuch.example matched 0 rows"):
            fusion.suspend(service(tenant="nosuch.example"), "r")
        assert esl.api_commands == []  # the domain lever is the database alone


def test_extensions_lever(pbx, monkeypatch):
    with FakeEslServer() as esl:
        config = config_for(monkeypatch, pbx.url, esl, suspend="extensions")
        fusion = adapter_for("fusion1", config)
        answer = fusion.suspend(service(), "r")
        assert answer == f"extensions 2112, 2113 of {TENANT} disabled (v_extensions.enabled)"
        assert pbx.extensions_enabled(TENANT) == {
            "2112": pbx.false,
            "2113": pbx.false,
            "2199": pbx.true,
        }
        assert pbx.extensions_enabled(OTHER) == {"2112": pbx.true}
        fusion.unsuspend(service())
        assert set(pbx.extensions_enabled(TENANT).values()) == {pbx.true}

        with pytest.raises(ProviderError) as caught:
            fusion.suspend(service(extensions=("2112", "2999")), "r")
        assert "extension(s) 2999 not found" in str(caught.value)
        assert set(pbx.extensions_enabled(TENANT).values()) == {pbx.true}  # nothing changed
        with pytest.raises(ProviderError, match="no billed extensions"):
            fusion.suspend(service(extensions=()), "r")


@pytest.fixture
def limited_role(fusion_db):
    """A login role with exactly the README's GRANT statements (dropped afterwards)."""
    role = f"voipctl_ro_{uuid.uuid4().hex[:8]}"
    admin = create_engine(fusion_db.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    database = make_url(fusion_db.url).database
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {role}'))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        conn.execute(
            text(f"GRANT SELECT ON v_xml_cdr, v_extensions, v_domains, v_gateways TO {role}")
        )
    url = make_url(fusion_db.url).set(username=role, password=None)
    yield role, url.render_as_string(hide_password=False), admin
    with admin.connect() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f'REVOKE ALL ON DATABASE "{database}" FROM {role}'))
        conn.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


def test_readme_grants_are_enough_and_needed(fusion_db, limited_role, monkeypatch):
    role, url, admin = limited_role
    fusion_db.add_domain(TENANT)
    gw = fusion_db.add_gateway(TENANT)
    with FakeEslServer() as esl:
        fusion = adapter_for("fusion1", config_for(monkeypatch, url, esl))
        assert "readable" in fusion.check()  # SELECT alone reads CDRs and checks
        with pytest.raises(ProviderAuthError) as caught:
            fusion.suspend(service(gateway_uuid=gw), "r")
        assert "permission denied for table v_gateways" in str(caught.value)
        assert "GRANT" in str(caught.value)
        with admin.connect() as conn:
            conn.execute(text(f"GRANT UPDATE (enabled) ON v_gateways TO {role}"))
        fusion.suspend(service(gateway_uuid=gw), "r")
    assert fusion_db.gateway_enabled(gw) is False


def test_domain_and_extension_levers_read_back(pbx, monkeypatch):
    with FakeEslServer() as esl:
        domain = adapter_for("fusion1", config_for(monkeypatch, pbx.url, esl, suspend="domain"))
        assert domain.state(service()) == LeverState(False, "v_domains.domain_enabled = true")
        domain.suspend(service(), "r")
        assert domain.state(service()) == LeverState(True, "v_domains.domain_enabled = false")
        assert domain.state(service(tenant="nosuch.example")) == LeverState(
            None, "tenant nosuch.example not found in v_domains"
        )

        config = config_for(monkeypatch, pbx.url, esl, suspend="extensions")
        extensions = adapter_for("fusion1", config)
        assert extensions.state(service()) == LeverState(
            False, "v_extensions.enabled = true for 2112, 2113"
        )
        extensions.suspend(service(), "r")
        assert extensions.state(service()) == LeverState(
            True, "v_extensions.enabled = false for every billed extension"
        )
        # One extension enabled by hand: calls go through, so not suspended.
        pbx.execute(
            "UPDATE v_extensions SET enabled = :t WHERE extension = '2113' AND domain_uuid = :d",
            t=pbx.true,
            d=pbx.domain_uuid(TENANT),
        )
        assert extensions.state(service()) == LeverState(
            False, "v_extensions.enabled = true for 2113"
        )
        assert esl.api_commands == []  # neither lever needs the event socket
