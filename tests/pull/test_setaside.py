"""A record that cannot be read or stored is set aside, not the run stopped (docs/providers.md,
"Records set aside"): the rest stored, named once on one line, retried on demand."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
from sqlalchemy import select, text

from tests.providers.fusionpbx.test_fusionpbx_export import (
    KEY,
    SINCE,
    UNTIL,
    _ExportHandler,
    payload,
)
from tests.support.fusionpbx_env import TENANT
from voipctl.config import load_config
from voipctl.jobs.pull_cdrs import pull_cdrs
from voipctl.providers import adapter_for
from voipctl.providers.base import digest
from voipctl.providers.fusionpbx import adapter as fusionpbx_module
from voipctl.providers.vodia.adapter import VodiaAdapter
from voipctl.store.models import Cdr, RejectedRecord

HINT = "(voipctl pull-cdrs --retry-rejected after a fix)"


def rejected(store) -> list[tuple]:
    with store.transaction() as session:
        return [
            (r.server, r.scope, r.locator, r.resolved_at is None)
            for r in session.scalars(select(RejectedRecord).order_by(RejectedRecord.id))
        ]


def stored_ids(store) -> list[str]:
    with store.transaction() as session:
        return list(session.scalars(select(Cdr.provider_id).order_by(Cdr.provider_id)))


def test_a_broken_export_line_is_set_aside_once_then_retried(cli, store, tmp_path, monkeypatch):
    handler = type("BadBillsec", (_ExportHandler,), {"scenario": "bad_billsec", "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("FUSION1_API_KEY", KEY)
        monkeypatch.setenv("FUSION1_DB_URL", "postgresql://voipctl@127.0.0.1:9/fusionpbx")
        config = tmp_path / "fusion.toml"
        config.write_text(
            '[servers.fusion1]\ntype = "fusionpbx"\nmode = "export"\n'
            f'url = "http://127.0.0.1:{server.server_address[1]}"\n'
            'api_key_env = "FUSION1_API_KEY"\ndb_url_env = "FUSION1_DB_URL"\n'
            'suspend = "domain"\ntimeout_s = 5\ntimezone = "America/Toronto"\n',
            encoding="utf-8",
        )
        assert cli("product", "add", "Metered", config=config).exit_code == 0
        assert cli(
            "client", "add", "42", "--first-name", "Ada", "--last-name", "Lovelace",
            "--email", "ada@example.com", "--has-voip-service", config=config,
        ).exit_code == 0  # fmt: skip
        added = cli(
            "service", "add", "--client", "42", "--product", "Metered", "--server", "fusion1",
            "--domain", f"{TENANT} | 5192229000", "--billed", "2112 | 2113", config=config,
        )  # fmt: skip
        assert added.exit_code == 0, added.output
        window = ("--since", SINCE.isoformat(), "--until", UNTIL.isoformat())

        first = cli("pull-cdrs", *window, config=config)
        line3 = payload("bad_billsec").decode().split("\n")[2]
        assert first.exit_code == 1, first.output
        assert first.stderr == (
            f"pull-cdrs: fusion1: set aside service:1 {digest(line3)}: "
            f"/app/xml_cdr/xml_cdr_export.php line 3: billsec '6O' is not a number {HINT}\n"
        )
        assert stored_ids(store) == ["90c192cf-d3ac-44af-8f21-ddb66cad4a26"]
        assert rejected(store) == [("fusion1", "service:1", digest(line3), True)]

        # The same window again (the overlap a later run reads): not named twice.
        again = cli("pull-cdrs", *window, config=config)
        assert again.exit_code == 0, again.output
        assert again.stderr == ""
        assert len(rejected(store)) == 1

        # Before a fix, the retry says it is still set aside.
        still = cli("pull-cdrs", "--retry-rejected", config=config)
        assert still.exit_code == 1
        assert still.stderr == (
            f"pull-cdrs: fusion1: still set aside service:1 {digest(line3)}: "
            "/app/xml_cdr/xml_cdr_export.php line 2: billsec '6O' is not a number\n"
        )
        assert still.stdout == (
            "pull-cdrs: retried 1 set-aside records: 0 resolved (0 calls stored), "
            "1 still set aside\n"
        )

        # A fix of the reading code (here: a letter O typed for a zero read as 0).
        real = fusionpbx_module._billsec
        monkeypatch.setattr(
            fusionpbx_module,
            "_billsec",
            lambda value, where, name: real(str(value).replace("O", "0"), where, name),
        )
        fixed = cli("pull-cdrs", "--retry-rejected", "--server", "fusion1", config=config)
        assert fixed.exit_code == 0, fixed.output
        assert fixed.stdout == (
            "pull-cdrs: retried 1 set-aside records: 1 resolved (1 calls stored), "
            "0 still set aside\n"
        )
        assert stored_ids(store) == [
            "6513270e-269e-4d37-b2a7-4de452e6b438",
            "90c192cf-d3ac-44af-8f21-ddb66cad4a26",
        ]
        with store.transaction() as session:
            billsec = session.scalar(
                select(Cdr.billsec).where(Cdr.provider_id == "6513270e-269e-4d37-b2a7-4de452e6b438")
            )
        assert billsec == 60
        assert rejected(store) == [("fusion1", "service:1", digest(line3), False)]
        # Nothing left to retry.
        done = cli("pull-cdrs", "--retry-rejected", config=config)
        assert done.exit_code == 0
        assert done.stdout == (
            "pull-cdrs: retried 0 set-aside records: 0 resolved (0 calls stored), "
            "0 still set aside\n"
        )
    finally:
        server.shutdown()
        server.server_close()


def test_retry_rejected_takes_server_only(cli, tmp_path):
    config = tmp_path / "empty.toml"
    config.write_text("")
    result = cli("pull-cdrs", "--retry-rejected", "--since", "2026-11-01", config=config)
    assert result.exit_code == 2
    assert (
        "--retry-rejected takes --server only (not --client, --service, --since, --until or "
        "--dry-run)" in result.stderr
    )


PEER, DID = "D4E3CD2BFC791", "12046664021"


def lesnet_file(path: Path, rows: list[list[str]]) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["date", "src", "dst", "duration", "peer", "did"])
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_a_cost_beyond_any_column_sets_that_call_aside(cli, store, tmp_path):
    """LES.NET allows 2**31-1 seconds; with the call-length limit raised that far, on an
    expensive deck the cost overflows: that call is set aside, the others stored and rated."""
    config = tmp_path / "voipctl.toml"
    config.write_text('[pull]\nmax_call_seconds = 2147483647\n[servers.lesnet]\ntype = "lesnet"\n')
    link = tmp_path / "cdrs.txt"
    deck = tmp_path / "deck.csv"
    deck.write_text("prefix,rate\n1,999999.0000\n")
    for argv in (
        ["product", "add", "dear"],
        ["rates", "import", "dear", str(deck), "--effective", "2000-01-01"],
        ["client", "add", "1", "--first-name", "A", "--last-name", "B",
         "--email", "a@example.com", "--has-voip-service"],
        ["service", "add", "--client", "1", "--product", "dear", "--server", "lesnet",
         "--domain", f"{PEER} | {DID}", "--cdr-link", str(link)],
    ):  # fmt: skip
        result = cli(*argv, config=config)
        assert result.exit_code == 0, (argv, result.output)
    rows = [
        ["2026-11-20 09:15:01", DID, "15195550100", "65", PEER, DID],
        ["2026-11-20 09:15:02", DID, "15195550101", "2147483647", PEER, DID],
        ["2026-11-20 09:15:03", DID, "15195550102", "30", PEER, DID],
    ]
    lesnet_file(link, rows)
    window = ("--since", "2026-11-01", "--until", "2026-12-01")
    first = cli("pull-cdrs", *window, config=config)
    assert first.exit_code == 1, first.output
    assert first.stderr.startswith(f"pull-cdrs: lesnet: set aside link:{link} "), first.stderr
    assert "rating: OverflowError" in first.stderr and first.stderr.endswith(f"{HINT}\n")
    assert len(first.stderr.splitlines()) == 1
    with store.engine.connect() as conn:
        calls = conn.execute(text("SELECT number, status FROM cdrs ORDER BY number")).all()
    assert [c[0] for c in calls] == ["15195550100", "15195550102"]
    assert all(c[1] is not None for c in calls)  # rated in the pass that stored them
    assert len(rejected(store)) == 1
    again = cli("pull-cdrs", *window, config=config)
    assert again.exit_code == 0, again.output


VODIA_TENANT = "rucken.wat1.ictvoip.ca"
VODIA_WINDOW = {
    "since": datetime(2026, 11, 1, tzinfo=UTC),
    "until": datetime(2026, 12, 1, tzinfo=UTC),
}
# The webcdr keys and float times (https://doc.vodia.com/docs/webcdr); the extensions and
# trunks lists are unverified (docs/providers.md, "Vodia: facts and sources").
GOOD_ITEM = {
    "callid": "20753",
    "from": '"Front Desk" <sip:8300@rucken.wat1.ictvoip.ca>',
    "to": '"5197830020" <sip:5197830020@rucken.wat1.ictvoip.ca>',
    "start": 1795572559.444,
    "connect": 1795572561.120,
    "end": 1795572656.860,
    "extensions": ["8300"],
    "trunks": ["106"],
}


def test_a_lone_surrogate_in_a_vodia_field_sets_that_call_aside(cli, store, tmp_path):
    config = tmp_path / "voipctl.toml"
    config.write_text('[servers.vodia1]\ntype = "vodia"\nurl = "https://vodia.test"\nretries = 0\n')
    for argv in (
        ["product", "add", "std"],
        ["client", "add", "1", "--first-name", "A", "--last-name", "B",
         "--email", "a@example.com", "--has-voip-service"],
        ["service", "add", "--client", "1", "--product", "std", "--server", "vodia1",
         "--domain", f"{VODIA_TENANT} | 5197830020", "--billed", "8300", "--trunk", "106"],
    ):  # fmt: skip
        result = cli(*argv, config=config)
        assert result.exit_code == 0, (argv, result.output)
    bad = {**GOOD_ITEM, "callid": "20754", "from": '"Bad \\ud800" <sip:8300@x>'}
    # Written as JSON text by hand: json.dumps would refuse nothing, but a lone
    # surrogate escape is valid JSON that Python reads as an unencodable str.
    body = "[" + json.dumps(GOOD_ITEM) + "," + json.dumps(bad).replace("\\\\ud800", "\\ud800") + "]"

    def handler(request):
        if request.url.params.get("page", "1") != "1":
            return httpx.Response(200, json=[])
        return httpx.Response(200, content=body.encode())

    def factory(name, cfg):
        VodiaAdapter.backoff_s = 0
        return VodiaAdapter(name, cfg, transport=httpx.MockTransport(handler))

    report = pull_cdrs(
        store, load_config(str(config)), adapter_factory=factory, rate=True, **VODIA_WINDOW
    )
    assert report.failures == []
    assert len(report.set_aside) == 1
    line = report.set_aside[0]
    assert line.startswith("pull-cdrs: vodia1: set aside service:1 20754: UnicodeEncodeError: ")
    assert line.endswith(HINT) and "\n" not in line
    assert stored_ids(store) == ["20753"]
    again = pull_cdrs(
        store, load_config(str(config)), adapter_factory=factory, rate=True, **VODIA_WINDOW
    )
    assert again.set_aside == [] and again.exit_code == 0


def test_kept_text_is_escaped_reversibly_and_bounded():
    from voipctl.providers.rejected import RAW_MAX, escape, unescape, was_cut

    hostile = 'a\\x41 \x1b]52;c;Zm9v\x07 \u202e\ud800 "q",\r\n\x85 é'
    kept = escape(hostile)
    assert kept == 'a\\\\x41 \\x1b]52;c;Zm9v\\x07 \\u202e\\ud800 "q",\\x0d\\x0a\\x85 é'
    assert kept.isprintable() and unescape(kept) == hostile and not was_cut(kept)
    long = escape("\x01" * RAW_MAX)
    assert len(long) <= RAW_MAX and was_cut(long)
    assert long.endswith("\\x01\\[cut]")  # never cut inside an escape


def test_a_page_nested_too_deep_is_that_server_s_error_and_the_others_pull(cli, store, tmp_path):
    """A RecursionError reading one Vodia page was an internal error that stopped every
    server after it; it is that server's error, and the LES.NET server pulled after it is stored."""
    config = tmp_path / "voipctl.toml"
    link = lesnet_file(
        tmp_path / "cdrs.txt", [["2026-11-20 09:15:01", DID, "15195550100", "65", PEER, DID]]
    )
    config.write_text(
        '[servers.xles]\ntype = "lesnet"\n\n'
        '[servers.vodia1]\ntype = "vodia"\nurl = "https://vodia.test"\nretries = 0\n'
    )
    for argv in (
        ["product", "add", "std"],
        ["client", "add", "1", "--first-name", "A", "--last-name", "B",
         "--email", "a@example.com", "--has-voip-service"],
        ["service", "add", "--client", "1", "--product", "std", "--server", "vodia1",
         "--domain", f"{VODIA_TENANT} | 5197830020", "--billed", "8300", "--trunk", "106"],
        ["service", "add", "--client", "1", "--product", "std", "--server", "xles",
         "--domain", f"{PEER} | {DID}", "--cdr-link", str(link)],
    ):  # fmt: skip
        result = cli(*argv, config=config)
        assert result.exit_code == 0, (argv, result.output)
    deep = b"[" * 100_000 + b"]" * 100_000

    def factory(name, cfg):
        if name != "vodia1":
            return adapter_for(name, cfg)
        VodiaAdapter.backoff_s = 0
        transport = httpx.MockTransport(lambda request: httpx.Response(200, content=deep))
        return VodiaAdapter(name, cfg, transport=transport)

    report = pull_cdrs(store, load_config(str(config)), adapter_factory=factory, **VODIA_WINDOW)
    assert report.failures == [
        f"vodia1: GET /rest/domain/{VODIA_TENANT}/cdrs answered with JSON nested too deep to read"
    ]
    assert [(s.server, s.stored) for s in report.servers] == [("vodia1", 0), ("xles", 1)]


def test_a_dry_run_names_what_it_would_set_aside_and_writes_nothing(cli, store, tmp_path):
    config = tmp_path / "voipctl.toml"
    config.write_text('[servers.lesnet]\ntype = "lesnet"\n')
    link = tmp_path / "cdrs.txt"
    link.write_text(
        "date,src,dst,duration,peer,did\n"
        f"2026-11-20 09:15:01,{DID},15195550100,65,{PEER},{DID}\n"
        "2026-11-20 09:15:02,short\n",
        encoding="utf-8",
    )
    for argv in (
        ["product", "add", "std"],
        ["client", "add", "1", "--first-name", "A", "--last-name", "B",
         "--email", "a@example.com", "--has-voip-service"],
        ["service", "add", "--client", "1", "--product", "std", "--server", "lesnet",
         "--domain", f"{PEER} | {DID}", "--cdr-link", str(link)],
    ):  # fmt: skip
        assert cli(*argv, config=config).exit_code == 0, argv
    window = ("--since", "2026-11-01", "--until", "2026-12-01")
    locator = digest("2026-11-20 09:15:02,short\n")
    said = (
        f"lesnet: {{}} link:{link} {locator}: CDR link {link} line 3: 2 columns, "
        f"expected at least 6 {HINT}\n"
    )
    dry = cli("pull-cdrs", "--dry-run", *window, config=config)
    assert dry.exit_code == 1, dry.output
    assert dry.stderr == "pull-cdrs: " + said.format("would set aside")
    assert rejected(store) == [] and stored_ids(store) == []
    real = cli("pull-cdrs", *window, config=config)
    assert real.exit_code == 1, real.output
    assert real.stderr == "pull-cdrs: " + said.format("set aside")
    assert rejected(store) == [("lesnet", f"link:{link}", locator, True)]
    assert len(stored_ids(store)) == 1
