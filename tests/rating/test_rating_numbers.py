"""docs/rating.md §2-3 and §5 without a database: normalisation, patterns, increments, cost."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voipctl import money
from voipctl.rating.cost import billable_seconds, cost_units, exact_cost, markup_factor
from voipctl.rating.matcher import PrefixMatcher, RateRow
from voipctl.rating.numbers import MAX_DIGITS, NumberRules, normalize, plain_digits_kept
from voipctl.rating.patterns import PatternSet

NANP = NumberRules()
UK = NumberRules(
    country_code="44",
    exit_code="00",
    national_prefix="0",
    prepend_country_code=True,
    nanp_10_digit=False,
)


@pytest.mark.parametrize(
    ("raw", "status", "number"),
    [
        ("5195550100", None, "15195550100"),
        ("+1 (519) 555-0100", None, "15195550100"),
        ("15195550100", None, "15195550100"),
        ("011442071234567", None, "442071234567"),
        ("2112", "internal", "2112"),
        ("*97", "excluded", None),
    ],
)
def test_nanp_table_of_rating_md(raw, status, number):
    result = normalize(raw, NANP)
    assert (result.status, result.number) == (status, number)


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("02071234567", "442071234567"),
        ("00442071234567", "442071234567"),
        ("+442071234567", "442071234567"),
        ("0015195550100", "15195550100"),
    ],
)
def test_uk_table_of_rating_md(raw, number):
    result = normalize(raw, UK)
    assert (result.status, result.number) == (None, number)


@pytest.mark.parametrize(
    ("raw", "rules", "status", "number"),
    [
        # An unqualified 7-digit NANP number is invalid, not rated on another country's prefix.
        ("5550100", NANP, "invalid_number", None),
        ("5550100", NumberRules(area_code="519"), None, "15195550100"),
        ("#31#", NANP, "excluded", None),
        ("sip:+15195550100@pbx.example.com;user=phone", NANP, None, "15195550100"),
        ("519.555.0100", NANP, None, "15195550100"),
        ("1234567890123456", NANP, "invalid_number", None),  # 16 digits
        ("+1234567", NANP, "invalid_number", None),  # international but 7 digits
        ("5195550100abc", NANP, "invalid_number", None),
        ("", NANP, "invalid_number", None),
        ("1234567", NumberRules(max_internal_digits=7), "internal", "1234567"),
        # 10 digits starting with 0 or 1 is not NANP: neither 1 prepended nor valid as is
        ("0195550100", NANP, None, "0195550100"),
    ],
)
def test_other_normalisation_rules(raw, rules, status, number):
    result = normalize(raw, rules)
    assert (result.status, result.number) == (status, number)


def test_trace_names_each_step():
    trace: list[dict[str, str]] = []
    normalize("+1 (519) 555-0100", NANP, trace)
    assert [step["number"] for step in trace] == ["+15195550100", "15195550100", "15195550100"]
    assert "strip spaces" in trace[0]["rule"]
    assert "leading +" in trace[1]["rule"]


def test_patterns_example_of_rating_md():
    patterns = PatternSet.parse("911,1800xxxxxxx,*xx")
    for covered in ("911", "18005550100", "*97"):
        assert patterns.match(covered, None), covered
    for free in ("9110", "1800555010"):
        assert not patterns.match(free, None), free


def test_patterns_try_the_raw_and_the_normalised_number():
    patterns = PatternSet.parse("1800xxxxxxx")
    raw = "+1 (800) 555-0100"
    assert patterns.match(raw, None)  # raw digits
    assert patterns.match("8005550100", normalize("8005550100", NANP).number)  # normalised
    assert not PatternSet.parse("").match("911", "911")


# --- §5: increments and cost ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("billsec", "a", "b", "billable"),
    [(61, 6, 6, 66), (61, 60, 6, 66), (60, 60, 6, 60), (10, 30, 6, 30), (31, 30, 6, 36)]
    + [(1, 1, 1, 1), (0, 1, 1, 0), (100, 90, 60, 150), (151, 90, 60, 210), (-3, 60, 60, 0)],
)
def test_billable_seconds_table(billsec, a, b, billable):
    assert billable_seconds(billsec, a, b) == billable


increments = st.integers(min_value=1, max_value=600)


@given(billsec=st.integers(min_value=1, max_value=100_000), a=increments, b=increments)
def test_billable_is_never_below_billsec_and_is_a_plus_whole_steps(billsec, a, b):
    billable = billable_seconds(billsec, a, b)
    assert billable >= billsec
    assert billable >= a and (billable - a) % b == 0
    # the smallest such value: one step less would not cover the call
    assert billable == a or billable - b < billsec


@given(a=increments, b=increments, data=st.data())
def test_billable_is_a_for_any_billsec_up_to_a(a, b, data):
    billsec = data.draw(st.integers(min_value=1, max_value=a))
    assert billable_seconds(billsec, a, b) == a


SPEC_ROWS = [
    RateRow("1", "", money.to_units("0.02"), 0, 60, 6, "deck", 1, 1_000_000),
    RateRow("1519", "", money.to_units("0.01"), 0, 6, 6, "deck", 1, 1_000_000),
    RateRow("44", "", money.to_units("0.05"), money.to_units("0.10"), 1, 1, "deck", 1, 1_000_000),
    RateRow("4420", "", money.to_units("0.03"), 0, 30, 6, "deck", 1, 1_000_000),
    RateRow("49", "", money.to_units("0.06"), 0, 90, 60, "deck", 1, 1_000_000),
]


@pytest.mark.parametrize(
    ("number", "billsec", "prefix", "billable", "cost"),
    [
        ("15195550100", 61, "1519", 66, "0.0110"),
        ("12125550100", 61, "1", 66, "0.0220"),
        ("12125550100", 60, "1", 60, "0.0200"),
        ("442071234567", 10, "4420", 30, "0.0150"),
        ("442071234567", 31, "4420", 36, "0.0180"),
        ("441611234567", 1, "44", 1, "0.1008"),
        ("4930123456", 100, "49", 150, "0.1500"),
        ("4930123456", 151, "49", 210, "0.2100"),
    ],
)
def test_cost_table_of_rating_md_from_the_pure_functions(number, billsec, prefix, billable, cost):
    row = PrefixMatcher(SPEC_ROWS).match(number)
    assert row.prefix == prefix
    got_billable = billable_seconds(billsec, row.a, row.b)
    assert got_billable == billable
    units = cost_units(row.rate, row.connect_fee, got_billable, 4)
    assert money.fmt(units, 4, units=True) == cost


def test_markup_line_is_rounded_once_half_up():
    factor = markup_factor(Decimal(25))
    rate = money.to_units("0.01")
    assert exact_cost(rate, 0, 66, factor) == Decimal("0.01375")
    assert money.fmt(cost_units(rate, 0, 66, 4, factor), 4, units=True) == "0.0138"
    # rounding twice (rate first, then cost) is what this avoids: 0.0125 * 66 / 60 = 0.01375
    assert cost_units(rate, 0, 66, 2, factor) == money.to_units("0.01")


def test_odd_markups_stay_exact():
    factor = markup_factor(Decimal("33.3333"))
    assert factor == 1_333_333
    rate = money.to_units("0.0123457")
    # 0.0123457 * 1.333333 * 61 / 60 = 0.016734... -> 0.0167
    assert money.fmt(cost_units(rate, 0, 61, 4, factor), 4, units=True) == "0.0167"


@given(
    prefixes=st.sets(st.text("0123456789", min_size=1, max_size=6), min_size=1, max_size=40),
    number=st.text("0123456789", min_size=8, max_size=15),
)
def test_the_matched_prefix_is_the_longest_deck_prefix_of_the_number(prefixes, number):
    rows = [RateRow(p, "", 1, 0, 1, 1, "deck", 1, 1_000_000) for p in prefixes]
    found = PrefixMatcher(rows).match(number)
    starting = [p for p in prefixes if number.startswith(p)]
    if not starting:
        assert found is None
    else:
        assert found.prefix == max(starting, key=len)


def test_override_wins_on_the_same_prefix():
    deck_row = RateRow("1212", "", 5, 0, 60, 60, "deck", 1, 1_250_000)
    override = RateRow("1212", "", 7, 0, 1, 1, "override", None, 1_000_000)
    assert PrefixMatcher([deck_row], [override]).match("12125550100").source == "override"


@given(
    raw=st.one_of(
        st.text("+0123456789 -()*#", max_size=18),
        st.from_regex(r"\+[0-9]{6,17}", fullmatch=True),
    ),
    rules=st.sampled_from([NANP, UK, NumberRules(area_code="519", max_internal_digits=4)]),
)
def test_the_bulk_fast_path_gives_what_the_traced_steps_give(raw, rules):
    assert normalize(raw, rules) == normalize(raw, rules, [])


@given(
    number=st.text(alphabet="0123456789", min_size=7, max_size=16),
    exit_code=st.sampled_from(["", "0", "00", "011", "810"]),
    national_prefix=st.sampled_from([None, "", "0", "1", "8"]),
    prepend=st.booleans(),
    nanp=st.booleans(),
    area=st.sampled_from([None, "519"]),
    internal=st.integers(min_value=0, max_value=12),
)
def test_plain_digits_the_bulk_shortcut_takes_normalise_to_themselves(
    number, exit_code, national_prefix, prepend, nanp, area, internal
):
    rules = NumberRules(
        country_code="44",
        exit_code=exit_code,
        national_prefix=national_prefix,
        prepend_country_code=prepend,
        nanp_10_digit=nanp,
        area_code=area,
        max_internal_digits=internal,
    )
    shortest, barred = plain_digits_kept(rules)
    if shortest <= len(number) <= MAX_DIGITS and not number.startswith(barred):
        assert normalize(number, rules) == (None, number, number)
