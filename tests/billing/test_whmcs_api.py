"""The WHMCS API client against the fake WHMCS server: errors, retries, paging, PHP serialize."""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from tests import support
from tests.fakes.whmcs_env import write_config
from tests.fakes.whmcs_server import php_unserialize
from voipctl import catalog
from voipctl.billing.whmcs import WhmcsBackend
from voipctl.billing.whmcs_api import (
    WhmcsApi,
    WhmcsOutcomeUnknown,
    encode_customfields,
    php_serialize,
    records,
)
from voipctl.config import Config, WhmcsConfig, load_config
from voipctl.errors import BillingBackendError, DataError


@pytest.fixture
def api(whmcs_config, whmcs):
    client = WhmcsApi(load_config(str(whmcs_config)).whmcs, backoff_s=0.01)
    yield client
    client.close()


def _add_local_client(store, client_id: int) -> None:
    with store.transaction() as session:
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


# --- the answers of WHMCS's API reference, read with respx ------------------------------------
# tests/fixtures/whmcs/*__docs_example.json are the pages' "Example Response JSON"; their
# sources are listed in tests/fixtures/whmcs/SOURCES.md.

FIXTURES = support.FIXTURES / "whmcs"
RESPX_URL = "https://billing.example.com/includes/api.php"


def _docs_example(action: str) -> dict:
    return json.loads((FIXTURES / f"{action.lower()}__docs_example.json").read_text())


@pytest.fixture
def respx_backend(monkeypatch):
    monkeypatch.setenv("WHMCS_T_ID", "ident-1234")
    monkeypatch.setenv("WHMCS_T_SECRET", "secret-1234")
    config = WhmcsConfig(
        url="https://billing.example.com", identifier_env="WHMCS_T_ID", secret_env="WHMCS_T_SECRET"
    )
    api = WhmcsApi(config, retries=0)
    yield WhmcsBackend(Config().model_copy(update={"whmcs": config}), api=api)
    api.close()


def _route(answers: dict[str, dict]) -> tuple[respx.MockRouter, list[dict[str, str]]]:
    """Answer each action with its canned body; record every request's form."""
    seen: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        seen.append(form)
        return httpx.Response(200, json=answers[form["action"]])

    router = respx.mock(assert_all_called=False)
    router.post(RESPX_URL).mock(side_effect=answer)
    return router, seen


def test_owing_of_the_docs_examples_is_the_getinvoice_balance(respx_backend):
    # GetInvoices' example lists invoice 1, Unpaid, due 2016-01-08, total 15.95; GetInvoice's
    # example gives its balance 15.95 (nothing paid yet).
    router, seen = _route(
        {"GetInvoices": _docs_example("GetInvoices"), "GetInvoice": _docs_example("GetInvoice")}
    )
    with router:
        assert respx_backend.owing(None, 1, today=date(2016, 1, 8)) == Decimal("15.95")
    assert [(f["action"], f.get("invoiceid")) for f in seen] == [
        ("GetInvoices", None),
        ("GetInvoice", "1"),
    ]


def test_a_partly_paid_invoice_owes_its_balance_not_its_total(respx_backend):
    # The docs' GetInvoice example with 10.00 of its 15.95 paid: balance 5.95.
    invoice = {**_docs_example("GetInvoice"), "balance": "5.95"}
    router, _ = _route({"GetInvoices": _docs_example("GetInvoices"), "GetInvoice": invoice})
    with router:
        assert respx_backend.owing(None, 1, today=date(2016, 1, 8)) == Decimal("5.95")


def test_an_invoice_not_due_yet_is_not_read_again(respx_backend):
    router, seen = _route({"GetInvoices": _docs_example("GetInvoices")})
    with router:
        assert respx_backend.owing(None, 1, today=date(2016, 1, 7)) == Decimal(0)
    assert [f["action"] for f in seen] == ["GetInvoices"]


@pytest.mark.parametrize(
    ("balance", "message"),
    [
        (None, "WHMCS GetInvoice for client 1: invoice 1: no balance in the answer"),
        ("n/a", "WHMCS GetInvoice for client 1: invoice 1: balance: 'n/a' is not a number"),
    ],
)
def test_a_getinvoice_answer_without_a_usable_balance_is_a_data_error(
    respx_backend, balance, message
):
    invoice = {k: v for k, v in _docs_example("GetInvoice").items() if k != "balance"}
    if balance is not None:
        invoice["balance"] = balance
    router, _ = _route({"GetInvoices": _docs_example("GetInvoices"), "GetInvoice": invoice})
    with router, pytest.raises(DataError) as caught:
        respx_backend.owing(None, 1, today=date(2016, 1, 8))
    assert str(caught.value) == message


def test_getcredits_flattened_shape_of_the_docs_example_is_read():
    body = _docs_example("GetCredits")
    assert records(body, "credits", "credit") == [
        {
            "id": "1",
            "date": "2016-01-01",
            "description": "This is a sample credit record",
            "amount": "10.00",
            "relid": "0",
        },
        {
            "id": "2",
            "date": "2016-01-01",
            "description": "Credit Applied to Invoice #1",
            "amount": "-10.00",
            "relid": "0",
        },
    ]


def test_getcredits_nested_shape_is_read_the_same():
    # The shape of the other listings' examples (`invoices.invoice[]`), with GetCredits' keys.
    flat = records(_docs_example("GetCredits"), "credits", "credit")
    nested = {
        "result": "success",
        "totalresults": "2",
        "clientid": "1",
        "credits": {"credit": flat},
    }
    assert records(nested, "credits", "credit") == flat


@pytest.mark.parametrize("shape", ["flat", "nested"])
def test_a_posting_is_found_in_either_getcredits_shape(respx_backend, shape):
    entry = {"id": "7", "date": "2026-01-01", "description": "VoIP usage [voipctl-usage-1-1]"}
    entry |= {"amount": "-1.00", "relid": "0"}
    if shape == "nested":
        body = {"result": "success", "credits": {"credit": [entry]}}
    else:
        body = {"result": "success"} | {f"credits[credit][0][{k}]": v for k, v in entry.items()}
    router, _ = _route({"GetCredits": body})
    with router:
        assert respx_backend._find(1, "voipctl-usage-1-1", "credit_remove") == "7"
        assert respx_backend._find(1, "voipctl-usage-1-10", "credit_remove") is None
