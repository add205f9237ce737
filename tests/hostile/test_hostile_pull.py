"""Hostile text end to end: caller IDs and names carrying SQL, spreadsheet formulas and
template syntax are stored as they came, shown inertly by `voipctl cdrs`, and never
evaluated in an email; a row the database cannot hold fails the pull cleanly.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.invariants import check_invariants
from tests.support.smtp_sink import SmtpSink

PEER, DID = "D4E3CD2BFC791", "12046664021"
SQL = "'); DROP TABLE cdrs;--"
FORMULA = "=cmd|' /C calc'!A0"
JINJA = "{{ 7*7 }}"
SMARTY = "{$client_first_name}"
PAYLOADS = [SQL, FORMULA, JINJA, SMARTY]


def lesnet_file(path: Path, rows: list[list[str]]) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "src", "dst", "duration", "peer", "did"])
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def row(second: int, caller: str, number: str = "15195550100", seconds: str = "65") -> list[str]:
    return [f"2026-11-20 09:15:{second:02d}", caller, number, seconds, PEER, DID]


@pytest.fixture
def setup(cli, tmp_path):
    """A LES.NET service whose client's names are hostile too; SMTP to a real sink."""
    with SmtpSink() as sink:
        config = tmp_path / "voipctl.toml"
        config.write_text(
            f'[email]\nsmtp_host = "127.0.0.1"\nsmtp_port = {sink.port}\n'
            'from = "billing@example.com"\n\n'
            '[servers.lesnet]\ntype = "lesnet"\n'
        )
        link = tmp_path / "cdrs.txt"
        lesnet_file(link, [])
        for argv in (
            ["product", "add", "std"],
            [
                "client", "add", "1", "--first-name", JINJA, "--last-name", SMARTY,
                "--company", FORMULA, "--email", "client1@example.com",
                "--has-voip-service", "--low-balance-threshold", "5.00",
            ],
            [
                "service", "add", "--client", "1", "--product", "std", "--server", "lesnet",
                "--domain", f"{PEER} | {DID}", "--cdr-link", str(link),
            ],
            ["credit", "add", "1", "1.00", "--reference", "t1"],
        ):  # fmt: skip
            result = cli(*argv, config=config)
            assert result.exit_code == 0, (argv, result.output)
        yield cli, config, link, sink


def pull(cli, config):
    return cli("pull-cdrs", "--since", "2026-11-01", "--until", "2026-12-01", config=config)


def test_hostile_caller_ids_are_stored_and_shown_inertly(setup, store):
    cli, config, link, _ = setup
    lesnet_file(link, [row(i, payload) for i, payload in enumerate(PAYLOADS)])
    result = pull(cli, config)
    assert result.exit_code == 0, result.output

    with store.engine.connect() as conn:
        stored = sorted(conn.execute(text("SELECT caller FROM cdrs")).scalars())
        tables = conn.execute(text("SELECT COUNT(*) FROM services")).scalar()
    assert stored == sorted(PAYLOADS)
    assert tables == 1  # the SQL in a caller ID was data, nothing else

    shown = cli("cdrs", "1", "--all", "--utc", "--format", "json", config=config)
    assert shown.exit_code == 0, shown.output
    assert sorted(r["caller"] for r in json.loads(shown.stdout)) == sorted(PAYLOADS)

    table = cli("cdrs", "1", "--all", "--utc", "--wide", config=config)
    assert table.exit_code == 0, table.output
    for payload in PAYLOADS:
        assert payload in table.stdout
    assert "49" not in table.stdout.replace("15195550100", "")

    as_csv = cli("cdrs", "1", "--all", "--utc", "--format", "csv", config=config)
    cells = [cell for r in csv.reader(io.StringIO(as_csv.stdout)) for cell in r]
    assert "'" + FORMULA in cells and FORMULA not in cells  # neutralised for spreadsheets
    assert SQL in cells and JINJA in cells and SMARTY in cells
    raw = cli("cdrs", "1", "--all", "--utc", "--format", "csv", "--raw", config=config)
    assert FORMULA in [c for r in csv.reader(io.StringIO(raw.stdout)) for c in r]


def test_template_syntax_in_client_fields_is_never_evaluated_in_emails(setup, store):
    cli, config, link, sink = setup
    lesnet_file(link, [row(1, DID, seconds="600")])
    assert pull(cli, config).exit_code == 0
    cli("rate", config=config)  # may exit 1 for calls without a rate; emails do not need it
    cli("credit", "adjust", "1", "-0.90", "--note", "down to the threshold", config=config)
    result = cli("low-balance", config=config)
    assert result.exit_code == 0, result.output

    assert sink.received == 1
    message = sink.messages[0]
    body = message.get_payload(decode=True).decode() if not message.is_multipart() else ""
    if message.is_multipart():
        body = message.get_body(preferencelist=("plain",)).get_content()
    assert JINJA in body, body  # the first name, greeted as typed
    assert "49" not in body.replace("0.10", "")
    with store.engine.connect() as conn:
        outbox = conn.execute(text("SELECT body_text FROM outbox")).scalar_one()
    assert JINJA in outbox
    check_invariants(store, smtp=sink)


@pytest.mark.parametrize(
    ("bad_row", "why"),
    [
        pytest.param(
            row(5, "5195550100\x00' OR 1=1"),
            "NUL in the caller: PostgreSQL text cannot hold it",
            id="nul",  # PostgreSQL refused the whole chunk: 'database error', no server named
        ),
        pytest.param(
            row(5, DID, seconds="99999999999999999999"),
            "seconds beyond any integer column",
            id="huge-seconds",  # was an OverflowError traceback in lesnet._read
        ),
    ],
)
def test_a_row_the_database_cannot_hold_fails_the_pull_cleanly(setup, store, bad_row, why):
    cli, config, link, _ = setup
    lesnet_file(link, [row(1, DID), bad_row, row(9, DID, number="15195550199")])
    first = pull(cli, config)
    assert "Traceback" not in first.output
    if first.exit_code == 0:
        # Stored as inert text (SQLite keeps NUL): exactly the three calls, once.
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM cdrs")).scalar() == 3, why
    else:
        # Set aside, the other two stored; a later run does not name it again.
        assert first.exit_code == 1, first.output
        assert first.stderr.startswith("pull-cdrs: lesnet: set aside link:"), first.stderr
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM cdrs")).scalar() == 2, why
            assert conn.execute(text("SELECT COUNT(*) FROM rejected_records")).scalar() == 1
    again = pull(cli, config)
    assert again.exit_code == 0, again.output
    check_invariants(store)


def test_a_nul_in_a_caller_is_stored_as_a_replacement_character(setup, store):
    cli, config, link, _ = setup
    lesnet_file(link, [row(5, "5195550100\x00' OR 1=1")])
    assert pull(cli, config).exit_code == 0
    with store.engine.connect() as conn:
        callers = conn.execute(text("SELECT caller FROM cdrs")).scalars().all()
    assert callers == ["5195550100\ufffd' OR 1=1"]
