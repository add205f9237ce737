"""The cost of one call (docs/rating.md §5), in integers, rounded once.

Amounts are integer units of `voipctl.money` (10**-9 of the currency). The
markup is an exact fraction (`markup_percent` has at most 4 decimals, so it is
an integer number of millionths), and the whole expression

    connect_fee + rate * (1 + markup/100) * (billable - free) / 60

is evaluated as one fraction and rounded half-up to the product's decimals by
`money.round_div`: no float, no intermediate rounding.
"""

from __future__ import annotations

from decimal import Decimal

from voipctl import money

# markup_percent is stored with 4 decimals: percent * 10**4 / 100 = millionths of the rate.
MARKUP_DENOMINATOR = 1_000_000


def billable_seconds(billsec: int, a: int, b: int) -> int:
    """Seconds charged for `billsec` with an `A/B` increment.

    0 for billsec <= 0; A for 1..A; then A plus whole steps of B.
    """
    if billsec <= 0:
        return 0
    if billsec <= a:
        return a
    steps = -(-(billsec - a) // b)  # ceil without floats
    return a + steps * b


def markup_factor(markup_percent: Decimal | int | str) -> int:
    """`1 + markup_percent/100` as an integer over MARKUP_DENOMINATOR, exactly."""
    millionths = Decimal(markup_percent).scaleb(4)
    if millionths != millionths.to_integral_value():
        raise ValueError(f"markup_percent {markup_percent} has more than 4 decimals")
    return MARKUP_DENOMINATOR + int(millionths)


def cost_units(
    rate_units: int,
    connect_fee_units: int,
    charged_seconds: int,
    decimals: int,
    factor: int = MARKUP_DENOMINATOR,
) -> int:
    """Cost in money units, rounded half-up once to `decimals` places.

    `charged_seconds` is billable minus free seconds; `factor` is from
    `markup_factor` (MARKUP_DENOMINATOR for override rates: no markup).
    """
    step = 10 ** (money.SCALE - decimals)
    scale = 60 * MARKUP_DENOMINATOR
    numerator = connect_fee_units * scale + rate_units * factor * charged_seconds
    return money.round_div(numerator, scale * step) * step


def exact_cost(
    rate_units: int, connect_fee_units: int, charged_seconds: int, factor: int = MARKUP_DENOMINATOR
) -> Decimal:
    """The unrounded cost as a Decimal, for explanations (`0.01375` before it becomes 0.0138)."""
    numerator = connect_fee_units * 60 * MARKUP_DENOMINATOR + rate_units * factor * charged_seconds
    value = Decimal(numerator) / Decimal(60 * MARKUP_DENOMINATOR)
    return value.scaleb(-money.SCALE)
