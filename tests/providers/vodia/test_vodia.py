"""Vodia adapter against recorded payloads (respx): auth, paging, payload rules, levers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from sqlalchemy import select

from tests.pull.test_pull_cdrs import END, add_services, count, expected_vodia
from tests.support.recorded import recorded, recorded_json
from tests.support.rejects import strict
from tests.support.sim_env import start_sim
from voipctl.config import VodiaServer, load_config
from voipctl.errors import ProviderAuthError, ProviderDataError, ProviderError, ProviderUnavailable
from voipctl.providers.base import ServiceInfo
from voipctl.providers.vodia import adapter as vodia
from voipctl.providers.vodia.adapter import VodiaAdapter
from voipctl.sim import SimConfig, Simulator
from voipctl.store.models import Cdr, PullWatermark, Service

BASE = "https://vodia.test"
TENANT = "rucken.wat1.ictvoip.ca"
CDRS = f"{BASE}/rest/domain/{TENANT}/cdrs"
PASSWORD = "s3cret-Vodia-pw"
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 31, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setenv("T_VODIA_PASSWORD", PASSWORD)
    monkeypatch.setattr(VodiaAdapter, "backoff_s", 0.0)
    # Pages of 2 so that the recorded pages exercise paging.
    monkeypatch.setattr(vodia, "PAGE_SIZE", 2)


def make(auth="basic", **extra) -> VodiaAdapter:
    config = VodiaServer.model_validate(
        {
            "type": "vodia",
            "url": BASE,
            "auth": auth,
            "username": "admin",
            "password_env": "T_VODIA_PASSWORD",
            "retries": 1,
            "timezone": "America/Toronto",
            **extra,
        }
    )
    return VodiaAdapter("vodia1", config)


def service(**kw) -> ServiceInfo:
    fields = {
        "id": 7,
        "client_id": 42,
        "server": "vodia1",
        "tenant": TENANT,
        "main_did": "5484815577",
        "dids": ("5484815577", "5197830020"),
        "extensions": ("8300",),
        "trunk_id": "106",
    }
    fields.update(kw)
    return ServiceInfo(**fields)


def pull(adapter, svc=None, since=SINCE, until=UNTIL):
    return strict(adapter, adapter.fetch_cdrs(svc or service(), since, until))


@respx.mock
def test_basic_auth_pages_until_a_short_page():
    route = respx.get(CDRS).mock(
        side_effect=[recorded("vodia", "cdrs__page1"), recorded("vodia", "cdrs__page2")]
    )
    records = pull(make())
    assert [r.provider_id for r in records] == [
        "1490779371@10.254.43.9",
        "1490779388@10.254.43.9",
        "1490779402@10.254.43.9",
    ]
    assert [r.direction for r in records] == ["outbound", "inbound", "outbound"]
    pages = [call.request.url.params["page"] for call in route.calls]
    assert pages == ["1", "2"]
    assert route.calls[0].request.headers["authorization"].startswith("Basic ")
    first = records[0]
    assert first.number == "15195550100" and first.caller == "8300"
    assert first.extension == "8300"
    # billsec = ceil(end - connect) = ceil(95.74)
    assert first.billsec == 96
    assert first.start == datetime.fromtimestamp(1795690800.444, UTC)
    assert first.raw["domain"] == TENANT
    unanswered = records[1]
    assert unanswered.billsec == 0 and unanswered.answer is None
    assert unanswered.number == "+15197830020"
    assert unanswered.hangup_cause == "no_answer"


@respx.mock
def test_the_query_asks_a_day_wider_in_the_servers_zone():
    route = respx.get(CDRS).mock(return_value=recorded("vodia", "cdrs__empty"))
    # 03:30 UTC on Nov 20 is still Nov 19 in Toronto: ask from the 18th.
    since = datetime(2026, 11, 20, 3, 30, tzinfo=UTC)
    until = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert pull(make(), since=since, until=until) == []
    params = route.calls[0].request.url.params
    assert (params["start"], params["end"], params["size"]) == ("20261118", "20261122", "2")
    assert route.call_count == 1  # an empty page is the last page


@respx.mock
def test_calls_are_kept_by_their_epoch_not_the_day():
    respx.get(CDRS).mock(
        side_effect=[recorded("vodia", "cdrs__page1"), recorded("vodia", "cdrs__page2")]
    )
    since = datetime.fromtimestamp(1795690900, UTC)
    until = datetime.fromtimestamp(1795692000, UTC)
    assert [r.provider_id for r in pull(make(), since=since, until=until)] == [
        "1490779388@10.254.43.9"
    ]


@respx.mock
def test_direction_rules_first_match_wins():
    respx.get(CDRS).mock(
        side_effect=[recorded("vodia", "cdrs__mixed"), recorded("vodia", "cdrs__empty")]
    )
    svc = service(extensions=("8300",), inbound_search="Rucken Sales")
    records = {r.provider_id.split("@")[0]: r for r in pull(make(), svc)}
    # 30001: no trunk, a billed extension leg -> local; 30002: trunk, only 8301's leg,
    # to no DID -> not ours; 30003: to a DID -> inbound; 30004: matches the inbound
    # search string -> inbound; 30005: to an unknown number, 8302's leg -> not ours;
    # 30006: `from` names 8300 but only 8302 took part: `from` decides nothing.
    assert {k: r.direction for k, r in records.items()} == {
        "30001": "local",
        "30003": "inbound",
        "30004": "inbound",
    }
    assert records["30001"].extension == "8300"
    assert records["30003"].billsec == 1  # ceil(0.1)
    assert records["30003"].number == "5484815577"
    assert records["30003"].extension == "8300"
    assert records["30004"].extension is None  # 8301's leg is not the service's


@respx.mock
def test_an_empty_billed_field_is_the_whole_tenant():
    respx.get(CDRS).mock(
        side_effect=[recorded("vodia", "cdrs__mixed"), recorded("vodia", "cdrs__empty")]
    )
    records = {
        r.provider_id.split("@")[0]: r.direction for r in pull(make(), service(extensions=()))
    }
    assert records == {
        "30001": "local",
        "30002": "outbound",
        "30003": "inbound",
        "30005": "outbound",
        "30004": "outbound",
        "30006": "outbound",
    }


@respx.mock
def test_session_auth_logs_in_and_sends_the_cookie():
    login = respx.put(f"{BASE}/rest/system/session").mock(
        return_value=recorded("vodia", "session__ok")
    )
    route = respx.get(CDRS).mock(return_value=recorded("vodia", "cdrs__page2"))
    assert len(pull(make("session"))) == 1
    body = json.loads(login.calls[0].request.content)
    digest = hashlib.md5(PASSWORD.encode()).hexdigest()  # noqa: S324 - Vodia's scheme
    assert body == {"name": "auth", "value": f"admin {digest}"}
    sent = route.calls[0].request.headers
    assert sent["cookie"] == "session=a3f0c9d2e1b84f5c9e0d7a6b5c4d3e2f"
    assert "authorization" not in sent


@respx.mock
def test_session_expired_logs_in_again_once():
    login = respx.put(f"{BASE}/rest/system/session").mock(
        return_value=recorded("vodia", "session__ok")
    )
    respx.get(CDRS).mock(
        side_effect=[
            recorded("vodia", "cdrs__page1"),
            recorded("vodia", "cdrs__401"),
            recorded("vodia", "cdrs__page2"),
        ]
    )
    assert len(pull(make("session"))) == 3
    assert login.call_count == 2


@respx.mock
def test_a_refused_login_is_a_credentials_error_tried_once():
    login = respx.put(f"{BASE}/rest/system/session").mock(
        return_value=recorded("vodia", "session__401")
    )
    with pytest.raises(ProviderAuthError) as err:
        pull(make("session"))
    assert str(err.value).startswith("vodia1: the credentials were refused")
    assert PASSWORD not in str(err.value)
    assert login.call_count == 1


@respx.mock
def test_basic_auth_401_is_refused_credentials_without_retry():
    route = respx.get(CDRS).mock(return_value=recorded("vodia", "cdrs__401"))
    with pytest.raises(ProviderAuthError, match="^vodia1: the credentials were refused"):
        pull(make())
    assert route.call_count == 1


@respx.mock
def test_503_then_success():
    route = respx.get(CDRS).mock(
        side_effect=[recorded("vodia", "cdrs__503"), recorded("vodia", "cdrs__page2")]
    )
    assert len(pull(make())) == 1
    assert route.call_count == 2


@respx.mock
def test_timeouts_exhaust_the_retries():
    route = respx.get(CDRS).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(ProviderUnavailable, match="^vodia1: timed out on GET /rest/domain/"):
        pull(make())
    assert route.call_count == 2  # retries = 1


@pytest.mark.parametrize("scenario", ["cdrs__malformed", "cdrs__not_a_list"])
@respx.mock
def test_a_payload_that_does_not_parse_names_the_server(scenario):
    respx.get(CDRS).mock(return_value=recorded("vodia", scenario))
    with pytest.raises(ProviderDataError, match="^vodia1: .*GET /rest/domain/"):
        pull(make())


@respx.mock
def test_a_bad_item_names_the_record():
    respx.get(CDRS).mock(return_value=recorded("vodia", "cdrs__bad_item"))
    with pytest.raises(ProviderDataError, match="^vodia1: CDR 40001@10.0.0.5: missing 'start'"):
        pull(make())


@respx.mock
def test_a_page_that_repeats_stops_the_pull():
    respx.get(CDRS).mock(return_value=recorded("vodia", "cdrs__page1"))
    with pytest.raises(ProviderDataError, match="page 2 repeats page 1"):
        pull(make())


TRUNK = f"{BASE}/rest/domain/{TENANT}/edit_trunk/106"


def _trunk_reads(*names: str):
    """GET edit_trunk answers, one recorded file per read in turn."""
    return respx.get(TRUNK).mock(side_effect=[recorded("vodia", n) for n in names])


@respx.mock
def test_trunk_lever_disables_and_enables_the_trunk_and_reads_it_back():
    route = respx.put(TRUNK).mock(return_value=recorded("vodia", "edit_trunk__ok"))
    reads = _trunk_reads("trunk_settings__disabled", "trunk_settings__enabled")
    answer = make().suspend(service(), "credit exhausted")
    assert json.loads(route.calls[0].request.content) == {"dis": "true"}
    assert answer.startswith("trunk 106 disabled: HTTP 200")
    assert answer.endswith("; reads dis = true")
    assert make().unsuspend(service()).endswith("; reads dis = false")
    assert json.loads(route.calls[1].request.content) == {"dis": "false"}
    assert reads.call_count == 2


@respx.mock
def test_a_trunk_put_the_pbx_did_not_apply_is_a_failure():
    respx.put(TRUNK).mock(return_value=recorded("vodia", "edit_trunk__ok"))
    _trunk_reads("trunk_settings__enabled")
    with pytest.raises(ProviderError) as caught:
        make().suspend(service(), "credit exhausted")
    assert str(caught.value) == (
        "vodia1: trunk 106: the PUT answered HTTP 200, but the trunk reads dis = 'false'; "
        "recorded as before, the next run acts again"
    )


@respx.mock
def test_state_reads_the_trunks_dis_setting():
    from voipctl.providers.base import LeverState

    _trunk_reads("trunk_settings__enabled", "trunk_settings__disabled")
    assert make().state(service()) == LeverState(False, "trunk 106: dis = false")
    assert make().state(service()) == LeverState(True, "trunk 106: dis = true")
    respx.get(TRUNK).mock(return_value=httpx.Response(200, json={"dis": ""}))
    assert make().state(service()) == LeverState(False, "trunk 106: dis = (unset)")
    respx.get(TRUNK).mock(return_value=httpx.Response(200, json={"name": "x"}))
    assert make().state(service()) == LeverState(None, "trunk 106: no dis setting in the answer")
    with pytest.raises(ProviderError, match="no trunk id"):
        make().state(service(trunk_id=None))
    # The extension lever has no documented read: unknown, nothing asked.
    assert make(suspend="extension").state(service()) == LeverState(
        None, "vodia cannot read the extension lever back"
    )


@respx.mock
def test_extension_lever_disables_each_billed_extension():
    route = respx.put(url__regex=rf"{BASE}/rest/domain/{TENANT}/user_settings/\d+").mock(
        return_value=recorded("vodia", "user_settings__ok")
    )
    answer = make(suspend="extension").suspend(service(extensions=("8300", "8301")), "")
    assert [c.request.url.path.rsplit("/", 1)[1] for c in route.calls] == ["8300", "8301"]
    assert all(json.loads(c.request.content) == {"disabled": "true"} for c in route.calls)
    assert "extension 8301 disabled" in answer


@respx.mock
def test_a_lever_that_fails_raises():
    respx.put(f"{BASE}/rest/domain/{TENANT}/edit_trunk/106").mock(
        return_value=httpx.Response(500, text="boom")
    )
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        make().suspend(service(), "")
    with pytest.raises(ProviderError, match="no trunk id"):
        make().suspend(service(trunk_id=None), "")


@respx.mock
def test_check_reports_the_tenants():
    respx.get(f"{BASE}/rest/system/domaininfo").mock(
        return_value=recorded("vodia", "domaininfo__ok")
    )
    assert "2 tenants" in make().check()
    assert len(recorded_json("vodia", "domaininfo__ok")) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"callid": ""}, "CDR : empty callid"),
        ({"callid": None}, "callid None is not a number or text"),
        ({"start": "253402300800"}, "CDR 20753: time '253402300800' is not epoch seconds"),
        ({"end": 9.2e18}, "is not epoch seconds"),
    ],
)
@respx.mock
def test_ids_and_times_that_cannot_be_stored_are_data_errors(change, message):
    item = {**recorded_json("vodia", "cdrs__page2")[0], "callid": "20753", **change}
    respx.get(CDRS).mock(return_value=httpx.Response(200, json=[item]))
    with pytest.raises(ProviderDataError, match="^vodia1: CDR") as err:
        pull(make())
    assert message in str(err.value)


@respx.mock
def test_a_server_keyed_by_id_reads_the_id():
    respx.get(CDRS).mock(return_value=recorded("vodia", "cdrs__id_keyed"))
    records = pull(make(cdr_format={"columns": {"id": "id"}}))
    assert [r.provider_id for r in records] == ["20753"]
    assert records[0].direction == "outbound" and records[0].billsec == 96


@respx.mock
def test_a_record_without_the_dedupe_key_is_a_per_record_error():
    item = {k: v for k, v in recorded_json("vodia", "cdrs__page2")[0].items() if k != "callid"}
    respx.get(CDRS).mock(return_value=httpx.Response(200, json=[item]))
    with pytest.raises(ProviderDataError, match=r"^vodia1: CDR \?: missing 'callid'$"):
        pull(make())


def test_an_unknown_cdr_field_is_refused_by_the_config(tmp_path):
    from voipctl.errors import ConfigError

    path = tmp_path / "v.toml"
    path.write_text(
        '[servers.v]\ntype = "vodia"\nurl = "https://v.example"\n'
        '[servers.v.cdr_format.columns]\ncall = "callid"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "servers.v.cdr_format.columns" in str(err.value)
    assert "unknown field 'call'" in str(err.value)


# -- the dedupe key is fixed per server: end to end on the simulator ----------------


@pytest.fixture
def sim(monkeypatch) -> Iterator[Simulator]:
    yield from start_sim(monkeypatch, SimConfig(seed=11, days=2, calls_per_day=20, end=END))


def _vodia_config(sim, tmp_path, key=None):
    text = sim.config_snippet()
    if key is not None:
        text += f'\n[servers.sim_vodia.cdr_format.columns]\nid = "{key}"\n'
    path = tmp_path / f"voipctl-{key}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_callid_records_pull_and_a_changed_dedupe_key_is_refused(cli, store, sim, tmp_path):
    add_services(store, sim, servers=("sim_vodia",))
    since = (sim.start_at - timedelta(days=1)).isoformat()
    first = cli("pull-cdrs", "--since", since, config=_vodia_config(sim, tmp_path))
    assert first.exit_code == 0, first.stderr
    stored = count(store, "sim_vodia")
    assert stored == expected_vodia(sim) > 0
    with store.transaction() as session:
        ids = session.scalars(select(Cdr.provider_id).where(Cdr.server == "sim_vodia")).all()
        scopes = session.scalars(
            select(PullWatermark.scope).where(PullWatermark.scope.startswith("dedupe-key:"))
        ).all()
    assert all(i.endswith("@10.254.43.9") for i in ids)
    assert scopes == ["dedupe-key:callid"]

    changed = cli("pull-cdrs", "--since", since, config=_vodia_config(sim, tmp_path, "domain"))
    assert changed.exit_code == 1
    assert changed.stderr.strip().splitlines()[-1] == (
        "voipctl: error: sim_vodia: servers.sim_vodia.cdr_format.columns.id is 'domain' "
        "but this server's calls are stored by 'callid'; a new dedupe key would store "
        "the overlap window again: set it back to 'callid'"
    )
    assert count(store, "sim_vodia") == stored

    again = cli("-v", "pull-cdrs", "--since", since, config=_vodia_config(sim, tmp_path, "callid"))
    assert again.exit_code == 0, again.stderr
    assert f"sim_vodia: stored 0, {stored} duplicates" in again.stdout


def test_calls_stored_before_the_key_was_recorded_keep_the_legacy_id(cli, store, sim, tmp_path):
    ids = add_services(store, sim, servers=("sim_vodia",))
    with store.transaction() as session:
        service = session.get(Service, ids["sim_vodia"][0])
        session.add(
            Cdr(
                server="sim_vodia",
                provider_id="20753",
                service_id=service.id,
                client_id=service.client_id,
                direction="outbound",
                start=sim.start_at,
                billsec=0,
                pulled_at=sim.start_at,
            )
        )
        session.commit()
    since = (sim.start_at - timedelta(days=1)).isoformat()
    refused = cli("pull-cdrs", "--since", since, config=_vodia_config(sim, tmp_path))
    assert refused.exit_code == 1
    assert "calls are stored by 'id'; a new dedupe key" in refused.stderr
    assert count(store, "sim_vodia") == 1


@respx.mock
def test_check_names_the_server_url_without_its_credentials():
    # A url's user-info is masked in the check line (docs/install.md, "Files and secrets").
    respx.get(f"{BASE}/rest/system/domaininfo").mock(
        return_value=recorded("vodia", "domaininfo__ok")
    )
    adapter = make(url=f"https://admin:{PASSWORD}@vodia.test")
    assert adapter.check() == "Vodia PBX at https://***@vodia.test: basic auth accepted, 2 tenants"
