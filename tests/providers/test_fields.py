"""Product fields as operators write them (docs/providers.md), parsed into Service columns."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voipctl.errors import UsageError
from voipctl.providers.fields import FORMS, parse_fields

VALID = [
    (
        "fusionpbx",
        "mcon.wat7.ictvoip.ca | 5192229000",
        "2112 | 2113 | 2114",
        {
            "tenant": "mcon.wat7.ictvoip.ca",
            "peer_id": None,
            "main_did": "5192229000",
            "dids": ["5192229000"],
            "extensions": ["2112", "2113", "2114"],
        },
    ),
    (
        "fusionpbx",
        "mcon.wat7.ictvoip.ca|5192229000",
        "2112|2113",
        {
            "tenant": "mcon.wat7.ictvoip.ca",
            "peer_id": None,
            "main_did": "5192229000",
            "dids": ["5192229000"],
            "extensions": ["2112", "2113"],
        },
    ),
    (
        "fusionpbx",
        "  mcon.wat7.ictvoip.ca   |5192229000 ",
        "",
        {
            "tenant": "mcon.wat7.ictvoip.ca",
            "peer_id": None,
            "main_did": "5192229000",
            "dids": ["5192229000"],
            "extensions": [],
        },
    ),
    (
        "vodia",
        "rucken.wat1.ictvoip.ca | 5484815577 | 5197830020 | 8300",
        "8300",
        {
            "tenant": "rucken.wat1.ictvoip.ca",
            "peer_id": None,
            "main_did": "5484815577",
            "dids": ["5484815577", "5197830020", "8300"],
            "extensions": ["8300"],
        },
    ),
    (
        "lesnet",
        "D4E3CD2BFC791 | 12046664021",
        "12046664021",
        {
            "tenant": None,
            "peer_id": "D4E3CD2BFC791",
            "main_did": "12046664021",
            "dids": ["12046664021"],
            "extensions": ["12046664021"],
        },
    ),
    (
        "lesnet",
        "D4E3CD2BFC791|12046664021",
        "",
        {
            "tenant": None,
            "peer_id": "D4E3CD2BFC791",
            "main_did": "12046664021",
            "dids": ["12046664021"],
            "extensions": ["12046664021"],
        },
    ),
]


@pytest.mark.parametrize(("server_type", "domain", "billed", "expected"), VALID)
def test_the_examples_of_providers_md_parse(server_type, domain, billed, expected):
    assert parse_fields(server_type, domain, billed) == expected


INVALID = [
    ("fusionpbx", "mcon.wat7.ictvoip.ca", "2112", "domain", "1 part(s), not 2"),
    ("fusionpbx", "mcon.wat7.ictvoip.ca | 519-222", "", "domain", "main DID '519-222'"),
    ("fusionpbx", "mcon.wat7.ictvoip.ca | 5192229000 | 1", "", "domain", "3 part(s)"),
    ("fusionpbx", " | 5192229000", "", "domain", "tenant is empty"),
    ("fusionpbx", "mcon.wat7.ictvoip.ca | 5192229000", "2112 || 2113", "billed", "extension is"),
    ("fusionpbx", "mcon.wat7.ictvoip.ca | 5192229000", "2112 | 2112", "billed", "listed twice"),
    ("fusionpbx", "bad tenant | 5192229000", "", "domain", "tenant 'bad tenant'"),
    ("vodia", "rucken.wat1.ictvoip.ca", "8300", "domain", "no DID"),
    ("vodia", "rucken.wat1.ictvoip.ca | abc", "8300", "domain", "DID 'abc'"),
    ("lesnet", "D4E3CD2BFC791", "", "domain", "1 part(s)"),
    ("lesnet", "D4E3CD2BFC791 | 12046664021", "1204 | 1205", "billed", "one DID"),
    ("lesnet", "D4E3CD2BFC791 | 12046664021", "peer", "billed", "DID 'peer'"),
]


@pytest.mark.parametrize(("server_type", "domain", "billed", "which", "why"), INVALID)
def test_a_field_that_does_not_parse_shows_the_form_and_the_example(
    server_type, domain, billed, which, why
):
    with pytest.raises(UsageError) as caught:
        parse_fields(server_type, domain, billed)
    message = str(caught.value)
    form = FORMS[(server_type, which)]
    assert message.startswith(form.label)
    assert why in message
    assert f'expected "{form.form}", e.g. "{form.example}"' in message
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_an_unknown_server_type_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown server type 'freeswitch'"):
        parse_fields("freeswitch", "a | 1", "")


def test_long_or_odd_input_is_shortened_and_kept_on_one_line():
    with pytest.raises(UsageError) as caught:
        parse_fields("fusionpbx", "x\n" * 200, "")
    message = str(caught.value)
    assert "\n" not in message
    assert len(message) < 400


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["fusionpbx", "vodia", "lesnet"]),
    st.text(),
    st.one_of(st.none(), st.text()),
)
def test_any_text_parses_or_is_refused_with_usage_error(server_type, domain, billed):
    try:
        columns = parse_fields(server_type, domain, billed)
    except UsageError as exc:
        assert "expected" in str(exc)
        return
    assert set(columns) == {"tenant", "peer_id", "main_did", "dids", "extensions"}
    assert columns["main_did"] == columns["dids"][0]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["|", " ", "5192229000", "a.b", "2112", "", "\t", "+1"]), max_size=8)
)
def test_near_valid_fields_never_raise_anything_else(pieces):
    text = "".join(pieces)
    for server_type in ("fusionpbx", "vodia", "lesnet"):
        for billed in ("", text):
            with contextlib.suppress(UsageError):
                parse_fields(server_type, text, billed)
