"""Issue 13 item 3: every line printed for a person is inert, not only tables.

A client name, a destination, a provider id or a provider's record holding
ESC sequences (clear screen, OSC 52 clipboard), CR/LF or a bidi override is
printed escaped by `explain`, `statement`, `client show`, `service show`,
`cdrs` and error lines; JSON and CSV still carry the data exactly.
"""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from sqlalchemy import update

from tests.support.support_data import add_cdr, add_client, add_product, add_service, rated, utc
from voipctl.store.models import Client

# Clear screen, set the clipboard (OSC 52), forge a line, flip the text direction.
HOSTILE = "\x1b[2J\x1b]52;c;eA==\x07\r\nFORGED\u202e\x9b"  # fits a 32-character column
SHOWN = "\\x1b[2J\\x1b]52;c;eA==\\x07\\x0d\\x0aFORGED\\u202e\\x9b"
# Anything a terminal acts on, bar the line breaks voipctl itself prints.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def hostile(store):
    with store.transaction() as s:
        client = add_client(s, 42)
        s.execute(
            update(Client)
            .where(Client.id == 42)
            .values(first_name=HOSTILE, last_name="Lovelace", company=HOSTILE)
        )
        svc = add_service(
            s, client, add_product(s), domain_field="evil" + HOSTILE, tenant="t" + HOSTILE
        )
        start = utc("2026-11-04 15:00:00")
        cdr = add_cdr(
            s,
            svc,
            start,
            number="1519" + HOSTILE,
            caller=HOSTILE,
            provider_id="id" + HOSTILE,
            raw=json.dumps({"uuid": HOSTILE, HOSTILE: "x"}),
            hangup_cause=HOSTILE,
            **rated("0.0110", description=HOSTILE, normalized="1519" + HOSTILE),
        )
        return {"cdr": cdr.id, "service": svc.id}


def assert_inert(result):
    assert result.exit_code == 0, result.output
    for stream in (result.stdout, result.stderr):
        found = RAW_CONTROL.findall(stream)
        assert found == [], f"raw control characters {found!r} in {stream!r}"
        assert not any(line.startswith("FORGED") for line in stream.split("\n"))
    return result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("explain", "{cdr}"),
        ("statement", "42", "--from", "2026-11-01", "--to", "2026-11-30"),
        ("client", "show", "42"),
        ("client", "list"),
        ("service", "show", "{service}"),
        ("service", "list"),
        ("cdrs", "42", "--from", "2026-11-01", "--to", "2026-11-30", "--wide"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_human_output_escapes_every_control_character(cli, hostile, args):
    out = assert_inert(cli(*(a.format(**hostile) for a in args)))
    assert SHOWN in out


def test_explain_shows_the_record_and_the_names_escaped(cli, hostile):
    out = assert_inert(cli("explain", str(hostile["cdr"])))
    assert f"to 1519{SHOWN}" in out
    assert f"  client       42 {SHOWN} Lovelace {SHOWN} (UTC)" in out
    assert f"provider id id{SHOWN}" in out
    assert f"hangup {SHOWN}" in out


def test_statement_header_names_the_client_escaped(cli, hostile):
    out = assert_inert(cli("statement", "42", "--from", "2026-11-01", "--to", "2026-11-30"))
    assert out.splitlines()[0] == f"Statement of client 42 ({SHOWN} Lovelace), CAD"


def test_json_and_csv_carry_the_data_exactly(cli, hostile):
    result = cli("explain", str(hostile["cdr"]), "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["call"]["provider_id"] == "id" + HOSTILE
    assert doc["call"]["number"] == "1519" + HOSTILE
    result = cli("cdrs", "42", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert "1519" + HOSTILE in rows[0].values()
    result = cli("client", "show", "42", "--format", "json")
    assert json.loads(result.stdout)["first_name"] == HOSTILE


def test_an_error_line_that_quotes_data_stays_one_inert_line(cli, hostile):
    result = cli("product", "show", HOSTILE)
    assert result.exit_code == 2, result.output
    assert RAW_CONTROL.findall(result.stderr) == []
    lines = result.stderr.split("\n")
    assert lines[-1] == ""
    assert all(line.startswith("voipctl: error: ") for line in lines[:-1]), lines


def test_every_line_of_an_error_is_marked_and_escaped(capsys):
    from voipctl.cli import _err

    _err(f"les1: CDR {HOSTILE}: bad")
    err = capsys.readouterr().err
    assert err == (
        "voipctl: error: les1: CDR \\x1b[2J\\x1b]52;c;eA==\\x07\\x0d\n"
        "voipctl: error: FORGED\\u202e\\x9b: bad\n"
    )
