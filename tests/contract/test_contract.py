"""docs/cli.md's contract, promise by promise: commands, options, JSON keys, money and times,
exit codes, configuration, summaries and dry runs.

Each table below is a transcription of docs/cli.md; a row that fails names the promise broken.
Where the README's "Choices and departures" documents a deliberate difference, the test
follows the README and says so.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import click
import httpx
import pytest
import respx
from sqlalchemy import select, text

from tests.support.fusionpbx_env import TENANT, db_mode_config
from tests.support.fusionpbx_env import service as fusion_service
from voipctl.cli import load_command, run
from voipctl.config import FusionPBXServer, LesnetServer, VodiaServer, load_config
from voipctl.errors import ProviderAuthError, ProviderError
from voipctl.providers.base import ServiceInfo
from voipctl.providers.fusionpbx.adapter import FusionPBXAdapter
from voipctl.providers.lesnet.adapter import LesnetAdapter
from voipctl.providers.vodia.adapter import VodiaAdapter
from voipctl.sim import SimConfig, Simulator
from voipctl.store import models
from voipctl.store.locks import job_lock

# --- the command tree: every command, subcommand and option docs/cli.md names -----------------


def _command(path: str) -> click.Command:
    words = path.split()
    command = load_command(words[0])
    assert command is not None, f"voipctl {words[0]} does not exist"
    for word in words[1:]:
        assert isinstance(command, click.Group), f"voipctl {path}: {word} is not a subcommand"
        command = command.get_command(click.Context(command), word)
        assert command is not None, f"voipctl {path} does not exist"
    return command


def _options(command: click.Command) -> dict[str, click.Parameter]:
    names: dict[str, click.Parameter] = {}
    for param in command.params:
        for name in (*param.opts, *getattr(param, "secondary_opts", ())):
            names[name] = param
    return names


# `product add` and `product set` take the same settings; so do `client add` and `client set`.
PRODUCT_SETTINGS = (
    "--metered --unmetered --country-code --exit-code --national-prefix --prepend-country-code "
    "--nanp-10-digit --no-nanp-10-digit --markup --free-minutes --bill-inbound --no-bill-inbound "
    "--increment --decimals --exclude --suppress --inbound-increment --max-internal-digits "
    "--area-code"
)
CLIENT_FIELDS = (
    "--first-name --last-name --email --company --currency --low-balance-threshold "
    "--has-voip-service --no-has-voip-service --credit-limit --timezone"
)
SERVICE_FIELDS = "--domain --billed --gateway --trunk --first-name --inbound-search --cdr-link"

# (command, options docs/cli.md gives it), word for word.
OPTIONS = [
    ("db upgrade", ""),
    ("demo", ""),
    ("simulate", "--host --port"),
    ("server list", ""),
    ("server check", ""),
    ("product add", PRODUCT_SETTINGS),
    ("product set", PRODUCT_SETTINGS),
    ("product list", "--format"),
    ("product show", "--format"),
    ("rates import", "--effective --dry-run"),
    ("rates override", "--increment --direction --remove"),
    ("rates list", "--prefix --at --format"),
    ("rates versions", "--format"),
    ("rates quote", "--direction --at --format"),
    ("client add", CLIENT_FIELDS),
    ("client set", f"{CLIENT_FIELDS} --voip-suspended --manual-voip-suspend"),
    ("client list", "--format"),
    ("client show", "--format"),
    ("service add", f"--client --product --server {SERVICE_FIELDS}"),
    ("service set", SERVICE_FIELDS),
    ("service remove", ""),
    ("service list", "--client --format"),
    ("service show", "--format"),
    ("credit add", "--reference --note"),
    ("credit adjust", "--note"),
    ("balance", "--format"),
    ("invoice add", "--number --due"),
    ("invoice pay", ""),
    ("invoice list", "--client --unpaid"),
    ("statement", "--from --to --format"),
    ("pull-cdrs", "--server --client --service --since --until --dry-run"),
    ("rate", "--client --rerate --from --to --dry-run"),
    ("autobill", "--client --dry-run"),
    ("low-balance", "--dry-run"),
    ("auto-topup", "--retry --dry-run"),
    ("autosuspend", "--dry-run"),
    ("suspend", "--service --client --reason --dry-run"),
    ("unsuspend", "--service --client --reason --dry-run"),
    (
        "cdrs",
        "--service --from --to --direction --number --status --all --limit --utc --format --raw",
    ),
    ("explain", "--format"),
]


@pytest.mark.parametrize(("path", "names"), OPTIONS, ids=[p for p, _ in OPTIONS])
def test_every_command_and_option_of_cli_md_exists(path, names):
    options = _options(_command(path))
    missing = [name for name in names.split() if name not in options]
    assert not missing, f"voipctl {path} lacks {missing}"


# Choices docs/cli.md spells out.
CHOICES = [
    ("client set", "--voip-suspended", {"none", "yes", "no"}),
    ("client set", "--manual-voip-suspend", {"yes", "no"}),
    ("rates override", "--direction", {"outbound", "inbound"}),
    ("rates quote", "--direction", {"outbound", "inbound"}),
    ("cdrs", "--direction", {"outbound", "inbound"}),
    ("explain", "--format", {"table", "json"}),
]


@pytest.mark.parametrize(("path", "option", "choices"), CHOICES)
def test_choices_of_cli_md_are_accepted(path, option, choices):
    param = _options(_command(path))[option]
    assert choices <= set(param.type.choices)


# Every command that lists or shows data, and every command that creates something.
LISTS_OR_SHOWS = [
    "server list", "product list", "product show", "rates list", "rates versions",
    "rates quote", "client list", "client show", "service list", "service show", "balance",
    "invoice list", "statement", "cdrs",
]  # fmt: skip
CREATES = [
    "product add", "rates import", "rates override", "client add", "service add",
    "credit add", "credit adjust", "invoice add",
]  # fmt: skip


@pytest.mark.parametrize("path", LISTS_OR_SHOWS)
def test_listing_commands_take_format_table_csv_json_default_table(path):
    param = _options(_command(path))["--format"]
    assert set(param.type.choices) == {"table", "csv", "json"}
    assert param.default == "table"


@pytest.mark.parametrize("path", CREATES)
def test_creating_commands_take_format_json(path):
    assert "json" in _options(_command(path))["--format"].type.choices


JOBS = [
    "pull-cdrs",
    "rate",
    "autobill",
    "low-balance",
    "auto-topup",
    "autosuspend",
    "suspend",
    "unsuspend",
]


@pytest.mark.parametrize("path", JOBS)
def test_every_job_takes_dry_run(path):
    param = _options(_command(path))["--dry-run"]
    assert param.is_flag


def test_global_options(capsys):
    from voipctl.cli import cli

    names = _options(cli)
    for name in ("--config", "--db", "--env-file", "-v", "-q", "--log-format", "--version"):
        assert name in names, name
    assert set(names["--log-format"].type.choices) == {"text", "json"}
    assert run(["--version"]) == 0
    assert re.match(r"voipctl, version \S+", capsys.readouterr().out)


# --- a world to run the commands in: the provider simulator, a deck, one client, two services --


@pytest.fixture
def sim():
    with Simulator(SimConfig(seed=11, days=2, calls_per_day=8)) as simulator:
        yield simulator


@pytest.fixture
def world(cli, tmp_path, monkeypatch, sim):
    """Client 42 (Toronto) on Vodia and LES.NET with pulled, rated calls; returns `vc(...)`."""
    for name, value in sim.env().items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "voipctl-contract.toml"
    config.write_text(
        '[billing]\ncurrency = "CAD"\n\n'
        f'[email]\nfrom = "billing@example.com"\noperator = "noc@example.com"\n'
        f'capture_dir = "{tmp_path / "emails"}"\n\n' + sim.config_snippet()
    )

    def vc(*args):
        return cli(*args, config=config)

    deck = tmp_path / "deck.csv"
    deck.write_text("prefix,rate,description\n1,0.0200,North America\n1519,0.0100,Ontario\n")
    ok(vc("product", "add", "Standard", "--increment", "6/6"))
    ok(vc("rates", "import", "Standard", str(deck), "--effective", "2000-01-01"))
    ok(vc("client", "add", "42", "--first-name", "Ann", "--last-name", "Lee",
          "--email", "ann@example.com", "--has-voip-service", "--low-balance-threshold", "50",
          "--timezone", "America/Toronto"))  # fmt: skip
    ok(vc("credit", "add", "42", "10.00", "--reference", "pay-1"))
    for fields in sim.services()[0], sim.services()[2]:
        extra = ["--trunk", fields["trunk"]] if "trunk" in fields else []
        extra += ["--cdr-link", fields["cdr_link"]] if "cdr_link" in fields else []
        ok(vc("service", "add", "--client", "42", "--product", "Standard",
              "--server", fields["server"], "--domain", fields["domain"],
              "--billed", fields["billed"], *extra))  # fmt: skip
    ok(vc("pull-cdrs", "--since", sim.start_at.isoformat()))
    # Exit 1: some calls have no rate (the simulator dials abroad); the rest are rated.
    vc.first_rate = vc("rate", "-v")
    return vc


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def as_json(result):
    return json.loads(ok(result).stdout)


# Money keys of the JSON documents: strings in plain decimal notation with >= 2 decimals.
MONEY_KEYS = {
    "credit", "owing", "unbilled", "available", "cost", "rate", "amount", "connect_fee",
    "low_balance_threshold", "credit_limit", "balance", "opening_balance", "closing_balance",
}  # fmt: skip
MONEY_TEXT = re.compile(r"^-?\d+\.\d{2,}$")
# Time keys: ISO 8601 in UTC.
TIME_KEYS = {"start", "created_at", "updated_at", "effective_from", "paid_at", "imported_at"}
UTC_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def _walk(doc, path=""):
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _walk(value, f"{path}.{key}")
            yield key, value, f"{path}.{key}"
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _walk(value, f"{path}[{i}]")


def assert_money_and_times(doc) -> int:
    """Every money key is a plain-decimal string (or null); every time key is ISO UTC."""
    checked = 0
    for key, value, where in _walk(doc):
        # (invoice rows carry `owing` as a flag, true when unpaid and due: not an amount)
        if key in MONEY_KEYS and value is not None and not isinstance(value, bool | dict | list):
            assert isinstance(value, str), f"{where}: money {value!r} is not a string"
            assert MONEY_TEXT.match(value), f"{where}: {value!r} is not plain, 2+ decimals"
            Decimal(value)
            checked += 1
        if key in TIME_KEYS and value is not None:
            assert isinstance(value, str) and UTC_TEXT.match(value), f"{where}: {value!r}"
            checked += 1
    return checked


# (command line, keys with their JSON types) from docs/cli.md; `str|None` means string or null.
JSON_KEYS = {
    "balance": (
        ["balance", "42"],
        {"client_id": int, "credit": str, "owing": str, "currency": str},
    ),
    "client show": (
        ["client", "show", "42"],
        {
            "credit": str,
            "owing": str,
            "low_balance_threshold": (str, type(None)),
            "has_voip_service": bool,
            "voip_suspended": str,
            "manual_voip_suspend": bool,
            "services": list,
        },
    ),  # fmt: skip
    "rates quote": (
        ["rates", "quote", "Standard", "5195550100", "66"],
        {
            "number": str,
            "normalized": str,
            "status": str,
            "prefix": str,
            "description": str,
            "rate": str,
            "increment": str,
            "billable_seconds": int,
            "cost": str,
        },
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(JSON_KEYS))
def test_json_documents_have_the_keys_and_types_of_cli_md(world, name):
    argv, keys = JSON_KEYS[name]
    doc = as_json(world(*argv, "--format", "json"))
    for key, kind in keys.items():
        assert key in doc, f"{name}: no {key!r}"
        assert isinstance(doc[key], kind), f"{name}: {key} = {doc[key]!r}"
    assert_money_and_times(doc)


# docs/rating.md §6 statuses through `rates quote`: (product, number, seconds, status).
# `prefix` and `rate` are null when no row matched; `cost` is null only for no_rate and
# invalid_number, and "0"-valued for the statuses that cost nothing.
QUOTE_STATUSES = [
    ("Q", "18005550100", 60, "suppressed"),
    ("Q", "14165550100", 60, "excluded"),
    ("Q", "2112", 60, "internal"),
    ("Q", "abc", 60, "invalid_number"),
    ("Q", "15195550100", 0, "unanswered"),
    ("U", "15195550100", 60, "unmetered"),
    ("Q", "011861055448553", 60, "no_rate"),
]


@pytest.mark.parametrize(("product", "number", "seconds", "status"), QUOTE_STATUSES)
def test_rates_quote_prefix_rate_and_cost_by_status(
    cli, tmp_path, product, number, seconds, status
):
    deck = tmp_path / "deck.csv"
    deck.write_text("prefix,rate\n1,0.0200\n")
    ok(cli("product", "add", "Q", "--suppress", "1800xxxxxxx", "--exclude", "1416xxxxxxx"))
    ok(cli("product", "add", "U", "--unmetered"))
    for name in ("Q", "U"):
        ok(cli("rates", "import", name, str(deck), "--effective", "2000-01-01"))
    doc = as_json(cli("rates", "quote", product, number, str(seconds), "--format", "json"))
    assert doc["status"] == status
    assert doc["prefix"] is None and doc["rate"] is None
    if status in ("no_rate", "invalid_number"):
        assert doc["cost"] is None
    else:
        assert MONEY_TEXT.match(doc["cost"]) and Decimal(doc["cost"]) == 0


def test_client_show_services_have_id_server_product_suspended(world):
    doc = as_json(world("client", "show", "42", "--format", "json"))
    assert len(doc["services"]) == 2
    for service in doc["services"]:
        assert isinstance(service["id"], int)
        assert service["server"] in ("sim_vodia", "sim_lesnet")
        assert service["product"] == "Standard"
        assert service["suspended"] is False


CDR_KEYS = {
    "id": int, "service_id": int, "direction": str, "caller": (str, type(None)),
    "number": (str, type(None)), "normalized": (str, type(None)), "start": str, "billsec": int,
    "billable_seconds": (int, type(None)), "status": (str, type(None)),
    "prefix": (str, type(None)), "cost": (str, type(None)), "billed": bool,
}  # fmt: skip


def test_cdrs_json_rows_have_the_keys_of_cli_md_newest_first(world):
    rows = as_json(world("cdrs", "42", "--format", "json", "--all"))
    assert len(rows) > 5
    for row in rows:
        for key, kind in CDR_KEYS.items():
            assert isinstance(row[key], kind), f"cdr {row['id']}: {key} = {row.get(key)!r}"
    starts = [row["start"] for row in rows]
    assert starts == sorted(starts, reverse=True)
    assert assert_money_and_times(rows) >= len(rows)
    assert {row["status"] for row in rows} & {"rated"}


def test_cdrs_totals_line_only_in_table_format(world):
    table = ok(world("cdrs", "42")).stdout
    assert re.search(r"total: \d+ calls, [\d.]+ billable minutes, cost [\d.]+", table)
    csv_text = ok(world("cdrs", "42", "--format", "csv")).stdout
    assert "total:" not in csv_text
    json.loads(ok(world("cdrs", "42", "--format", "json")).stdout)  # one document, rows alone


def test_cdrs_limit_utc_and_number_pattern(world):
    rows = as_json(world("cdrs", "42", "--format", "json", "--all"))
    assert len(as_json(world("cdrs", "42", "--format", "json", "--all", "--limit", "2"))) == 2
    local = ok(world("cdrs", "42", "--format", "csv", "--all", "--limit", "1")).stdout
    utc_csv = ok(world("cdrs", "42", "--format", "csv", "--all", "--limit", "1", "--utc")).stdout
    assert re.search(r"-0[45]:00", local) and "+00:00" in utc_csv
    number = rows[0]["normalized"]
    found = as_json(world("cdrs", "42", "--format", "json", "--all", "--number", f"*{number[-4:]}"))
    assert found and all(
        (r["number"] or "").endswith(number[-4:]) or (r["normalized"] or "").endswith(number[-4:])
        for r in found
    )


def test_explain_tells_the_story_in_table_and_json(world):
    cdr = as_json(world("cdrs", "42", "--format", "json", "--status", "rated", "--limit", "1"))[0]
    doc = as_json(world("explain", str(cdr["id"]), "--format", "json"))
    assert doc["id"] == cdr["id"]
    assert doc["rating"]["cost"] == cdr["cost"]
    assert doc["provider_record"]
    text = ok(world("explain", str(cdr["id"]))).stdout
    assert f"CDR {cdr['id']}" in text and "formula" in text


# Creating commands: --format json prints the created object with its id.
def test_creating_commands_print_the_object_with_its_id(world, tmp_path, sim):
    deck = tmp_path / "deck2.csv"
    deck.write_text("prefix,rate\n44,0.05\n")
    lines = [
        ["product", "add", "Other"],
        ["rates", "import", "Other", str(deck)],
        ["rates", "override", "Other", "4420", "0.04"],
        ["client", "add", "43", "--first-name", "B", "--last-name", "C", "--email", "b@x.example"],
        ["service", "add", "--client", "43", "--product", "Other", "--server", "sim_lesnet",
         "--domain", "A1B2C3D4E5F60 | 12045550199", "--billed", "12045550199",
         "--cdr-link", sim.services()[3]["cdr_link"]],
        ["credit", "add", "43", "5.00"],
        ["credit", "adjust", "43", "-1.25", "--note", "goodwill reversed"],
        ["invoice", "add", "43", "3.00"],
    ]  # fmt: skip
    for argv in lines:
        doc = as_json(world(*argv, "--format", "json"))
        assert isinstance(doc.get("id"), int), f"{argv[:2]}: {doc}"
        assert_money_and_times(doc)
    balance = as_json(world("balance", "43", "--format", "json"))
    assert balance == {**balance, "credit": "3.7500", "owing": "3.00", "currency": "CAD"}


def test_rates_override_remove_answers_format_json_too(cli):
    ok(cli("product", "add", "Standard"))
    made = as_json(cli("rates", "override", "Standard", "1416", "0.005", "--format", "json"))
    assert made["rate"] == "0.005"
    gone = as_json(cli("rates", "override", "Standard", "1416", "--remove", "--format", "json"))
    assert gone == {
        "id": made["id"],
        "product": "Standard",
        "direction": "outbound",
        "prefix": "1416",
        "removed": True,
    }
    ok(cli("rates", "override", "Standard", "1416", "0.01"))
    assert (
        "1416 of Standard removed"
        in ok(cli("rates", "override", "Standard", "1416", "--remove")).stdout
    )


def test_client_set_clears_threshold_and_takes_the_override_fields(world):
    doc = as_json(
        world("client", "set", "42", "--low-balance-threshold", "none", "--voip-suspended", "no",
              "--manual-voip-suspend", "yes", "--format", "json")
    )  # fmt: skip
    assert doc["low_balance_threshold"] is None
    assert doc["voip_suspended"] == "no"
    assert doc["manual_voip_suspend"] is True


def test_listing_commands_print_csv_and_one_json_document(world):
    for argv in (
        ["product", "list"], ["rates", "list", "Standard", "--prefix", "1519"],
        ["rates", "versions", "Standard"], ["client", "list"], ["service", "list"],
        ["invoice", "list"], ["statement", "42"], ["server", "list"],
    ):  # fmt: skip
        doc = as_json(world(*argv, "--format", "json"))
        assert_money_and_times(doc)
        assert ok(world(*argv, "--format", "csv")).stdout.strip(), argv


# --- exit status: 0 done, 1 failures or data error, 2 usage or configuration, 75 lock held ---


def test_exit_status_table(world, tmp_path):
    bad_deck = tmp_path / "bad.csv"
    bad_deck.write_text("prefix,rate\n44,abc\n")
    table = [
        (["balance", "42"], 0, None),
        (["rates", "import", "Standard", str(bad_deck)], 1, f"{bad_deck}:2"),
        (["balance", "42", "--fromat", "json"], 2, "--fromat"),
        (["balance", "4242"], 2, "4242"),
        (["credit", "adjust", "42", "-5.00", "--nite", "x"], 2, "--nite"),
        (["rate", "--rerate"], 2, "--from"),
        (["suspend"], 2, "--service"),
    ]
    for argv, code, says in table:
        result = world(*argv)
        assert result.exit_code == code, (argv, result.output)
        if says:
            assert says in result.stderr, (argv, result.stderr)
        if code:
            assert "Traceback" not in result.output


# Each job that writes, and the name of the lock it takes. pull-cdrs takes one per
# server: tests/pull/test_pull_locks.py.
LOCKED_JOBS = [
    (["rate"], "rate"),
    (["autobill"], "autobill"),
    (["low-balance"], "low-balance"),
    (["autosuspend"], "autosuspend"),
    (["suspend", "--service", "1"], "suspend"),
    (["unsuspend", "--service", "1"], "unsuspend"),
]


@pytest.mark.parametrize(("argv", "lock"), LOCKED_JOBS, ids=[a[0] for a, _ in LOCKED_JOBS])
def test_a_held_lock_exits_75_with_one_line(cli, store, argv, lock):
    # The lock comes before any work: an empty database is enough to meet it.
    with job_lock(store, lock):
        result = cli(*argv)
    assert result.exit_code == 75, result.output
    assert len(result.stderr.strip().splitlines()) == 1


# --- dry runs: same decisions, nothing written, nothing sent, what would happen on stdout -----


def _contents(store) -> dict[str, list]:
    """Every row of every table: a dry run may neither add rows nor change one."""
    with store.transaction() as session:
        return {
            table.name: sorted(map(tuple, session.execute(select(table))), key=repr)
            for table in models.Base.metadata.sorted_tables
        }


def _suspensions(sim) -> dict:
    return {k: v for k, v in sim.vodia_state.items() if "/trunk/" in k}


DRY_RUNS = [
    (["pull-cdrs", "--since", "2000-01-01T00:00:00Z"], "would store"),
    (["rate", "--rerate", "--from", "2000-01-01", "--to", "2100-01-01"], "re-rated"),
    (["autobill"], "would charge client 42"),
    (["low-balance"], "would: client 42"),
    (["autosuspend"], "would suspend service"),
    (["suspend", "--client", "42"], "would suspend service"),
    (["unsuspend", "--client", "42"], "already active"),
]


@pytest.mark.parametrize(("argv", "says"), DRY_RUNS, ids=[a[0] for a, _ in DRY_RUNS])
def test_every_job_dry_run_writes_and_sends_nothing_and_says_what_it_would_do(
    world, store, sim, tmp_path, argv, says
):
    # Out of credit and below the threshold, so every job has something to decide.
    ok(world("credit", "adjust", "42", "-100.00", "--note", "test: out of credit"))
    before, trunks, requests = _contents(store), _suspensions(sim), len(sim.requests)
    result = world(*argv, "--dry-run")
    assert result.exit_code in (0, 1), result.output  # rate: 1 when calls enter no_rate
    assert says in result.stdout, result.stdout
    assert _contents(store) == before
    assert _suspensions(sim) == trunks
    if argv[0] == "autosuspend":
        # A dry autosuspend reads the levers back (what the real run decides from), and
        # changes nothing: a login and the trunk's settings read, nothing else.
        assert {r for r in sim.requests[requests:]} <= {
            ("PUT", "/rest/system/session"),
            ("GET", "/rest/domain/rucken.sim.example/edit_trunk/106"),
        }
    elif argv[0] != "pull-cdrs":  # a dry pull reads the provider; nothing else may talk to it
        assert len(sim.requests) == requests
    assert not list((tmp_path / "emails").glob("*"))


def test_autosuspend_dry_run_counts_what_it_would_do(world):
    ok(world("credit", "adjust", "42", "-100.00", "--note", "test: out of credit"))
    out = ok(world("autosuspend", "--dry-run")).stdout
    assert out.count("would suspend service") == 2
    assert "autosuspend (dry run): 2 suspended, 0 unsuspended, 0 failed" in out


# --- summaries: on a terminal or with -v; nothing under cron; -q silences --------------------


# (stdout is a terminal, flags after the command as in a crontab line, summary printed)
SUMMARY_RULES = [
    (False, [], False),
    (False, ["-v"], True),
    (True, [], True),
    (True, ["-q"], False),
    (False, ["-q", "-v"], False),
]


@pytest.mark.parametrize("job", ["autobill", "low-balance", "autosuspend", "rate", "pull-cdrs"])
def test_summary_line_printing_rules(world, monkeypatch, sim, tmp_path, job):
    # Out of credit, so the first autosuspend and low-balance act (a trunk disabled, emails
    # written); the deck below rates every call, so `rate` has nothing left at no_rate.
    ok(world("credit", "adjust", "42", "-100.00", "--note", "test: out of credit"))
    ok(world("rates", "import", "Standard", _world_deck(world), "--effective", "2000-01-01"))
    for tty, flags, printed in SUMMARY_RULES:
        monkeypatch.setattr(sys.stdout, "isatty", lambda tty=tty: tty)
        result = world(job, *flags)
        assert result.exit_code == 0, result.output
        lines = [line for line in result.stdout.splitlines() if line.startswith(f"{job}:")]
        assert bool(lines) == printed, (tty, flags, result.stdout)
        if not printed:
            assert result.stdout == "", (tty, flags)
        if not tty and "-v" not in flags:
            # cron mails whatever a job writes, stderr included: a success under cron is silent.
            assert result.stderr == "", (flags, result.stderr)
    # The runs did something (under cron, silently).
    if job == "autosuspend":
        assert sim.vodia_state["rucken.sim.example/trunk/106"] == {"dis": "true"}
    if job == "low-balance":
        assert list((tmp_path / "emails").glob("*.eml"))


def _world_deck(world) -> str:
    # A deck that rates every number the simulator dials, so `rate` has nothing left at no_rate.
    path = Path(os.getcwd()) / "all.csv"
    path.write_text("prefix,rate\n" + "".join(f"{d},0.1000\n" for d in range(1, 10)))
    return str(path)


def test_log_format_json_lines_on_stderr(world):
    result = world("pull-cdrs", "-v", "--log-format", "json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert records and all({"level", "msg", "run_id"} <= set(r) for r in records)


# --- configuration: discovery, environment, .env, refusals -----------------------------------


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """A directory of one's own and no VOIPCTL_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("VOIPCTL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path


def _toml(path: Path, host: str) -> str:
    path.write_text(f'[email]\nsmtp_host = "{host}"\n')
    return str(path)


def test_config_discovery_order(clean_env, monkeypatch):
    explicit = _toml(clean_env / "explicit.toml", "explicit")
    from_env = _toml(clean_env / "from-env.toml", "from-env")
    _toml(clean_env / "voipctl.toml", "cwd")
    monkeypatch.setenv("VOIPCTL_CONFIG", from_env)
    assert load_config(explicit).email.smtp_host == "explicit"
    assert load_config(None).email.smtp_host == "from-env"
    monkeypatch.delenv("VOIPCTL_CONFIG")
    assert load_config(None).email.smtp_host == "cwd"
    (clean_env / "voipctl.toml").unlink()
    config = load_config(None)
    if not Path("/etc/voipctl/voipctl.toml").exists():
        assert config.source == "built-in defaults"
        # With no configuration at all: SQLite under $XDG_DATA_HOME.
        assert config.database_url == f"sqlite:///{clean_env / 'xdg' / 'voipctl' / 'voipctl.db'}"


def test_environment_overrides_the_file(clean_env, monkeypatch):
    path = _toml(clean_env / "c.toml", "from-file")
    monkeypatch.setenv("VOIPCTL_EMAIL__SMTP_HOST", "from-env")
    monkeypatch.setenv("VOIPCTL_DATABASE_URL", "sqlite:///from-env.db")
    config = load_config(path)
    assert config.email.smtp_host == "from-env"
    assert config.database_url == "sqlite:///from-env.db"
    # --db beats them all
    assert load_config(path, db_url="sqlite:///flag.db").database_url == "sqlite:///flag.db"


def test_dot_env_is_read_for_secrets(clean_env, monkeypatch):
    path = clean_env / "c.toml"
    path.write_text('[email]\npassword_env = "CONTRACT_SMTP_PW"\n')
    monkeypatch.delenv("CONTRACT_SMTP_PW", raising=False)
    (clean_env / ".env").write_text("CONTRACT_SMTP_PW=from-dot-env\n")
    try:
        load_config(str(path))
        assert os.environ["CONTRACT_SMTP_PW"] == "from-dot-env"
        del os.environ["CONTRACT_SMTP_PW"]
        (clean_env / ".env").rename(clean_env / "other.env")
        assert run(["--config", str(path), "server", "list"]) == 2
        assert run(["--config", str(path), "--env-file", "other.env", "server", "list"]) == 0
    finally:
        os.environ.pop("CONTRACT_SMTP_PW", None)


# (file body, environment, what stderr must say): exit 2, naming where, the key, what was expected.
REFUSALS = [
    ('[email]\nsmtp_hots = "x"\n', {}, "c.toml: email.smtp_hots: unknown key"),
    (
        '[email]\nsmtp_port = "abc"\n',
        {},
        "c.toml: email.smtp_port: not a whole number in plain digits 0-9 (no exponent, "
        "underscore or other digits), got 'abc'",
    ),
    (
        '[servers.v]\ntype = "vodia"\nurl = "https://v.example"\npassword_env = "NOPE_UNSET"\n',
        {},
        "c.toml: servers.v.password_env: environment variable NOPE_UNSET is named but not set",
    ),
    (
        '[servers.f]\ntype = "fusionpbx"\nmode = "export"\nurl = "https://f.example"\n'
        'api_key_env = "CONTRACT_KEY"\nsuspend = "gateway"\n',
        {"CONTRACT_KEY": "k" * 40},
        "c.toml: servers.f.db_url_env: required",
    ),
    (
        "",
        {"VOIPCTL_EMAIL__SMTP_PORT": "abc"},
        "$VOIPCTL_EMAIL__SMTP_PORT: email.smtp_port: not a whole number in plain digits 0-9 "
        "(no exponent, underscore or other digits), got 'abc'",
    ),
    ("", {"VOIPCTL_EMAIL__SMTP_HOTS": "x"}, "$VOIPCTL_EMAIL__SMTP_HOTS: email.smtp_hots: unknown"),
    ('[billing]\nbackend = "whmcs"\n', {}, "c.toml: whmcs.url: required with [billing] backend"),
    (
        '[billing]\nbackend = "whmcs"\n[whmcs]\nurl = "https://billing.example.com"\n',
        {},
        "c.toml: whmcs.identifier_env and whmcs.secret_env: required",
    ),
    ('[servers.v]\nurl = "https://v.example"\n', {}, "c.toml: servers.v.type: required key"),
    (
        '[servers.v]\ntype = "vodia"\nurl = "https://v.example"\n',
        {"VOIPCTL_SERVERS__V__TIMEOUT_S": "soon"},
        "$VOIPCTL_SERVERS__V__TIMEOUT_S: servers.v.timeout_s: not a number in plain digits 0-9 "
        "(no exponent, underscore or other digits), got 'soon'",
    ),
]


@pytest.mark.parametrize(("body", "env", "says"), REFUSALS)
def test_configuration_refusals_exit_2_naming_file_key_and_expectation(
    clean_env, monkeypatch, capsys, body, env, says
):
    (clean_env / "c.toml").write_text(body)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert run(["--config", "c.toml", "server", "list"]) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert "Traceback" not in err


SERVER_TABLES = {
    "vodia": 'type = "vodia"\nurl = "https://v.example"\n',
    "lesnet": 'type = "lesnet"\n',
    "fusionpbx": 'type = "fusionpbx"\ndb_url_env = "CONTRACT_DB"\n',
}


@pytest.mark.parametrize("kind", sorted(SERVER_TABLES))
def test_every_server_takes_timeout_tls_timezone_and_overlap(clean_env, monkeypatch, kind):
    monkeypatch.setenv("CONTRACT_DB", "postgresql://nobody@127.0.0.1:1/fusionpbx")
    path = clean_env / "c.toml"
    path.write_text(f"[servers.s]\n{SERVER_TABLES[kind]}")
    defaults = load_config(str(path)).servers["s"]
    assert defaults.verify_tls is True  # certificates verified unless the config says otherwise
    assert defaults.overlap_minutes == 60  # docs/providers.md: a 1 hour overlap window by default
    bundle = clean_env / "ca.pem"
    bundle.write_text("")
    path.write_text(
        f"[servers.s]\n{SERVER_TABLES[kind]}timeout_s = 5\nverify_tls = false\n"
        f'timezone = "America/Toronto"\noverlap_minutes = 90\nca_bundle = "{bundle}"\n'
    )
    server = load_config(str(path)).servers["s"]
    assert (server.timeout_s, server.verify_tls, server.timezone, server.overlap_minutes) == (
        5,
        False,
        "America/Toronto",
        90,
    )


def test_a_missing_ca_bundle_is_refused_when_the_config_is_loaded(clean_env, capsys):
    (clean_env / "c.toml").write_text(
        '[servers.v]\ntype = "vodia"\nurl = "https://v.example"\n'
        'ca_bundle = "/nonexistent/ca.pem"\n'
    )
    capsys.readouterr()
    assert run(["--config", "c.toml", "server", "list"]) == 2
    assert "c.toml: servers.v.ca_bundle: path does not point to a file" in capsys.readouterr().err


# --- providers: 401/403 name the server and say the credentials were refused; 4xx not retried --


BASE = "https://pbx.contract.test"


def _vodia():
    config = VodiaServer.model_validate(
        {"type": "vodia", "url": BASE, "password_env": "CONTRACT_PW", "retries": 2}
    )
    service = ServiceInfo(
        id=1, client_id=1, server="pbx9", tenant="t.example", dids=("5195550100",)
    )
    return VodiaAdapter("pbx9", config), service, f"{BASE}/rest/domain/t.example/cdrs"


def _lesnet():
    config = LesnetServer.model_validate({"type": "lesnet", "retries": 2})
    link = f"{BASE}/cdr/1_0000.txt"
    service = ServiceInfo(
        id=1, client_id=1, server="pbx9", peer_id="P", dids=("12045550100",), cdr_link=link
    )
    return LesnetAdapter("pbx9", config), service, link


def _fusion():
    config = FusionPBXServer.model_validate(
        {"type": "fusionpbx", "mode": "export", "url": BASE, "api_key_env": "CONTRACT_KEY",
         "db_url_env": "CONTRACT_DB", "retries": 2}
    )  # fmt: skip
    service = ServiceInfo(
        id=1, client_id=1, server="pbx9", tenant="t.example", dids=("5195550100",)
    )
    return FusionPBXAdapter("pbx9", config), service, f"{BASE}/app/xml_cdr/xml_cdr_export.php"


ADAPTERS = {"vodia": _vodia, "lesnet": _lesnet, "fusionpbx": _fusion}


@pytest.fixture
def provider_env(monkeypatch):
    monkeypatch.setenv("CONTRACT_PW", "pw-never-shown")
    monkeypatch.setenv("CONTRACT_KEY", "k" * 40)
    monkeypatch.setenv("CONTRACT_DB", "postgresql://nobody@127.0.0.1:1/unused")
    for cls in (VodiaAdapter, LesnetAdapter, FusionPBXAdapter):
        monkeypatch.setattr(cls, "backoff_s", 0.0, raising=False)


@pytest.mark.parametrize("status", [401, 403, 404])
@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@respx.mock
def test_adapters_refused_credentials_and_4xx_are_not_retried(provider_env, kind, status):
    adapter, service, url = ADAPTERS[kind]()
    respx.put(f"{BASE}/rest/system/session").mock(return_value=httpx.Response(status))
    route = respx.get(url__startswith=url).mock(return_value=httpx.Response(status))
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    with pytest.raises(ProviderError) as caught:
        list(adapter.fetch_cdrs(service, since, until))
    message = str(caught.value)
    assert "pbx9" in message
    assert "pw-never-shown" not in message and "k" * 40 not in message
    if status in (401, 403):
        assert isinstance(caught.value, ProviderAuthError)
        assert "credentials were refused" in message
    assert route.call_count == 1  # never retried


# --- progress: on stderr when it is a terminal, none otherwise -------------------------------


@pytest.mark.parametrize("tty", [True, False])
def test_deck_import_shows_progress_only_on_a_terminal(cli, tmp_path, monkeypatch, tty):
    ok(cli("product", "add", "Standard"))
    deck = tmp_path / "big.csv"
    deck.write_text("prefix,rate\n" + "".join(f"1{n:05d},0.0100\n" for n in range(12_000)))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    result = ok(cli("rates", "import", "Standard", str(deck)))
    if tty:
        assert "\rrates import: 12,000 rates" in result.stderr
    else:
        assert result.stderr == ""
    assert "12000 rates" in result.stdout


# --- scopes and points in time -----------------------------------------------------------------


def test_pull_cdrs_scope_options(world, sim):
    since = sim.start_at.isoformat()
    only_vodia = ok(world("pull-cdrs", "--server", "sim_vodia", "--since", since, "--dry-run"))
    assert "sim_vodia" in only_vodia.stdout and "sim_lesnet" not in only_vodia.stdout
    only_service = ok(world("pull-cdrs", "--service", "2", "--since", since, "--dry-run"))
    assert "sim_lesnet" in only_service.stdout and "sim_vodia" not in only_service.stdout
    by_client = ok(world("pull-cdrs", "--client", "42", "--since", since, "--dry-run")).stdout
    assert "sim_lesnet" in by_client and "sim_vodia" in by_client
    # --until: a window that ends before the first call holds nothing.
    empty = ok(world("pull-cdrs", "--since", "2001-01-01", "--until", "2001-01-02", "--dry-run"))
    assert re.search(r"would store 0\b", empty.stdout), empty.stdout
    assert not re.search(r"would store [1-9]", empty.stdout), empty.stdout


def test_rates_list_and_quote_at_a_time_and_direction(world):
    assert (
        as_json(world("rates", "list", "Standard", "--at", "1999-12-31", "--format", "json")) == []
    )
    now = as_json(world("rates", "list", "Standard", "--at", "2026-01-01", "--format", "json"))
    assert {r["prefix"] for r in now} == {"1", "1519"}
    before = as_json(
        world("rates", "quote", "Standard", "5195550100", "60", "--at", "1999-12-31",
              "--format", "json")
    )  # fmt: skip
    assert before["status"] == "no_rate" and before["cost"] is None
    inbound = as_json(
        world("rates", "quote", "Standard", "5195550100", "60", "--direction", "inbound",
              "--format", "json")
    )  # fmt: skip
    assert inbound["status"] == "inbound_not_billed" and Decimal(inbound["cost"]) == 0


def test_cdrs_from_to_are_whole_days_in_the_clients_zone(world):
    rows = as_json(world("cdrs", "42", "--format", "json", "--all"))
    local = {r["id"]: _toronto_day(r["start"]) for r in rows}
    day = sorted(set(local.values()))[0]
    picked = as_json(world("cdrs", "42", "--format", "json", "--all", "--from", day, "--to", day))
    assert {r["id"] for r in picked} == {i for i, d in local.items() if d == day}


def _toronto_day(iso: str) -> str:
    from zoneinfo import ZoneInfo

    start = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return start.astimezone(ZoneInfo("America/Toronto")).date().isoformat()


def test_a_failing_server_fails_alone_exit_1_naming_it_without_secrets(world, sim):
    sim.fail("/rest/", times=50, status=403)
    result = world("pull-cdrs", "--since", sim.start_at.isoformat(), "-v")
    assert result.exit_code == 1, result.output
    assert "sim_vodia" in result.stderr and "credentials were refused" in result.stderr
    assert "sim_lesnet: stored 0" in result.stdout  # the other server still ran
    for secret in sim.env().values():
        assert secret not in result.output


def test_fusionpbx_database_reads_time_out_instead_of_hanging(fusion_db, monkeypatch):
    # docs/providers.md: timeouts on every request, connect and read. A v_xml_cdr held by a
    # lock (FusionPBX's own maintenance, a stuck transaction) must not hang the job.
    fusion_db.add_domain(TENANT)
    config = db_mode_config(monkeypatch, fusion_db.url, timeout_s=1)
    adapter = FusionPBXAdapter("fusion1", config)
    since = datetime(2026, 3, 2, tzinfo=UTC)
    with fusion_db.engine.connect() as holder, holder.begin():
        holder.execute(text("LOCK TABLE v_xml_cdr IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            list(adapter.fetch_cdrs(fusion_service(), since, since + timedelta(hours=1)))
        waited = time.monotonic() - started
    assert waited < 10, waited
    assert "fusion1" in str(caught.value) and "v_xml_cdr" in str(caught.value)
    assert list(adapter.fetch_cdrs(fusion_service(), since, since + timedelta(hours=1))) == []


def test_rate_counts_each_status_and_exits_1_only_when_calls_enter_no_rate(world):
    first = world.first_rate
    assert first.exit_code == 1, first.output
    counts = dict(re.findall(r"(\w+) (\d+)", first.stdout.split("rated:", 1)[1]))
    assert int(counts["no_rate"]) >= 1, first.stdout
    assert "no_rate" in first.stderr
    again = world("rate", "-v")  # the same calls tried again, still no_rate: not news
    assert again.exit_code == 0, again.output
    assert f"no_rate {counts['no_rate']}" in again.stdout


def test_owing_is_unpaid_invoices_due_and_paying_one_leaves_the_ledger(cli):
    ok(cli("client", "add", "7", "--first-name", "A", "--last-name", "B", "--email", "a@b.example"))
    ok(cli("credit", "add", "7", "20.00", "--reference", "p-1"))
    ok(cli("invoice", "add", "7", "3.00", "--number", "INV-1"))  # no due date: due at once
    ok(cli("invoice", "add", "7", "4.00", "--number", "INV-2", "--due", "2999-01-01"))
    ok(cli("invoice", "add", "7", "5.00", "--number", "INV-3", "--due", "2000-01-01"))
    assert as_json(cli("balance", "7", "--format", "json"))["owing"] == "8.00"
    paid = as_json(cli("invoice", "pay", "INV-1", "--format", "json"))
    assert paid["status"] == "paid" and UTC_TEXT.match(paid["paid_at"])
    after = as_json(cli("balance", "7", "--format", "json"))
    assert (after["credit"], after["owing"]) == ("20.0000", "5.00")
    unpaid = as_json(cli("invoice", "list", "--client", "7", "--unpaid", "--format", "json"))
    assert sorted(i["number"] for i in unpaid) == ["INV-2", "INV-3"]


def test_service_remove_ends_pulls_and_keeps_cdrs_and_ledger(world, sim):
    before = as_json(world("cdrs", "42", "--format", "json", "--all", "--service", "1"))
    ledger = as_json(world("statement", "42", "--format", "json"))["entries"]
    assert before
    removed = as_json(world("service", "remove", "1", "--format", "json"))
    assert removed["id"] == 1 and removed["active"] is False and removed["ended_at"]
    pulled = ok(world("pull-cdrs", "--since", sim.start_at.isoformat(), "--dry-run")).stdout
    assert "sim_vodia" not in pulled and "sim_lesnet" in pulled
    assert as_json(world("cdrs", "42", "--format", "json", "--all", "--service", "1")) == before
    assert as_json(world("statement", "42", "--format", "json"))["entries"] == ledger


def test_manual_suspend_acts_through_the_provider_and_twice_is_a_no_op(world, sim, store):
    first = world("suspend", "--service", "1", "--reason", "fraud check")
    assert first.exit_code == 0, first.output
    assert sim.vodia_state["rucken.sim.example/trunk/106"] == {"dis": "true"}
    again = world("suspend", "--service", "1")
    assert again.exit_code == 0 and "already suspended" in again.stdout, again.output
    with store.transaction() as session:
        events = session.execute(select(models.SuspensionEvent)).scalars().all()
    assert [(e.service_id, e.action, e.reason) for e in events] == [(1, "suspend", "fraud check")]
    # An operator's hold beats the decision table: autosuspend leaves it.
    ok(world("autosuspend"))
    assert sim.vodia_state["rucken.sim.example/trunk/106"] == {"dis": "true"}
    ok(world("unsuspend", "--service", "1"))
    assert sim.vodia_state["rucken.sim.example/trunk/106"] == {"dis": "false"}
