"""The WHMCS API client against the fake WHMCS server: errors, retries, paging, PHP serialize."""

from __future__ import annotations

import base64
from datetime import date, timedelta
from decimal import Decimal

import pytest

from tests.fakes.whmcs_env import write_config
from tests.fakes.whmcs_server import php_unserialize
from voipctl import catalog
from voipctl.billing.whmcs import WhmcsBackend
from voipctl.billing.whmcs_api import (
    WhmcsApi,
    WhmcsOutcomeUnknown,
    encode_customfields,
    php_serialize,
)
from voipctl.config import load_config
from voipctl.errors import BillingBackendError


@pytest.fixture
def api(whmcs_config, whmcs):
    client = WhmcsApi(load_config(str(whmcs_config)).whmcs, backoff_s=0.01)
    yield client
    client.close()


def _add_local_client(store, client_id: int) -> None:
    with store.session() as session:
        catalog.add_client(
            session,
            client_id,
            first_name="Ann",
            last_name="Lee",
            email="a@example.com",
            currency="CAD",
        )


def test_php_serialize_matches_php_byte_lengths():
    assert php_serialize({13: "yes"}) == 'a:1:{i:13;s:3:"yes";}'
    assert php_serialize({"k": "é"}) == 'a:1:{s:1:"k";s:2:"é";}'
    decoded = base64.b64decode(encode_customfields({13: "none", 14: "Zoë"})).decode()
    assert php_unserialize(decoded) == {"13": "none", "14": "Zoë"}


def test_bad_secret_exit_1_names_action_and_client_never_the_secret(
    store, cli, whmcs_config, whmcs
):
    _add_local_client(store, 42)
    whmcs.add_client(42, credit="5.00")
    whmcs.bad_secret = True
    r = cli("-vv", "balance", "42", config=whmcs_config)
    assert r.exit_code == 1
    assert "WHMCS GetClientsDetails for client 42: Authentication Failed" in r.stderr
    assert whmcs.secret not in r.output
    assert "Traceback" not in r.output


def test_ip_not_allowed_exit_1_names_action_and_client(store, cli, whmcs_config, whmcs):
    _add_local_client(store, 42)
    whmcs.add_client(42)
    whmcs.allowed_ips = {"10.0.0.1"}
    r = cli("-vv", "balance", "42", config=whmcs_config)
    assert r.exit_code == 1
    line = [ln for ln in r.stderr.splitlines() if "error" in ln][-1]
    assert "WHMCS GetClientsDetails for client 42: Invalid IP 127.0.0.1" in line
    assert "accesskey_env" in line  # says how to fix it
    assert whmcs.secret not in r.output


def test_accesskey_lets_a_restricted_ip_in(tmp_path, whmcs, monkeypatch):
    whmcs.allowed_ips = {"10.0.0.1"}
    whmcs.accesskey = "the-access-key"
    whmcs.add_client(7, credit="3.10")
    monkeypatch.setenv("WHMCS_TEST_ACCESSKEY", "the-access-key")
    path = write_config(tmp_path / "v.toml", whmcs)
    path.write_text(
        path.read_text().replace(
            'secret_env = "WHMCS_TEST_SECRET"',
            'secret_env = "WHMCS_TEST_SECRET"\naccesskey_env = "WHMCS_TEST_ACCESSKEY"',
        )
    )
    backend = WhmcsBackend(load_config(str(path)))
    assert backend.whmcs_credit(7) == Decimal("3.10")


def test_unknown_client_exit_1_names_action_and_client(store, cli, whmcs_config, whmcs):
    _add_local_client(store, 999)
    r = cli("balance", "999", config=whmcs_config)
    assert r.exit_code == 1
    assert "WHMCS GetClientsDetails for client 999: Client Not Found" in r.stderr
    assert whmcs.secret not in r.output


def test_sync_with_bad_secret_exit_1_names_the_action(cli, whmcs_config, whmcs):
    whmcs.bad_secret = True
    r = cli("-vv", "whmcs", "sync", config=whmcs_config)
    assert r.exit_code == 1
    assert "WHMCS GetClientsProducts: Authentication Failed" in r.stderr
    assert whmcs.secret not in r.output


def test_credentials_go_in_the_form_body_with_json_response_type(api, whmcs):
    whmcs.add_client(5)
    api.call("GetClientsDetails", {"clientid": 5}, client_id=5)
    action, params = whmcs.requests[-1]
    assert action == "GetClientsDetails"
    assert params["responsetype"] == "json" and params["clientid"] == "5"


def test_a_read_is_retried_after_a_5xx(api, whmcs):
    whmcs.add_client(5, credit="1.00")
    whmcs.inject("GetClientsDetails", "500")
    body = api.call("GetClientsDetails", {"clientid": 5}, client_id=5)
    assert body["client"]["credit"] == "1.00"
    assert [a for a, _ in whmcs.requests].count("GetClientsDetails") == 2


def test_a_read_that_keeps_failing_names_the_action_and_attempts(api, whmcs):
    whmcs.inject("GetClientsDetails", "500", times=5)
    with pytest.raises(BillingBackendError, match=r"GetClientsDetails for client 5: HTTP 500"):
        api.call("GetClientsDetails", {"clientid": 5}, client_id=5)


def test_a_write_is_never_resent_after_a_5xx_or_a_lost_answer(api, whmcs):
    whmcs.add_client(5, credit="10.00")
    whmcs.inject("AddCredit", "500")
    with pytest.raises(WhmcsOutcomeUnknown, match="may have been done"):
        api.call(
            "AddCredit",
            {"clientid": 5, "description": "x", "amount": "1.00", "type": "remove"},
            client_id=5,
        )
    whmcs.inject("AddCredit", "drop_after_commit")
    with pytest.raises(WhmcsOutcomeUnknown):
        api.call(
            "AddCredit",
            {"clientid": 5, "description": "y", "amount": "1.00", "type": "remove"},
            client_id=5,
        )
    assert [a for a, _ in whmcs.requests].count("AddCredit") == 2
    assert whmcs.clients[5].credit == Decimal("9.00")  # the dropped one was done once


def test_connection_refused_is_retried_then_reported(tmp_path, whmcs, monkeypatch):
    path = write_config(tmp_path / "v.toml", whmcs)
    whmcs.stop()
    api = WhmcsApi(load_config(str(path)).whmcs, backoff_s=0.01)
    with pytest.raises(BillingBackendError, match=r"GetClients: cannot connect .*2 attempts"):
        api.call("GetClients")


def test_paging_reads_until_numreturned_adds_up_to_totalresults(whmcs_config, whmcs):
    whmcs.add_client(9)
    today = date.today()
    for _ in range(230):
        whmcs.add_invoice(9, "1.01", (today - timedelta(days=1)).isoformat())
    whmcs.add_invoice(9, "50.00", (today + timedelta(days=3)).isoformat())  # not due yet
    whmcs.add_invoice(9, "7.00", today.isoformat(), status="Paid")
    backend = WhmcsBackend(load_config(str(whmcs_config)))
    assert backend.owing(None, 9) == Decimal("232.30")
    pages = [p for a, p in whmcs.requests if a == "GetInvoices"]
    assert [p["limitstart"] for p in pages] == ["0", "100", "200"]
    assert all(p["status"] == "Unpaid" and p["userid"] == "9" for p in pages)


def test_the_url_may_be_the_base_or_the_api_script(tmp_path, whmcs):
    whmcs.add_client(3, credit="1.50")
    path = write_config(tmp_path / "v.toml", whmcs)
    path.write_text(path.read_text().replace(whmcs.url, whmcs.url + "/includes/api.php"))
    assert WhmcsBackend(load_config(str(path))).whmcs_credit(3) == Decimal("1.50")
