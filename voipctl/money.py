"""Money: the only place amounts are converted and rounded.

Amounts are `Decimal` in Python and integers in storage: a stored value is the
amount in units of 10**-SCALE of the currency (nano-units). Nine places keep
wholesale per-minute rates (5 to 7 decimals) exact with room to spare, and an
int64 still holds 9.2 billion currency units.

Rounding is half-up (away from zero on ties), as billing customers expect, and
happens only in `round_units` / `round_div`.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

SCALE = 9
UNIT = 10**SCALE
_QUANT = Decimal(1).scaleb(-SCALE)
# Stored units are int64: the largest amount whose units still fit.
MAX_AMOUNT = Decimal(2**63 - 1).scaleb(-SCALE)
# The one syntax of a number written as text: optional sign, ASCII digits,
# optional decimal point. No exponent, no underscore, no other script's digits.
_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)


class NumberError(ValueError):
    """A number written as text is not in the one plain syntax, or out of range."""


class MoneyError(NumberError):
    """An amount cannot be represented exactly (too many decimals, not a number)."""


# What a number written as text may have around it: ASCII blanks only.
_BLANKS = " \t\r\n"
_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)


def plain(text: str, *, field: str) -> Decimal:
    """A finite number in the plain syntax (see _PLAIN), exactly, as a Decimal."""
    raw = str(text).strip(_BLANKS)
    if not _PLAIN.fullmatch(raw):
        raise NumberError(f"{field}: {raw!r} is not a number")
    return Decimal(raw)


def parse_int(text: str, *, field: str, low: int | None = None, high: int | None = None) -> int:
    """A whole number written as text: optional sign and ASCII digits, nothing else.

    int() also takes "6_0", Arabic-Indic digits and full-width digits; this does not.
    `low`/`high` bound the value (inclusive), checked before anything is stored.
    """
    raw = str(text).strip(_BLANKS)
    if len(raw) > 40 or not _WHOLE.fullmatch(raw):
        raise NumberError(f"{field}: {raw[:40]!r} is not a whole number")
    value = int(raw)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{'' if low is None else low}..{'' if high is None else high}"
        raise NumberError(f"{field}: {raw} is out of range ({bounds})")
    return value


def parse(text: str | int | Decimal, *, field: str = "amount") -> Decimal:
    """Parse user or file input into an exact Decimal; refuse floats, NaN and junk."""
    if isinstance(text, float):
        raise MoneyError(f"{field}: a float cannot be money ({text!r})")
    if isinstance(text, Decimal):
        value = text
    else:
        raw = str(text).strip()
        if not _PLAIN.fullmatch(raw):
            raise MoneyError(f"{field}: {raw!r} is not a number") from None
        value = Decimal(raw)
    if not value.is_finite():
        raise MoneyError(f"{field}: {text!r} is not a finite number")
    if abs(value) > MAX_AMOUNT:
        raise MoneyError(f"{field}: {text!r} is out of range (at most {MAX_AMOUNT})")
    if value != value.quantize(_QUANT, rounding=ROUND_HALF_UP):
        raise MoneyError(f"{field}: {text!r} has more than {SCALE} decimal places")
    return value


def to_units(amount: Decimal | int | str) -> int:
    """Decimal amount -> stored integer units, exactly (refuses anything inexact)."""
    value = parse(amount)
    return int(value.scaleb(SCALE))


def from_units(units: int) -> Decimal:
    """Stored integer units -> Decimal amount."""
    return Decimal(int(units)).scaleb(-SCALE)


def round_div(numerator: int, denominator: int) -> int:
    """Integer division rounded half away from zero. The one integer rounding rule."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return q if numerator >= 0 else -q


def round_units(units: int, decimals: int) -> int:
    """Round stored units half-up to `decimals` places of the currency."""
    if not 0 <= decimals <= SCALE:
        raise ValueError(f"decimals must be 0..{SCALE}")
    step = 10 ** (SCALE - decimals)
    return round_div(units, step) * step


def quantize(amount: Decimal, decimals: int) -> Decimal:
    """Round a Decimal half-up to `decimals` places."""
    return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def fmt(amount: Decimal | int | None, places: int = 2, *, units: bool = False) -> str | None:
    """Plain decimal notation with at least `places` decimals, never exponent form.

    `fmt(Decimal("12.34"), 4)` -> "12.3400"; extra significant digits are kept:
    `fmt(Decimal("0.015250"), 2)` -> "0.01525". With `units=True` the input is
    stored integer units.
    """
    if amount is None:
        return None
    value = from_units(amount) if units else Decimal(amount)
    value = value.normalize() if value != 0 else Decimal(0)
    exponent = value.as_tuple().exponent
    shown = max(places, -exponent if isinstance(exponent, int) else 0)
    return f"{value:.{shown}f}"
