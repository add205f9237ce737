"""Hostile product fields and rate decks: parsed, or refused clearly; nothing half-written."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.support.fuzzing import FUZZ
from voipctl.errors import DataError, UsageError, VoipctlError
from voipctl.providers.fields import SERVER_TYPES, parse_fields
from voipctl.rating.deck import import_deck_file
from voipctl.store.models import DeckVersion, Product, Rate

HOSTILE = [
    "'); DROP TABLE services;--",
    "=cmd|' /C calc'!A0",
    "{{ 7*7 }}",
    "{$client_first_name}",
    "\x00",
    "\u202e",
    "٣٣٣",
    "5192229000\n",
    "+",
    "|",
    "||",
    " | ",
]
parts = st.one_of(
    st.sampled_from(
        ["mcon.wat7.ictvoip.ca", "5192229000", "+15192229000", "2112", "8300", "D4E3CD2BFC791"]
    ),
    st.sampled_from(HOSTILE),
    st.text(max_size=12),
)
field_text = st.lists(parts, max_size=5).flatmap(
    lambda ps: st.sampled_from(["|", " | ", "||", ","]).map(lambda sep: sep.join(ps))
)


@FUZZ
@given(
    server_type=st.sampled_from([*SERVER_TYPES, "freeswitch", ""]),
    domain=field_text,
    billed=field_text,
)
def test_any_product_field_parses_or_is_refused_with_the_expected_form(server_type, domain, billed):
    try:
        columns = parse_fields(server_type, domain, billed)
    except UsageError as exc:
        message = str(exc)
        assert "expected" in message
        assert "\n" not in message.replace("\\n", ""), "one line, input shown with repr"
        return
    assert set(columns) >= {"tenant", "peer_id", "main_did", "dids", "extensions"}
    for value in [columns["tenant"], columns["peer_id"], columns["main_did"]]:
        assert value is None or ("|" not in value and value == value.strip() and value)
    for value in columns["dids"]:
        assert value.lstrip("+").isascii() and value.lstrip("+").isdigit()


# --- rate decks --------------------------------------------------------------------------------

cells = st.one_of(
    st.sampled_from(
        ["1519", "44", "0.0100", "0.01", "-1", "1e9", "NaN", "60/6", "6", "0/0", "", *HOSTILE]
    ),
    st.text(max_size=10),
)
headers = st.sampled_from(
    [
        ["prefix", "rate", "description"],
        ["Description", "Prefix", "RateValue", "Increment"],
        ["Code", "Destination", "Connection Cost", "Cost / Min", "Initial Increment", "Increment"],
        ["prefix", "prefix", "rate"],
        ["rate"],
        [],
    ]
)


def _deck_csv(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _counts(session) -> tuple[int, int]:
    return (
        session.scalar(select(func.count()).select_from(DeckVersion)),
        session.scalar(select(func.count()).select_from(Rate)),
    )


@FUZZ
@given(header=headers, rows=st.lists(st.lists(cells, min_size=1, max_size=6), max_size=6))
def test_any_deck_imports_whole_or_not_at_all(store, tmp_path, header, rows):
    from datetime import UTC, datetime

    path = tmp_path / "deck.csv"
    path.write_text(_deck_csv(header, rows), encoding="utf-8")
    with store.transaction() as session:
        if session.scalar(select(Product).where(Product.name == "fuzz")) is None:
            session.add(Product(name="fuzz", created_at=datetime.now(UTC)))
    with store.transaction() as session:
        before = _counts(session)
    try:
        result = import_deck_file(store, "fuzz", path)
    except (DataError, UsageError) as exc:
        assert str(path) in str(exc) or "deck" in str(exc).lower(), str(exc)
        with store.transaction() as session:
            assert _counts(session) == before, "a refused deck left rows behind"
        return
    except VoipctlError as exc:  # any other of ours is still a clear error, but say which
        raise AssertionError(f"unexpected {type(exc).__name__}: {exc}") from None
    with store.transaction() as session:
        versions, rates = _counts(session)
    assert versions == before[0] + 1
    assert rates - before[1] == sum(result.rows.values())


@FUZZ
@given(data=st.binary(max_size=200))
def test_any_bytes_as_a_deck_are_refused_cleanly(store, tmp_path, data):
    from datetime import UTC, datetime

    path = tmp_path / "deck.csv"
    path.write_bytes(b"prefix,rate\n" + data)
    with store.transaction() as session:
        if session.scalar(select(Product).where(Product.name == "fuzz")) is None:
            session.add(Product(name="fuzz", created_at=datetime.now(UTC)))
        before = _counts(session)
    try:
        import_deck_file(store, "fuzz", path)
    except (DataError, UsageError):
        with store.transaction() as session:
            assert _counts(session) == before
