"""Matching a provider's numbers against a service's DIDs and extensions.

Providers log the same DID as `5197830020`, `15197830020`, `+15197830020` or
inside a SIP URI; these helpers compare them the way an operator would.
"""

from __future__ import annotations

import re

_SIP_USER = re.compile(r"<?\s*(?:sips?|tel):([^@;>]*)", re.IGNORECASE)
_NON_DIGITS = re.compile(r"\D")


def sip_user(uri: str | None) -> str:
    """The user part of a SIP URI, display name and brackets dropped.

    Example: sip_user('"Front Desk" <sip:8300@rucken.example>') -> "8300"
    """
    if not uri:
        return ""
    if "<" in uri:
        # The address is in the brackets; a display name may itself say "sip:...".
        uri = uri[uri.rindex("<") :]
    match = _SIP_USER.search(uri)
    if match:
        return match.group(1).strip()
    # Not a URI: a bare number or user, maybe "user@host".
    return uri.strip().strip('"').split("@", 1)[0].strip()


def did_key(number: str | None) -> str:
    """A number reduced for comparison: digits only, a NANP leading 1 dropped.

    Example: did_key("+1 (519) 783-0020") == did_key("5197830020") == "5197830020"
    """
    if not number:
        return ""
    digits = _NON_DIGITS.sub("", number)
    if len(digits) == 11 and digits[0] == "1":
        return digits[1:]
    return digits


def did_keys(numbers) -> frozenset[str]:
    """`did_key` of each number, empty ones left out."""
    return frozenset(k for k in (did_key(n) for n in numbers) if k)
