"""Number normalisation (docs/rating.md §2): from what the PBX logged to an international number.

`normalize(raw, rules)` applies the steps in the spec's order and stops at the
first that decides; with a `trace` list it also records each step (rule and the
number after it), which is what `voipctl explain` shows.

NANP product (country 1, exit 011, nanp_10_digit on)::

    5195550100         -> 15195550100
    +1 (519) 555-0100  -> 15195550100
    011442071234567    -> 442071234567
    2112               -> internal
    *97                -> excluded
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

# Separators people and PBXs put in numbers (step 2).
_SEPARATORS = re.compile(r"[\s\-.()]")
_SIP_SCHEME = re.compile(r"^<?(?:sips?|tel):", re.IGNORECASE)

MIN_DIGITS = 8
MAX_DIGITS = 15


@dataclass(frozen=True)
class NumberRules:
    """The product settings that normalisation reads (docs/rating.md §1)."""

    country_code: str = "1"
    exit_code: str = "011"
    national_prefix: str | None = None
    prepend_country_code: bool = False
    nanp_10_digit: bool = True
    area_code: str | None = None
    max_internal_digits: int = 6

    @classmethod
    def from_product(cls, product: Any) -> NumberRules:
        return cls(
            country_code=product.country_code or "",
            exit_code=product.exit_code or "",
            national_prefix=product.national_prefix or None,
            prepend_country_code=bool(product.prepend_country_code),
            nanp_10_digit=bool(product.nanp_10_digit),
            area_code=product.area_code or None,
            max_internal_digits=product.max_internal_digits,
        )


class Normalized(NamedTuple):
    """Outcome of normalisation: `status` is None when `number` is ready to rate.

    `cleaned` is the number after step 2 (separators gone, SIP user part), the
    "raw" form that exclude/suppress patterns are tried against.
    """

    status: str | None  # None, "excluded", "internal" or "invalid_number"
    number: str | None
    cleaned: str


def _digits(text: str) -> bool:
    # ASCII only: str.isdigit() also takes superscripts and other scripts' digits.
    return text.isascii() and text.isdigit()


def sip_user(raw: str) -> str:
    """The user part of a SIP URI (`sip:+15195550100@pbx;user=phone` -> `+15195550100`)."""
    text = raw.strip()
    if _SIP_SCHEME.match(text):
        text = _SIP_SCHEME.sub("", text).rstrip(">")
        text = text.split("@", 1)[0].split(";", 1)[0]
    elif "@" in text:
        text = text.split("@", 1)[0]
    return text


def _no_step(rule: str, number: str) -> None:
    pass


def plain_digits_kept(rules: NumberRules) -> tuple[int, tuple[str, ...]]:
    """When a number of plain digits is already normalised: (shortest length, barred starts).

    A number of ASCII digits only, of that length up to MAX_DIGITS, starting with
    none of the barred prefixes, passes every step of `normalize` unchanged and
    valid (no separators, no +, no exit code, no national prefix to replace, not
    10 or 7 digits, longer than an extension): bulk rating takes it as it is.
    """
    shortest = max(11, rules.max_internal_digits + 1, MIN_DIGITS)
    barred = [rules.exit_code]
    if rules.prepend_country_code:
        barred.append(rules.national_prefix or "")
    return shortest, tuple(prefix for prefix in barred if prefix)


def normalize(
    raw: str | None, rules: NumberRules, trace: list[dict[str, str]] | None = None
) -> Normalized:
    """Normalise one number by the steps of docs/rating.md §2, in order."""

    if (
        trace is None
        and raw
        and raw[0] == "+"
        and MIN_DIGITS < len(raw) <= MAX_DIGITS + 1
        and raw.isascii()
        and raw[1:].isdigit()
    ):
        # The common case in bulk rating: already international (+ and 8-15 digits).
        # Steps 1-9 would only drop the +, so this is the same result, sooner.
        return Normalized(None, raw[1:], raw)

    if trace is None:
        step = _no_step
    else:

        def step(rule: str, number: str) -> None:
            trace.append({"rule": rule, "number": number})

    if trace is None and raw and raw.isascii() and raw.isdigit():
        # Plain digits (most national numbers): steps 1-2 change nothing.
        number = cleaned = raw
    else:
        if raw is None or not raw.strip():
            step("empty number: invalid", "")
            return Normalized("invalid_number", None, "")
        user = sip_user(raw)
        if user != raw.strip():
            step("SIP URI: keep the user part", user)
        if user[:1] in ("*", "#"):
            step("feature code (starts with * or #): excluded", user)
            return Normalized("excluded", None, user)
        number = _SEPARATORS.sub("", user)
        if number != user:
            step("strip spaces, dashes, dots and parentheses", number)
        cleaned = number
    if number.startswith("+"):
        number = number[1:]
        step("leading +: dropped, the rest is international", number)
    elif rules.exit_code and number.startswith(rules.exit_code):
        number = number[len(rules.exit_code) :]
        step(f"leading exit code {rules.exit_code}: dropped, the rest is international", number)
    elif (
        rules.prepend_country_code
        and rules.national_prefix
        and number.startswith(rules.national_prefix)
    ):
        number = rules.country_code + number[len(rules.national_prefix) :]
        step(
            f"leading national prefix {rules.national_prefix}: "
            f"replaced by country code {rules.country_code}",
            number,
        )
    elif rules.nanp_10_digit and len(number) == 10 and _digits(number) and number[0] in "23456789":
        number = "1" + number
        step("NANP 10 digits starting 2-9: prepend 1", number)
    elif rules.area_code and len(number) == 7 and _digits(number):
        number = "1" + rules.area_code + number
        step(f"7 digits: prepend 1 and area code {rules.area_code}", number)
    elif _digits(number) and len(number) <= rules.max_internal_digits:
        step(f"{rules.max_internal_digits} digits or fewer: internal (extension) call", number)
        return Normalized("internal", number, cleaned)
    if not _digits(number) or not MIN_DIGITS <= len(number) <= MAX_DIGITS:
        if not _digits(number):
            why = "not all digits"
        elif len(number) < MIN_DIGITS:
            why = f"shorter than {MIN_DIGITS} digits"
        else:
            why = f"longer than {MAX_DIGITS} digits"
        step(f"{why}: invalid number", number)
        return Normalized("invalid_number", None, cleaned)
    step("international number", number)
    return Normalized(None, number, cleaned)
