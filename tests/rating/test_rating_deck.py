"""docs/rating.md §4 through the command line: `rates import|override|list|versions|quote`."""

import json
import tracemalloc

import pytest
from sqlalchemy import func, select

from tests.support.rating_support import SPEC_DECK, make_product, write
from voipctl.store.models import DeckVersion, Rate


@pytest.fixture
def product(store):
    with store.transaction() as session:
        make_product(session, "R")
        make_product(session, "M", markup_percent=25)
        make_product(session, "B", bill_inbound=True)
    return "R"


def _rates(store):
    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(Rate))


def _versions(store):
    with store.transaction() as session:
        return list(session.scalars(select(DeckVersion).order_by(DeckVersion.id)))


def quote(cli, *args):
    result = cli("rates", "quote", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("number", "billsec", "prefix", "billable", "cost", "status"),
    [
        ("+15195550100", 61, "1519", 66, "0.0110", "rated"),
        ("+12125550100", 61, "1", 66, "0.0220", "rated"),
        ("+12125550100", 60, "1", 60, "0.0200", "rated"),
        ("+442071234567", 10, "4420", 30, "0.0150", "rated"),
        ("+442071234567", 31, "4420", 36, "0.0180", "rated"),
        ("+441611234567", 1, "44", 1, "0.1008", "rated"),
        ("+441611234567", 0, None, 0, "0.0000", "unanswered"),
        ("+4930123456", 100, "49", 150, "0.1500", "rated"),
        ("+4930123456", 151, "49", 210, "0.2100", "rated"),
        ("+33123456789", 30, None, None, None, "no_rate"),
    ],
)
def test_cost_table_of_rating_md_through_rates_quote(
    cli, product, tmp_path, number, billsec, prefix, billable, cost, status
):
    assert cli("rates", "import", "R", write(tmp_path, "d.csv", SPEC_DECK)).exit_code == 0
    doc = quote(cli, "R", number, str(billsec))
    assert doc["status"] == status
    assert doc["prefix"] == prefix
    assert doc["billable_seconds"] == billable
    assert doc["cost"] == cost


def test_quote_json_is_exactly_the_document_of_cli_md(cli, product, tmp_path):
    deck = "prefix,description,rate,increment\n1,NANP,0.02,60/6\n1519,Ontario,0.01,6/6\n"
    cli("rates", "import", "R", write(tmp_path, "d.csv", deck))
    result = cli("rates", "quote", "R", "+15195550100", "61", "--format", "json")
    assert json.loads(result.stdout) == {
        "number": "+15195550100",
        "normalized": "15195550100",
        "status": "rated",
        "prefix": "1519",
        "description": "Ontario",
        "rate": "0.01",
        "increment": "6/6",
        "billable_seconds": 66,
        "cost": "0.0110",
    }
    assert list(json.loads(result.stdout)) == [
        "number",
        "normalized",
        "status",
        "prefix",
        "description",
        "rate",
        "increment",
        "billable_seconds",
        "cost",
    ]


def test_markup_25_makes_the_1519_call_0_0138(cli, product, tmp_path):
    cli("rates", "import", "M", write(tmp_path, "d.csv", SPEC_DECK))
    doc = quote(cli, "M", "+15195550100", "61")
    assert doc["cost"] == "0.0138"
    assert doc["rate"] == "0.01"  # the deck's rate; the markup is applied in the cost


def test_override_beats_the_deck_without_markup(cli, product, tmp_path):
    cli("rates", "import", "M", write(tmp_path, "d.csv", SPEC_DECK))
    result = cli("rates", "override", "M", "1212", "0.015", "--increment", "1/1")
    assert result.exit_code == 0, result.output
    doc = quote(cli, "M", "+12125550100", "61")
    assert (doc["prefix"], doc["billable_seconds"], doc["cost"]) == ("1212", 61, "0.0153")
    # other numbers keep the deck (and the markup): 0.02 * 1.25 * 66/60 = 0.0275
    assert quote(cli, "M", "+13125550100", "61")["cost"] == "0.0275"
    assert cli("rates", "override", "M", "1212", "--remove").exit_code == 0
    assert quote(cli, "M", "+12125550100", "61")["prefix"] == "1"
    missing = cli("rates", "override", "M", "1212", "--remove")
    assert missing.exit_code == 2
    assert "no outbound override for prefix 1212" in missing.stderr


def test_override_without_increment_uses_the_products(cli, store, tmp_path):
    with store.transaction() as session:
        make_product(session, "P", increment_a=30, increment_b=6)
    cli("rates", "override", "P", "1", "0.06")
    doc = quote(cli, "P", "+15195550100", "31")
    assert (doc["increment"], doc["billable_seconds"], doc["cost"]) == ("30/6", 36, "0.0360")


def test_ictvoip_export_imports_as_it_is(cli, product, tmp_path):
    path = write(
        tmp_path,
        "ictvoip.csv",
        "Description,Prefix,RateValue,Increment\nCanada,1,0.0123456,6\nUK London,4420,0.03,30/6\n",
    )
    result = cli("rates", "import", "R", path)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    doc = quote(cli, "R", "+15195550100", "7")
    assert (doc["description"], doc["rate"], doc["increment"]) == ("Canada", "0.0123456", "6/6")
    assert doc["cost"] == "0.0025"  # 0.0123456 * 12 / 60 = 0.00246912


def test_astpp_export_imports_as_it_is_and_unknown_columns_are_named(cli, product, tmp_path):
    path = write(
        tmp_path,
        "astpp.csv",
        "Code,Destination,Connection Cost,Grace Time,Cost / Min,Initial Increment,Increment\n"
        "44,UK,0.10,0,0.05,1,1\n"
        "49,Germany,0,0,0.06,90,60\n"
        "1519,Ontario,0,0,0.01,0,6\n",
    )
    result = cli("rates", "import", "R", path)
    assert result.exit_code == 0, result.output
    assert f"{path}:1: column 'Grace Time' is not a deck column; ignored" in result.stderr
    assert quote(cli, "R", "+441611234567", "1")["cost"] == "0.1008"
    assert quote(cli, "R", "+4930123456", "151")["billable_seconds"] == 210
    # an initial increment of 0 bills in steps of the increment from the start
    assert quote(cli, "R", "+15195550100", "61")["increment"] == "6/6"


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("prefix,rate\n1,0.02\n1519,abc\n", 3, "rate 'abc' is not a number"),
        ("prefix,rate\n1,0.02\n15x9,0.01\n", 3, "prefix '15x9' is not 1 to 20 digits"),
        ("prefix,rate\n1,0.02\n\n1519,-0.01\n", 4, "rate '-0.01' is negative"),
        ("prefix,rate,increment\n1,0.02,60/0\n", 2, "increment '0' must be at least 1"),
        ("prefix,rate\n1,0.02\n1519\n", 3, "1 fields, the header has 2"),
        ("prefix,rate,direction\n1,0.02,sideways\n", 2, "direction 'sideways'"),
        ("prefix,rate\n1,0.0000000001\n", 2, "at most 9 decimals"),
        ("prefix,rate\n1,0.02\n1,0.03\n", 3, "prefix 1 (outbound) is already on line 2"),
        ("description,rate\nx,0.02\n", 1, "no prefix column"),
        ("prefix,rate,price\n1,0.02,0.03\n", 1, "columns 'rate' and 'price' both give the rate"),
        ("", 1, "the file is empty"),
        ("prefix,rate\n", 1, "no rate rows after the header"),
        ('prefix,description,rate\n1,"two\nlines",0.02\n1519,x,bad\n', 4, "rate 'bad'"),
    ],
)
def test_a_bad_row_fails_the_whole_import_and_leaves_the_old_version(
    cli, store, product, tmp_path, content, line, reason
):
    assert cli("rates", "import", "R", write(tmp_path, "good.csv", SPEC_DECK)).exit_code == 0
    before = quote(cli, "R", "+15195550100", "61")
    bad = write(tmp_path, "bad.csv", content)
    result = cli("rates", "import", "R", bad)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"voipctl: error: {bad}:{line}: ")
    assert reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(_versions(store)) == 1
    assert _rates(store) == 5
    assert quote(cli, "R", "+15195550100", "61") == before


def test_import_memory_stays_flat_with_the_file_size(store, product, tmp_path):
    from voipctl.rating.deck import import_deck_file

    def peak(rows: int) -> int:
        lines = "".join(f"{1000000 + i},0.0{i % 97:03d},Destination {i},6/6\n" for i in range(rows))
        path = write(tmp_path, f"d{rows}.csv", "prefix,rate,description,increment\n" + lines)
        tracemalloc.start()
        try:
            import_deck_file(store, "R", path)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(5_000), peak(40_000)
    # eight times the rows, about the same memory: nothing is kept per row
    assert large < small * 2, (small, large)


def test_duplicates_are_per_direction(cli, store, product, tmp_path):
    content = "prefix,rate,direction\n1800,0.01,outbound\n1800,0.02,inbound\n"
    result = cli("rates", "import", "R", write(tmp_path, "d.csv", content))
    assert result.exit_code == 0, result.output
    assert _versions(store)[0].directions == "outbound,inbound"


def test_dry_run_checks_everything_and_writes_nothing(cli, store, product, tmp_path):
    result = cli("rates", "import", "R", write(tmp_path, "d.csv", SPEC_DECK), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would import 5 rates" in result.stdout
    assert _versions(store) == [] and _rates(store) == 0
    bad = write(tmp_path, "bad.csv", "prefix,rate\n1,x\n")
    assert cli("rates", "import", "R", bad, "--dry-run").exit_code == 1


def test_effective_versions_and_directions(cli, store, product, tmp_path):
    old = "prefix,rate,increment,direction\n1,0.02,60/6,outbound\n1800,0.02,6/6,inbound\n"
    new_outbound = "prefix,rate,increment\n1,0.04,60/6\n"
    first = cli("rates", "import", "B", write(tmp_path, "a.csv", old), "--effective", "2026-01-01")
    assert first.exit_code == 0, first.output
    result = cli(
        "rates", "import", "B", write(tmp_path, "b.csv", new_outbound), "--effective", "2026-02-01"
    )
    assert result.exit_code == 0, result.output
    jan = quote(cli, "B", "+12125550100", "60", "--at", "2026-01-15T12:00:00Z")
    feb = quote(cli, "B", "+12125550100", "60", "--at", "2026-02-15")
    assert (jan["cost"], feb["cost"]) == ("0.0200", "0.0400")
    before = quote(cli, "B", "+12125550100", "60", "--at", "2025-12-31T23:59:59Z")
    assert before["status"] == "no_rate"
    # the outbound-only version leaves the inbound rates of the first in force
    inbound = quote(cli, "B", "18005550100", "61", "--direction", "inbound", "--at", "2026-03-01")
    assert (inbound["prefix"], inbound["cost"]) == ("1800", "0.0220")
    not_billed = quote(cli, "R", "18005550100", "61", "--direction", "inbound")
    assert (not_billed["status"], not_billed["cost"]) == ("inbound_not_billed", "0.0000")
    versions = json.loads(cli("rates", "versions", "B", "--format", "json").stdout)
    assert [(v["directions"], v["in_force"]) for v in versions] == [
        ("outbound", "outbound"),
        ("outbound,inbound", "inbound"),
    ]


def test_rates_list_shows_what_rating_uses(cli, product, tmp_path):
    cli("rates", "import", "R", write(tmp_path, "d.csv", SPEC_DECK))
    cli("rates", "override", "R", "1519", "0.009")
    rows = json.loads(cli("rates", "list", "R", "--prefix", "15", "--format", "json").stdout)
    assert rows == [
        {
            "direction": "outbound",
            "prefix": "1519",
            "description": "",
            "rate": "0.009",
            "increment": "60/60",
            "connect_fee": "0.00",
            "source": "override",
            "version": None,
        }
    ]
    table = cli("rates", "list", "R").stdout
    assert "4420" in table and "0.03" in table


def test_unknown_product_is_a_usage_error(cli, product, tmp_path):
    result = cli("rates", "import", "Nope", write(tmp_path, "d.csv", SPEC_DECK))
    assert result.exit_code == 2
    assert "no product 'Nope' (products: B, M, R)" in result.stderr


def test_excel_exports_with_bom_and_crlf_import_and_count_lines(cli, store, product, tmp_path):
    path = tmp_path / "excel.csv"
    content = 'Prefix,Description,Rate\r\n1,"North\r\nAmerica",0.02\r\n44,UK,0.05\r\n49,DE,x\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + content.encode())
    result = cli("rates", "import", "R", path)
    assert result.exit_code == 1
    assert f"{path}:5: rate 'x'" in result.stderr  # the quoted field spans lines 2-3
    path.write_bytes(b"\xef\xbb\xbf" + content.replace(",x", ",0.06").encode())
    assert cli("rates", "import", "R", path).exit_code == 0
    assert quote(cli, "R", "+15195550100", "60")["description"] == "North\r\nAmerica"


def test_a_file_that_is_not_utf8_names_the_line(cli, store, product, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        "prefix,description,rate\n1,Canada,0.02\n33,Fran\xe7e,0.05\n".encode("latin-1")
    )
    result = cli("rates", "import", "R", path)
    assert result.exit_code == 1
    assert f"{path}:3: not UTF-8 text" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_missing_file_is_a_usage_error(cli, product, tmp_path):
    result = cli("rates", "import", "R", tmp_path / "nope.csv")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_an_unterminated_quote_names_the_line_it_opened_on_and_imports_nothing(
    cli, store, product, tmp_path
):
    path = tmp_path / "open-quote.csv"
    path.write_text(
        'prefix,description,rate\n1,Canada,0.02\n33,"France,0.05\n44,UK,0.04\n49,Germany,0.03\n'
    )
    result = cli("rates", "import", "R", path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"voipctl: error: {path}:3: a quote opened on this line is never closed"
    )
    assert _versions(store) == []


def test_a_nul_in_a_description_is_refused_alike_on_both_databases(cli, store, product, tmp_path):
    # PostgreSQL refused it with a two-line database error; SQLite stored it.
    path = tmp_path / "nul.csv"
    path.write_text("prefix,description,rate\n1,Canada,0.02\n44,U\x00K,0.04\n")
    result = cli("rates", "import", "R", path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"voipctl: error: {path}:3: a NUL character in the description: remove it"
    )
    assert _versions(store) == []


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        (
            "99999999999999999999/1",
            "increment '99999999999999999999' is more than 2678400 seconds (31 days)",
        ),
        ("6_0", "increment '6_0' is not a whole number of seconds"),
        ("\u0666", "increment '\u0666' is not a whole number of seconds"),
        ("1e3", "increment '1e3' is not a whole number of seconds"),
    ],
)
def test_an_increment_that_is_not_plain_or_too_long_names_the_row(
    cli, store, product, tmp_path, cell, reason
):
    path = tmp_path / "increment.csv"
    path.write_text(f"prefix,description,rate,increment\n1,Canada,0.02,6\n44,UK,0.04,{cell}\n")
    result = cli("rates", "import", "R", path)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"voipctl: error: {path}:3: {reason}"
    assert _versions(store) == []
