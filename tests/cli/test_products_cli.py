"""`voipctl product ...`: every option of docs/cli.md, the defaults of docs/rating.md §1."""

import json

import pytest
from sqlalchemy import select

from voipctl.store.models import Product


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def as_json(result):
    return json.loads(ok(result).stdout)


def test_nanp_defaults(cli):
    doc = as_json(cli("product", "add", "NANP", "--format", "json"))
    assert doc["id"] >= 1
    assert {k: doc[k] for k in doc if k not in ("id", "created_at")} == {
        "name": "NANP",
        "metered": True,
        "country_code": "1",
        "exit_code": "011",
        "national_prefix": None,
        "prepend_country_code": False,
        "nanp_10_digit": True,
        "markup_percent": "0",
        "free_minutes": 0,
        "bill_inbound": False,
        "increment": "60/60",
        "inbound_increment": "60/60",
        "max_internal_digits": 6,
        "area_code": None,
        "decimals": 4,
        "exclude": "",
        "suppress": "",
        "currency": "USD",  # the configuration's [billing] currency (default USD)
    }


def test_other_country_defaults_to_exit_00_and_no_nanp_rule(cli):
    doc = as_json(
        cli(
            "product",
            "add",
            "UK",
            "--country-code",
            "44",
            "--national-prefix",
            "0",
            "--prepend-country-code",
            "--format",
            "json",
        )
    )
    assert doc["exit_code"] == "00"
    assert doc["nanp_10_digit"] is False
    assert doc["national_prefix"] == "0" and doc["prepend_country_code"] is True


def test_every_option_is_stored(cli, store):
    doc = as_json(
        cli(
            "product",
            "add",
            "Full",
            "--unmetered",
            "--country-code",
            "1",
            "--exit-code",
            "011",
            "--no-nanp-10-digit",
            "--markup",
            "12.5",
            "--free-minutes",
            "100",
            "--bill-inbound",
            "--increment",
            "6/6",
            "--inbound-increment",
            "30",
            "--decimals",
            "5",
            "--exclude",
            "911, 1800XXXXXXX,*xx",
            "--suppress",
            "*97",
            "--max-internal-digits",
            "5",
            "--area-code",
            "519",
            "--format",
            "json",
        )
    )
    assert doc["metered"] is False and doc["nanp_10_digit"] is False
    assert doc["markup_percent"] == "12.5"
    assert doc["free_minutes"] == 100 and doc["bill_inbound"] is True
    assert doc["increment"] == "6/6" and doc["inbound_increment"] == "30/30"
    assert doc["decimals"] == 5 and doc["max_internal_digits"] == 5
    assert doc["exclude"] == "911,1800xxxxxxx,*xx" and doc["suppress"] == "*97"
    assert doc["area_code"] == "519"
    with store.transaction() as session:
        product = session.scalar(select(Product).where(Product.name == "Full"))
        assert (product.increment_a, product.increment_b) == (6, 6)
        assert str(product.markup_percent) == "12.5000"


def test_set_changes_only_what_is_given(cli):
    ok(cli("product", "add", "P", "--increment", "6/6", "--area-code", "519"))
    doc = as_json(cli("product", "set", "P", "--markup", "15", "--format", "json"))
    assert doc["markup_percent"] == "15" and doc["increment"] == "6/6"
    doc = as_json(cli("product", "set", "P", "--area-code", "none", "--format", "json"))
    assert doc["area_code"] is None
    assert as_json(cli("product", "show", "P", "--format", "json"))["markup_percent"] == "15"


def test_a_new_country_code_carries_default_exit_code_but_not_an_explicit_one(cli):
    ok(cli("product", "add", "A"))
    doc = as_json(cli("product", "set", "A", "--country-code", "44", "--format", "json"))
    assert (doc["exit_code"], doc["nanp_10_digit"]) == ("00", False)
    ok(cli("product", "add", "B", "--exit-code", "0011"))
    doc = as_json(cli("product", "set", "B", "--country-code", "61", "--format", "json"))
    assert doc["exit_code"] == "0011"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--increment", "6/0"), "is not an increment like 60/6"),
        (("--increment", "x"), "is not an increment like 60/6"),
        (("--exclude", "911,abc"), "pattern 'abc' may hold only digits"),
        (("--country-code", "0"), "country code: '0' must not start with 0"),
        (("--exit-code", "01a"), "exit code: '01a' is not 1 to 6 digits"),
        (("--area-code", "123"), "is not a NANP area code"),
        (("--markup", "-1"), "markup: must not be negative"),
        (("--markup", "1.00001"), "at most 4 decimals"),
        (("--decimals", "12"), "decimals: 12 is not between 0 and 9"),
        (("--free-minutes", "-5"), "free minutes: -5 is not between"),
        (("--prepend-country-code",), "--prepend-country-code needs --national-prefix"),
        (("--metred",), "No such option '--metred'"),
    ],
)
def test_bad_settings_are_refused_with_exit_2(cli, args, message):
    result = cli("product", "add", "Bad", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert cli("product", "list", "--format", "json").stdout.strip() == "[]"


def test_unknown_and_duplicate_products(cli):
    ok(cli("product", "add", "P"))
    result = cli("product", "add", "P")
    assert result.exit_code == 2 and "product 'P' already exists" in result.stderr
    result = cli("product", "show", "Q")
    assert result.exit_code == 2
    assert result.stderr.strip() == "voipctl: error: no product 'Q' (products: P)"
    assert cli("product", "set", "Q", "--markup", "1").exit_code == 2


def test_list_in_each_format(cli):
    ok(cli("product", "add", "B"))
    ok(cli("product", "add", "A", "--increment", "6/6"))
    assert [p["name"] for p in as_json(cli("product", "list", "--format", "json"))] == ["A", "B"]
    lines = ok(cli("product", "list", "--format", "csv")).stdout.splitlines()
    header = "id,name,metered,cc,exit,markup%,free min,increment,in incr,bill in,decimals,cur"
    assert lines[0] == header
    row = ["A", "yes", "1", "011", "0", "0", "6/6", "60/60", "no", "4", "USD"]
    assert lines[1].split(",")[1:] == row
    table = ok(cli("product", "list")).stdout
    assert "6/6" in table and "60/60" in table


def test_currency_defaults_to_the_configuration_and_is_upper_cased(cli, tmp_path):
    config = tmp_path / "cad.toml"
    config.write_text('[billing]\ncurrency = "CAD"\n')
    assert as_json(cli("product", "add", "P", "--format", "json", config=config))["currency"] == (
        "CAD"
    )
    doc = as_json(cli("product", "add", "Q", "--currency", " eur ", "--format", "json"))
    assert doc["currency"] == "EUR"
    doc = as_json(cli("product", "set", "Q", "--currency", "usd", "--format", "json"))
    assert doc["currency"] == "USD"


@pytest.mark.parametrize("bad", ["dollars", "US", "U$D", "١٢٣"])
def test_a_currency_that_is_not_three_letters_is_refused(cli, bad):
    result = cli("product", "add", "P", "--currency", bad)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"voipctl: error: currency {bad!r} is not a 3-letter ISO code like CAD"
    )
    assert cli("product", "list", "--format", "json").stdout.strip() == "[]"
