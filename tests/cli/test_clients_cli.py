"""Clients, services, credit, balance and invoices through the command line, on both databases."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from voipctl.store.models import Invoice, LedgerEntry, Product, Service

CONFIG = """
[billing]
currency = "CAD"

[servers.fusion1]
type = "fusionpbx"
db_url_env = "TEST_FUSION1_DB_URL"

[servers.vodia1]
type = "vodia"
url = "https://vodia.example.com"

[servers.lesnet]
type = "lesnet"
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_FUSION1_DB_URL", "postgresql://fusion@127.0.0.1/fusionpbx")
    path = tmp_path / "voipctl-test.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def vc(cli, config):
    """voipctl with the test configuration: vc("balance", "42")."""

    def invoke(*args):
        return cli(*args, config=config)

    return invoke


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def as_json(result):
    return json.loads(ok(result).stdout)


@pytest.fixture
def client42(vc):
    ok(vc("product", "add", "Canada Metered"))
    ok(
        vc(
            "client",
            "add",
            "42",
            "--first-name",
            "Ann",
            "--last-name",
            "Lee",
            "--email",
            "ann@example.com",
            "--timezone",
            "America/Toronto",
        )
    )
    return 42


FUSION = ("--domain", "mcon.wat7.ictvoip.ca | 5192229000", "--billed", "2112 | 2113")


def add_service(vc, server, *args):
    """service add for client 42 on product "Canada Metered"."""
    return vc(
        "service", "add", "--client", "42", "--product", "Canada Metered", "--server", server, *args
    )


def add_fusion_service(vc, *extra):
    return add_service(vc, "fusion1", *FUSION, *extra)


# --- credit ----------------------------------------------------------------------------------


def test_credit_add_twice_with_one_reference_is_taken_once(vc, client42, store):
    first = ok(vc("credit", "add", "42", "10.00", "--reference", "T1"))
    assert "recorded" in first.stdout and "already" not in first.stdout
    second = ok(vc("credit", "add", "42", "10.00", "--reference", "T1"))
    assert "reference T1 was already recorded for client 42" in second.stdout
    assert "nothing written" in second.stdout
    assert as_json(vc("balance", "42", "--format", "json"))["credit"] == "10.0000"
    with store.transaction() as session:
        assert session.scalar(select(func.count(LedgerEntry.id))) == 1


def test_same_reference_other_amount_is_refused_and_writes_nothing(vc, client42, store):
    ok(vc("credit", "add", "42", "10.00", "--reference", "T1"))
    refused = vc("credit", "add", "42", "11.00", "--reference", "T1")
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (
        "voipctl: error: reference 'T1' is already recorded for client 42 with amount 10.00, "
        "not 11.00; nothing was written"
    )
    assert as_json(vc("balance", "42", "--format", "json"))["credit"] == "10.0000"


def test_credit_add_without_reference_gets_a_unique_one(vc, client42):
    a = as_json(vc("credit", "add", "42", "5", "--format", "json"))
    b = as_json(vc("credit", "add", "42", "5", "--format", "json"))
    assert a["reference"] != b["reference"]
    assert a["id"] != b["id"] and a["already_recorded"] is False
    assert b["credit"] == "10.0000"


def test_credit_add_json_prints_the_entry_with_its_id(vc, client42):
    doc = as_json(vc("credit", "add", "42", "12.34", "--reference", "P-9", "--format", "json"))
    assert doc["id"] >= 1
    assert doc["amount"] == "12.34"
    assert doc["kind"] == "topup"
    again = vc("credit", "add", "42", "12.34", "--reference", "P-9", "--format", "json")
    assert json.loads(ok(again).stdout)["already_recorded"] is True
    assert "already recorded" in again.stderr


@pytest.mark.parametrize("amount", ["0", "-1", "abc", "1.0000000001", "NaN"])
def test_credit_add_refuses_amounts_that_cannot_be_a_top_up(vc, client42, amount):
    result = vc("credit", "add", "42", amount)
    assert result.exit_code == 2
    assert "amount" in result.stderr


def test_negative_adjustment_is_typed_as_is(vc, client42):
    ok(vc("credit", "add", "42", "10.00", "--reference", "T1"))
    result = ok(vc("credit", "adjust", "42", "-5.00", "--note", "duplicate top-up"))
    assert "adjustment of -5.00 recorded for client 42" in result.stdout
    assert as_json(vc("balance", "42", "--format", "json"))["credit"] == "5.0000"
    ok(vc("credit", "adjust", "42", "--note", "-x: odd note", "-.5"))
    assert as_json(vc("balance", "42", "--format", "json"))["credit"] == "4.5000"


def test_misspelt_option_is_still_refused_on_adjust(vc, client42):
    result = vc("credit", "adjust", "42", "-5.00", "--notes", "x")
    assert result.exit_code == 2
    assert "No such option '--notes'" in result.stderr
    assert "Did you mean '--note'?" in result.stderr
    result = vc("credit", "adjust", "42", "-5.00", "-x")
    assert result.exit_code == 2 and "No such option '-x'" in result.stderr


def test_adjust_needs_a_note(vc, client42):
    result = vc("credit", "adjust", "42", "-5.00")
    assert result.exit_code == 2
    assert "--note" in result.stderr


def test_misspelt_option_is_refused_elsewhere_too(vc, client42):
    result = vc("credit", "add", "42", "5", "--referense", "x")
    assert result.exit_code == 2
    assert "No such option" in result.stderr


# --- balance and invoices --------------------------------------------------------------------


def test_balance_json_has_the_exact_strings_of_cli_md(vc, client42):
    ok(vc("client", "set", "42", "--currency", "CAD"))
    ok(vc("credit", "add", "42", "12.34", "--reference", "T1"))
    doc = as_json(vc("balance", "42", "--format", "json"))
    assert {k: doc[k] for k in ("client_id", "credit", "owing", "currency")} == {
        "client_id": 42,
        "credit": "12.3400",
        "owing": "0.00",
        "currency": "CAD",
    }
    assert doc["available"] == "12.3400"


def test_extra_decimals_of_credit_are_kept(vc, client42):
    ok(vc("credit", "adjust", "42", "0.015250", "--note", "rounding test"))
    assert as_json(vc("balance", "42", "--format", "json"))["credit"] == "0.01525"


def test_an_unpaid_invoice_is_owing_until_paid(vc, client42):
    ok(vc("invoice", "add", "42", "3.50", "--number", "1001"))
    assert as_json(vc("balance", "42", "--format", "json"))["owing"] == "3.50"
    listed = as_json(vc("invoice", "list", "--client", "42", "--unpaid", "--format", "json"))
    assert [(i["number"], i["amount"], i["owing"]) for i in listed] == [("1001", "3.50", True)]
    ok(vc("invoice", "pay", "1001"))
    assert as_json(vc("balance", "42", "--format", "json"))["owing"] == "0.00"
    assert as_json(vc("invoice", "list", "--unpaid", "--format", "json")) == []
    again = ok(vc("invoice", "pay", "1001"))
    assert "already paid" in again.stderr


def test_an_invoice_due_later_is_not_owing_yet(vc, client42):
    later = (date.today() + timedelta(days=10)).isoformat()
    earlier = (date.today() - timedelta(days=1)).isoformat()
    ok(vc("invoice", "add", "42", "7.00", "--number", "F1", "--due", later))
    assert as_json(vc("balance", "42", "--format", "json"))["owing"] == "0.00"
    ok(vc("invoice", "add", "42", "2.25", "--number", "P1", "--due", earlier))
    assert as_json(vc("balance", "42", "--format", "json"))["owing"] == "2.25"


def test_invoice_add_is_idempotent_by_number(vc, client42, store):
    doc = as_json(vc("invoice", "add", "42", "3.50", "--number", "1001", "--format", "json"))
    assert doc["id"] >= 1 and doc["status"] == "unpaid"
    again = ok(vc("invoice", "add", "42", "3.50", "--number", "1001"))
    assert "already recorded" in again.stderr
    refused = vc("invoice", "add", "42", "4.00", "--number", "1001")
    assert refused.exit_code == 1
    assert "nothing was written" in refused.stderr
    with store.transaction() as session:
        assert session.scalar(select(func.count(Invoice.id))) == 1
        assert session.scalar(select(Invoice.amount)) == Decimal("3.50")


def test_unknown_invoice_and_bad_due_date_are_usage_errors(vc, client42):
    result = vc("invoice", "pay", "nope")
    assert result.exit_code == 2 and "no invoice 'nope'" in result.stderr
    result = vc("invoice", "add", "42", "1", "--due", "31/12/2026")
    assert result.exit_code == 2


# --- clients ---------------------------------------------------------------------------------


def test_unknown_client_is_a_clear_usage_error(vc, client42):
    for args in (
        ("balance", "99"),
        ("credit", "add", "99", "5"),
        ("credit", "adjust", "99", "-5", "--note", "x"),
        ("client", "show", "99"),
        ("invoice", "add", "99", "1"),
    ):
        result = vc(*args)
        assert result.exit_code == 2, args
        assert result.stderr.strip() == (
            "voipctl: error: no client 99 (add it with `voipctl client add 99 ...`)"
        )


def test_client_show_json_has_the_keys_of_cli_md(vc, client42):
    ok(add_fusion_service(vc))
    ok(vc("credit", "add", "42", "10", "--reference", "T1"))
    ok(vc("client", "set", "42", "--low-balance-threshold", "5", "--has-voip-service"))
    doc = as_json(vc("client", "show", "42", "--format", "json"))
    assert doc["credit"] == "10.0000"
    assert doc["owing"] == "0.00"
    assert doc["low_balance_threshold"] == "5.00"
    assert doc["has_voip_service"] is True
    assert doc["voip_suspended"] == "none"
    assert doc["manual_voip_suspend"] is False
    assert doc["currency"] == "CAD"  # from [billing] currency
    (svc,) = doc["services"]
    assert {k: svc[k] for k in ("server", "product", "suspended")} == {
        "server": "fusion1",
        "product": "Canada Metered",
        "suspended": False,
    }
    assert isinstance(svc["id"], int)


def test_client_add_prints_the_client_with_its_id(vc):
    doc = as_json(
        vc(
            "client",
            "add",
            "7",
            "--first-name",
            "Bo",
            "--last-name",
            "Ng",
            "--email",
            "bo@example.com",
            "--company",
            "Ng Ltd",
            "--currency",
            "usd",
            "--credit-limit",
            "20",
            "--format",
            "json",
        )
    )
    assert doc["id"] == 7
    assert doc["currency"] == "USD"
    assert doc["credit_limit"] == "20.00"
    assert doc["low_balance_threshold"] is None
    assert doc["timezone"] == "UTC"
    again = vc("client", "add", "7", "--first-name", "B", "--last-name", "N", "--email", "b@x.io")
    assert again.exit_code == 2 and "client 7 already exists" in again.stderr


def test_client_set_changes_and_clears_fields(vc, client42):
    doc = as_json(
        vc(
            "client",
            "set",
            "42",
            "--low-balance-threshold",
            "5.00",
            "--voip-suspended",
            "yes",
            "--manual-voip-suspend",
            "yes",
            "--format",
            "json",
        )
    )
    assert doc["low_balance_threshold"] == "5.00"
    assert doc["voip_suspended"] == "yes" and doc["manual_voip_suspend"] is True
    doc = as_json(vc("client", "set", "42", "--low-balance-threshold", "none", "--format", "json"))
    assert doc["low_balance_threshold"] is None
    assert doc["voip_suspended"] == "yes"  # untouched


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--timezone", "Mars/Olympus"), "time zone 'Mars/Olympus' is not an IANA name"),
        (("--timezone", "../../etc/passwd"), "is not an IANA name"),
        (("--credit-limit", "-5"), "credit limit: must not be negative"),
        (("--credit-limit", "ten"), "'ten' is not a number"),
        (("--low-balance-threshold", "1e3x"), "is not a number"),
        (("--email", "not-an-address"), "is not an address"),
        (("--currency", "dollars"), "is not a 3-letter ISO code"),
        (("--voip-suspended", "maybe"), "'maybe' is not one of"),
        ((), "nothing to change"),
    ],
)
def test_client_set_refuses_bad_values_with_exit_2(vc, client42, args, message):
    result = vc("client", "set", "42", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_client_list_filters(vc, client42, store):
    ok(vc("client", "add", "43", "--first-name", "C", "--last-name", "D", "--email", "c@d.io"))
    ok(vc("client", "add", "44", "--first-name", "E", "--last-name", "F", "--email", "e@f.io"))
    ok(vc("client", "set", "42", "--low-balance-threshold", "5"))
    ok(vc("credit", "add", "42", "4.99"))
    ok(vc("client", "set", "43", "--low-balance-threshold", "5"))
    ok(vc("credit", "add", "43", "5.01"))
    ok(vc("invoice", "add", "44", "1.00"))
    ok(add_fusion_service(vc))
    with store.transaction() as session:
        session.execute(update(Service).values(suspended=True, suspended_at=datetime.now(UTC)))

    def ids(*flags):
        return [row["id"] for row in as_json(vc("client", "list", *flags, "--format", "json"))]

    assert ids() == [42, 43, 44]
    assert ids("--below-threshold") == [42]
    assert ids("--owing") == [44]
    assert ids("--suspended") == [42]
    assert ids("--suspended", "--owing") == []
    table = ok(vc("client", "list")).stdout
    assert "4.9900" in table and "Ann Lee" in table
    csv_out = ok(vc("client", "list", "--format", "csv")).stdout.splitlines()
    assert csv_out[0].startswith("id,name,")
    assert len(csv_out) == 4


# --- services --------------------------------------------------------------------------------


def test_fusionpbx_service_shows_tenant_main_did_and_both_extensions(vc, client42):
    doc = as_json(add_fusion_service(vc, "--format", "json"))
    assert doc["id"] >= 1
    assert doc["server"] == "fusion1" and doc["server_type"] == "fusionpbx"
    assert doc["tenant"] == "mcon.wat7.ictvoip.ca"
    assert doc["main_did"] == "5192229000"
    assert doc["extensions"] == ["2112", "2113"]
    table = ok(vc("service", "show", str(doc["id"]))).stdout
    assert "mcon.wat7.ictvoip.ca" in table
    assert "5192229000" in table
    assert "2112 | 2113" in table
    listed = ok(vc("service", "list", "--client", "42")).stdout
    assert "mcon.wat7.ictvoip.ca" in listed and "2112 | 2113" in listed


def test_vodia_and_lesnet_services(vc, client42):
    vodia = as_json(
        add_service(
            vc,
            "vodia1",
            "--domain",
            "rucken.wat1.ictvoip.ca | 5484815577 | 5197830020 | 8300",
            "--billed",
            "8300",
            "--trunk",
            "12",
            "--first-name",
            "Rucken",
            "--format",
            "json",
        )
    )
    assert vodia["dids"] == ["5484815577", "5197830020", "8300"]
    assert vodia["extensions"] == ["8300"] and vodia["trunk"] == "12"
    les = as_json(
        add_service(
            vc,
            "lesnet",
            "--domain",
            "D4E3CD2BFC791|12046664021",
            "--billed",
            "12046664021",
            "--cdr-link",
            "https://example.com/cdr.csv",
            "--format",
            "json",
        )
    )
    assert les["peer_id"] == "D4E3CD2BFC791" and les["main_did"] == "12046664021"
    assert les["cdr_link"] == "https://example.com/cdr.csv"


def test_malformed_field_is_refused_with_the_expected_form(vc, client42):
    result = add_service(vc, "fusion1", "--domain", "mcon.wat7.ictvoip.ca 5192229000")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "voipctl: error: FusionPBX domain field 'mcon.wat7.ictvoip.ca 5192229000' does not "
        'parse (1 part(s), not 2): expected "tenant | main DID", '
        'e.g. "mcon.wat7.ictvoip.ca | 5192229000"'
    )
    assert as_json(vc("service", "list", "--format", "json")) == []


def test_unknown_server_is_named_with_the_configured_ones(vc, client42):
    result = add_service(vc, "fusion9", *FUSION)
    assert result.exit_code == 2
    assert "--server fusion9: no such server in" in result.stderr
    assert "(servers: fusion1, lesnet, vodia1)" in result.stderr


def test_options_of_another_server_type_and_bad_uuid_are_refused(vc, client42):
    result = add_fusion_service(vc, "--trunk", "5")
    assert result.exit_code == 2 and "--trunk is for vodia servers, not fusionpbx" in result.stderr
    result = add_fusion_service(vc, "--gateway", "not-a-uuid")
    assert result.exit_code == 2 and "--gateway: 'not-a-uuid' is not a UUID" in result.stderr
    doc = as_json(
        add_fusion_service(
            vc, "--gateway", "9D1F0B6A-3C5E-4D2B-8A61-0F7E2B1C4D55", "--format", "json"
        )
    )
    assert doc["gateway"] == "9d1f0b6a-3c5e-4d2b-8a61-0f7e2b1c4d55"


def test_unknown_product_is_a_usage_error(vc, client42):
    result = vc(
        "service", "add", "--client", "42", "--product", "Nope", "--server", "fusion1", *FUSION
    )
    assert result.exit_code == 2
    assert "no product 'Nope' (products: Canada Metered)" in result.stderr


def test_two_services_billing_the_same_extension_are_refused(vc, client42):
    ok(add_fusion_service(vc))
    domain = ("--domain", "mcon.wat7.ictvoip.ca|5192229000")
    result = add_service(vc, "fusion1", *domain, "--billed", "2113|2114")
    assert result.exit_code == 2
    assert "already bills 2113 of mcon.wat7.ictvoip.ca" in result.stderr
    ok(add_service(vc, "fusion1", *domain, "--billed", "2114"))


GATEWAY = "9d1f0b6a-3c5e-4d2b-8a61-0f7e2b1c4d55"


def test_two_services_on_one_gateway_are_refused(vc, client42):
    """Suspending one would cut the other off: one lever, one service (docs/billing.md)."""
    first = as_json(add_fusion_service(vc, "--gateway", GATEWAY, "--format", "json"))
    domain = ("--domain", "mcon.wat7.ictvoip.ca|5192229000")
    # Different extensions (allowed for billing), the same gateway: refused.
    result = add_service(vc, "fusion1", *domain, "--billed", "2114", "--gateway", GATEWAY.upper())
    assert result.exit_code == 2
    assert result.stderr == (
        f"voipctl: error: service {first['id']} (client 42) is already suspended through "
        f"gateway {GATEWAY} on server fusion1: one lever cannot serve two services "
        '(suspend = "gateway")\n'
    )
    other = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
    second = as_json(add_service(vc, "fusion1", *domain, "--billed", "2114", "--gateway", other,
                                 "--format", "json"))  # fmt: skip
    # service set cannot move a service onto another's lever either.
    result = vc("service", "set", str(second["id"]), "--gateway", GATEWAY)
    assert result.exit_code == 2 and "is already suspended through gateway" in result.stderr
    # Once the first service is removed, its gateway is free.
    ok(vc("service", "remove", str(first["id"])))
    ok(vc("service", "set", str(second["id"]), "--gateway", GATEWAY))


def test_two_services_on_one_vodia_trunk_are_refused(vc, client42):
    domain = ("--domain", "rucken.wat1.ictvoip.ca | 5484815577")
    first = as_json(add_service(vc, "vodia1", *domain, "--billed", "8300", "--trunk", "12",
                                "--format", "json"))  # fmt: skip
    result = add_service(vc, "vodia1", *domain, "--billed", "8301", "--trunk", "12")
    assert result.exit_code == 2
    assert result.stderr == (
        f"voipctl: error: service {first['id']} (client 42) is already suspended through "
        "trunk 12 of rucken.wat1.ictvoip.ca on server vodia1: one lever cannot serve two "
        'services (suspend = "trunk")\n'
    )
    ok(add_service(vc, "vodia1", *domain, "--billed", "8301", "--trunk", "13"))


def test_service_set_reparses_and_remove_ends_the_service(vc, client42):
    sid = str(as_json(add_fusion_service(vc, "--format", "json"))["id"])
    doc = as_json(vc("service", "set", sid, "--billed", "2112|2113|2114", "--format", "json"))
    assert doc["extensions"] == ["2112", "2113", "2114"]
    assert doc["tenant"] == "mcon.wat7.ictvoip.ca"
    bad = vc("service", "set", sid, "--domain", "only-a-tenant")
    assert bad.exit_code == 2 and 'expected "tenant | main DID"' in bad.stderr
    assert as_json(vc("service", "show", sid, "--format", "json"))["extensions"] == [
        "2112",
        "2113",
        "2114",
    ]
    assert "service " + sid + " removed" in ok(vc("service", "remove", sid)).stdout
    assert "already removed" in ok(vc("service", "remove", sid)).stdout
    assert as_json(vc("service", "list", "--format", "json")) == []
    ended = as_json(vc("service", "list", "--all", "--format", "json"))
    assert [s["active"] for s in ended] == [False]
    assert vc("service", "show", "999").exit_code == 2


def test_a_service_its_suspend_lever_cannot_reach_is_warned_about(vc, client42):
    result = ok(add_fusion_service(vc, "--format", "json"))
    sid = json.loads(result.stdout)["id"]
    assert result.stderr.strip() == (
        f"voipctl: warning: server fusion1 suspends by gateway, and service {sid} has none: "
        f"add it with `voipctl service set {sid} --gateway UUID`"
    )
    fixed = ok(vc("service", "set", str(sid), "--gateway", "9d1f0b6a-3c5e-4d2b-8a61-0f7e2b1c4d55"))
    assert fixed.stderr == ""


def test_currency_cannot_change_once_money_is_recorded(vc, client42):
    ok(vc("client", "set", "42", "--currency", "USD"))
    ok(vc("credit", "add", "42", "1"))
    result = vc("client", "set", "42", "--currency", "EUR")
    assert result.exit_code == 2
    assert "already has ledger entries or invoices in USD" in result.stderr


@pytest.mark.parametrize("big", ["99999999999999999999", "9223372036854775808", "0"])
def test_ids_out_of_range_are_not_found_not_database_errors(vc, client42, big):
    result = vc("balance", big)
    assert result.exit_code == 2 and f"no client {big}" in result.stderr
    result = vc("service", "show", big)
    assert result.exit_code == 2 and f"no service {big}" in result.stderr


# --- currency: a client is billed only from a deck in its own currency -----------------------


def test_a_service_on_a_deck_in_another_currency_is_refused(vc, client42, store):
    ok(vc("product", "add", "US Deck", "--currency", "USD"))
    result = vc(
        "service", "add", "--client", "42", "--product", "US Deck", "--server", "fusion1", *FUSION
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "voipctl: error: client 42 pays in CAD but product 'US Deck' is priced in USD: "
        "use a product whose deck is in CAD"
    )
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Service)) == 0


def test_moving_a_service_to_a_deck_in_another_currency_is_refused(vc, client42, store):
    sid = str(as_json(add_fusion_service(vc, "--format", "json"))["id"])
    ok(vc("product", "add", "Euro Deck", "--currency", "eur"))
    result = vc("service", "set", sid, "--product", "Euro Deck")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "voipctl: error: client 42 pays in CAD but product 'Euro Deck' is priced in EUR: "
        "use a product whose deck is in CAD"
    )
    assert as_json(vc("service", "show", sid, "--format", "json"))["product"] == "Canada Metered"


def test_a_product_without_a_currency_takes_the_configurations(vc, client42, store):
    # products.currency is NULL for products made before it existed: [billing] currency (CAD).
    with store.transaction() as session:
        session.execute(update(Product).values(currency=None))
    ok(add_fusion_service(vc))


# --- services that overlap ------------------------------------------------------------------

TENANT = "mcon.wat7.ictvoip.ca"


def _added_id(result) -> int:
    return as_json(result)["id"]


def _refused(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr == f"voipctl: error: {message}\n"


def _fusion(vc, tenant: str, billed: str):
    return add_service(vc, "fusion1", "--domain", f"{tenant} | 5192229000", "--billed", billed,
                       "--format", "json")  # fmt: skip


def test_a_tenant_is_one_tenant_whatever_its_case(vc, client42, store):
    first = _added_id(_fusion(vc, TENANT, "2112 | 2113"))
    _refused(
        _fusion(vc, "MCON.Wat7.ictvoip.ca", "2113 | 2114"),
        f"service {first} (client 42) already bills 2113 of {TENANT} on server fusion1: "
        "calls would be billed twice",
    )
    assert len(as_json(vc("service", "list", "--format", "json"))) == 1
    ok(_fusion(vc, "MCON.Wat7.ictvoip.ca", "2114"))  # other extensions: no overlap


@pytest.mark.parametrize(
    ("first_billed", "second_billed", "says"),
    [
        (
            "2112 | 2113",
            "",
            "already bills 2112, 2113 of mcon.wat7.ictvoip.ca, and this service would bill "
            "the whole tenant MCON.WAT7.ICTVOIP.CA",
        ),
        (
            "",
            "2112",
            "already bills the whole tenant mcon.wat7.ictvoip.ca, and this service would bill "
            "2112 of it",
        ),
        (
            "",
            "",
            "already bills the whole tenant mcon.wat7.ictvoip.ca, and this service would bill "
            "it whole too",
        ),
    ],
)
def test_a_whole_tenant_conflict_says_which_service_bills_what(
    vc, client42, first_billed, second_billed, says
):
    first = _added_id(_fusion(vc, TENANT, first_billed))
    _refused(
        _fusion(vc, TENANT.upper(), second_billed),
        f"service {first} (client 42) {says} on server fusion1: calls would be billed twice",
    )


def _lesnet(vc, domain: str, *extra):
    return add_service(vc, "lesnet", "--domain", domain, "--format", "json", *extra)


@pytest.mark.parametrize("typed", ["12045550123", "+12045550123", "2045550123"])
def test_a_lesnet_did_billed_by_another_service_is_refused_in_any_form(vc, client42, typed):
    first = _added_id(_lesnet(vc, "D4E3CD2BFC791 | 12045550123"))
    same = "" if typed == "12045550123" else f" (the same number as {typed})"
    _refused(
        _lesnet(vc, f"AB12CD34EF567 | {typed}"),
        f"service {first} (client 42) already bills DID 12045550123{same} on server lesnet: "
        "calls would be billed twice",
    )
    # The billed DID counts too.
    _refused(
        _lesnet(vc, "AB12CD34EF567 | 12045550999", "--billed", typed),
        f"service {first} (client 42) already bills DID 12045550123{same} on server lesnet: "
        "calls would be billed twice",
    )


def test_a_lesnet_peer_billed_by_another_service_is_refused(vc, client42):
    first = _added_id(_lesnet(vc, "D4E3CD2BFC791 | 12045550123"))
    _refused(
        _lesnet(vc, "d4e3cd2bfc791 | 12045550999"),
        f"service {first} (client 42) already bills LES.NET peer D4E3CD2BFC791 on server "
        "lesnet: calls would be billed twice",
    )


def test_service_set_into_another_services_claim_is_refused(vc, client42):
    first = _added_id(_lesnet(vc, "D4E3CD2BFC791 | 12045550123"))
    second = _added_id(_lesnet(vc, "AB12CD34EF567 | 12045550999"))
    result = vc("service", "set", str(second), "--domain", "AB12CD34EF567 | 2045550123")
    _refused(
        result,
        f"service {first} (client 42) already bills DID 12045550123 (the same number as "
        "2045550123) on server lesnet: calls would be billed twice",
    )
    shown = as_json(vc("service", "show", str(second), "--format", "json"))
    assert shown["main_did"] == "12045550999"  # nothing changed


def test_a_removed_service_no_longer_claims_its_numbers(vc, client42):
    first = _added_id(_lesnet(vc, "D4E3CD2BFC791 | 12045550123"))
    ok(vc("service", "remove", str(first)))
    ok(_lesnet(vc, "D4E3CD2BFC791 | +12045550123"))
