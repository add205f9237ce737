"""One number syntax for amounts written as text (docs/rating.md).

No exponent, underscore or non-ASCII digit; amounts beyond what storage holds
are one-line errors, not InvalidOperation or a database overflow.
"""

from decimal import Decimal

import pytest

from tests.cli.test_clients_cli import CONFIG
from voipctl import money


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e3", "amount: '1e3' is not a number"),
        ("6_0", "amount: '6_0' is not a number"),
        ("\u0661\u0662", "amount: '\u0661\u0662' is not a number"),
        ("0.0_1", "amount: '0.0_1' is not a number"),
        ("1e400", "amount: '1e400' is not a number"),
        ("NaN", "amount: 'NaN' is not a number"),
        ("Infinity", "amount: 'Infinity' is not a number"),
        ("", "amount: '' is not a number"),
        ("1.2.3", "amount: '1.2.3' is not a number"),
        (
            "99999999999999999999",
            "amount: '99999999999999999999' is out of range (at most 9223372036.854775807)",
        ),
        (
            "-99999999999999999999.5",
            "amount: '-99999999999999999999.5' is out of range (at most 9223372036.854775807)",
        ),
    ],
)
def test_text_that_is_not_a_plain_number_is_refused(text, message):
    with pytest.raises(money.MoneyError) as caught:
        money.parse(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "value"),
    [("10", "10"), ("-5.25", "-5.25"), ("+0.5", "0.5"), (".5", "0.5"), ("7.", "7"), (" 3 ", "3")],
)
def test_plain_numbers_are_taken_exactly(text, value):
    assert money.parse(text) == Decimal(value)


def test_the_largest_storable_amount_is_taken_and_fits_in_int64():
    assert money.to_units("9223372036.854775807") == 2**63 - 1


@pytest.fixture
def vc(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_FUSION1_DB_URL", "postgresql://fusion@127.0.0.1/fusionpbx")
    path = tmp_path / "voipctl-test.toml"
    path.write_text(CONFIG)
    return lambda *args: cli(*args, config=path)


@pytest.mark.parametrize(
    ("amount", "reason"),
    [
        ("1e3", "'1e3' is not a number"),
        ("6_0", "'6_0' is not a number"),
        ("\u0661\u0662", "'\u0661\u0662' is not a number"),
        ("1e400", "'1e400' is not a number"),
        (
            "99999999999999999999",
            "'99999999999999999999' is out of range (at most 9223372036.854775807)",
        ),
    ],
)
def test_credit_add_refuses_a_non_plain_amount_with_exit_2(vc, amount, reason):
    result = vc("credit", "add", "42", amount)
    assert result.exit_code == 2, result.output
    # One line naming the command and the argument (docs/cli.md, "Conventions").
    assert result.stderr == f"voipctl: error: credit add: AMOUNT: amount: {reason}\n"
