"""Number matching shared by the adapters: SIP user parts and DID keys."""

from __future__ import annotations

import pytest

from voipctl.providers.matching import did_key, did_keys, sip_user


@pytest.mark.parametrize(
    ("uri", "user"),
    [
        ('"Front Desk" <sip:8300@rucken.wat1.ictvoip.ca>', "8300"),
        ('"sip:999@evil.example" <sip:8300@host>', "8300"),  # display name is not the address
        ("sip:5195550100@host;user=phone", "5195550100"),
        ("<tel:+15195550100>", "+15195550100"),
        ('"x" <sips:+1519@host>', "+1519"),
        ("8300", "8300"),
        ("8300@host", "8300"),
        ("", ""),
        (None, ""),
    ],
)
def test_sip_user(uri, user):
    assert sip_user(uri) == user


@pytest.mark.parametrize(
    ("number", "key"),
    [
        ("5197830020", "5197830020"),
        ("15197830020", "5197830020"),
        ("+1 (519) 783-0020", "5197830020"),
        ("011442071234567", "011442071234567"),
        ("442071234567", "442071234567"),
        ("", ""),
        (None, ""),
    ],
)
def test_did_key(number, key):
    assert did_key(number) == key


def test_did_keys_drops_empty_ones():
    assert did_keys(["+15197830020", "", "x"]) == frozenset({"5197830020"})


@pytest.mark.parametrize("number", ["12045550123", "+12045550123", "2045550123", "1-204-555-0123"])
def test_one_nanp_number_in_every_form_has_one_key(number):
    # service add/set compare DIDs by this key (voipctl.catalog._lesnet_claims).
    assert did_key(number) == "2045550123"
