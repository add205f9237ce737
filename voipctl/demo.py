"""`voipctl demo`: the whole cycle on a throwaway database against the provider simulator.

Everything is made in a new temporary directory: a SQLite database, a
configuration naming the simulator's three servers, a small rate deck, and a
directory the emails are written to instead of being sent. The simulator runs
in a background thread on a free port of 127.0.0.1. Each step is a real voipctl
command line, run in this process, so what the demo prints is what those
commands print.

The clients are chosen to show each outcome: one on Vodia runs out of credit
(its trunk is disabled over the simulator's REST API, and it gets the "VoIP
Zero Balance" email), one on FusionPBX only falls below its low-balance
threshold, one on LES.NET runs out of credit (a `manual` lever: recorded, and
the operator is emailed what to do), and one on LES.NET has credit to spare.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from voipctl.errors import EXIT_INTERRUPTED
from voipctl.sim import SimConfig, Simulator

# Any voipctl command line -> its exit status (voipctl.cli.run).
RunCommand = Callable[[list[str]], int]
Echo = Callable[[str], None]

DECK = """prefix,description,rate
1,North America,0.0100
1800,North America toll free,0
1888,North America toll free,0
1877,North America toll free,0
27,South Africa,0.1000
33,France,0.0600
39,Italy,0.0600
44,United Kingdom,0.0500
49,Germany,0.0600
52,Mexico,0.0800
61,Australia,0.0700
63,Philippines,0.1200
86,China,0.0500
91,India,0.0900
"""

# (client id, first, last, server, simulated service index, credit, low-balance threshold)
CLIENTS = (
    (101, "Grace", "Hopper", "sim_vodia", 0, "0.50", "5.00"),
    (102, "Ada", "Lovelace", "sim_fusion", 1, "100.00", "99.95"),
    (103, "Alan", "Turing", "sim_lesnet", 2, "0.25", "2.00"),
    (104, "Katherine", "Johnson", "sim_lesnet", 3, "50.00", "1.00"),
)

# The FusionPBX client's gateway (its suspend lever); the simulator has no FusionPBX database.
FUSION_GATEWAY = "7d2c3b8e-4a51-4f0e-9c8e-2b6f1a0d9e11"


@dataclass
class DemoResult:
    directory: Path
    database_url: str
    emails: list[Path]
    failed_steps: list[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed_steps else 0


def _config(directory: Path, sim: Simulator) -> Path:
    path = directory / "voipctl.toml"
    db = directory / "voipctl.db"
    path.write_text(
        "# Written by `voipctl demo`: a throwaway configuration.\n"
        f'[database]\nurl = "sqlite:///{db}"\n\n'
        "[email]\n"
        'from = "billing@demo.example"\n'
        'operator = "noc@demo.example"\n'
        f'capture_dir = "{directory / "emails"}"\n\n' + sim.config_snippet()
    )
    return path


def _database_facts(db: Path) -> dict[str, int]:
    """A few counts read straight from the demo database, for the closing summary."""
    with sqlite3.connect(db) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731 - local shorthand
        return {
            "calls": one("SELECT COUNT(*) FROM cdrs"),
            "rated": one("SELECT COUNT(*) FROM cdrs WHERE status = 'rated'"),
            "billed": one("SELECT COUNT(*) FROM cdrs WHERE billed_entry_id IS NOT NULL"),
            "charges": one("SELECT COUNT(*) FROM ledger_entries WHERE kind = 'charge'"),
            "suspended": one("SELECT COUNT(*) FROM services WHERE suspended"),
            "emails": one("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL"),
        }


# What each rating status means for the client (docs/rating.md, "Statuses"), in its order.
STATUS_MEANINGS = (
    ("rated", "rated: priced from the deck"),
    ("unanswered", "unanswered: no talk time, nothing to charge"),
    ("inbound_not_billed", "inbound, not billed: the product charges outbound calls only"),
    ("internal", "internal: extension to extension on the PBX, free"),
    ("excluded", "excluded: feature codes (*, #), free"),
    ("suppressed", "suppressed: numbers the product hides, free"),
    ("unmetered", "unmetered: the product is not metered"),
    ("invalid_number", "invalid number: left for a fix, not charged"),
    ("no_rate", "no rate: no prefix of the deck matches, left for `voipctl rate`"),
)


def call_accounting(db: Path) -> list[str]:
    """Every pulled call accounted for, by what became of it; the counts add up to the total."""
    with sqlite3.connect(db) as conn:
        by_status = dict(conn.execute("SELECT status, COUNT(*) FROM cdrs GROUP BY status"))
        total = conn.execute("SELECT COUNT(*) FROM cdrs").fetchone()[0]
        billed = conn.execute(
            "SELECT COUNT(*) FROM cdrs WHERE status = 'rated' AND billed_entry_id IS NOT NULL"
        ).fetchone()[0]
    width = len(str(total))
    lines = [f"{total:>{width}} calls pulled from the three servers:"]
    shown = 0
    for status, meaning in STATUS_MEANINGS:
        count = by_status.pop(status, 0)
        if not count:
            continue
        shown += count
        line = f"  {count:>{width}} {meaning}"
        if status == "rated":
            line += f" ({billed} charged by autobill, {count - billed} not yet)"
        lines.append(line)
    for status, count in sorted(by_status.items(), key=lambda kv: str(kv[0])):
        shown += count
        lines.append(f"  {count:>{width}} {status or 'not rated yet'}")
    parts = " + ".join(line.split()[0] for line in lines[1:]) or "0"
    lines.append(f"  {parts} = {shown} calls")
    return lines


def run_demo(run_command: RunCommand, echo: Echo, *, days: int = 3) -> DemoResult:
    """Run the demo; `run_command` runs one voipctl command line and returns its exit status."""
    directory = Path(tempfile.mkdtemp(prefix="voipctl-demo-"))
    sim = Simulator(SimConfig(seed=7, days=days, calls_per_day=40))
    url = sim.start("127.0.0.1", 0)
    # The simulator's credentials, as an operator would export them. FusionPBX's
    # suspend levers write its database, which the simulator does not have: the
    # variable must exist for the configuration to load; the FusionPBX client
    # below stays in credit, so it is never used.
    os.environ.update(sim.env())
    os.environ.setdefault("SIM_FUSION_DB_URL", "postgresql://fusionpbx.invalid/fusionpbx")
    config = _config(directory, sim)
    # The same secrets in a .env beside the configuration (mode 600), so the database
    # can be explored afterwards with `--env-file`, as an operator's jobs would run.
    env_file = directory / ".env"
    env_file.touch(mode=0o600)
    env_file.write_text(
        "".join(f"{name}={os.environ[name]}\n" for name in (*sim.env(), "SIM_FUSION_DB_URL"))
    )
    db = directory / "voipctl.db"
    (directory / "deck.csv").write_text(DECK)
    echo(f"voipctl demo: working in {directory}")
    echo(f"provider simulator (FusionPBX export, Vodia REST, LES.NET files) at {url}")
    failed: list[str] = []

    def step(title: str, *args: str, must: bool = True, quiet: bool = False) -> int:
        if title:
            echo("")
            echo(f"== {title}")
        echo("$ voipctl " + shlex.join(args))
        if quiet:
            # Setting up: the command line says it all; its own output is left out.
            with contextlib.redirect_stdout(io.StringIO()):
                code = run_command(["--config", str(config), *args])
        else:
            code = run_command(["--config", str(config), *args])
        if code == EXIT_INTERRUPTED:
            # Ctrl-C during a step stops the demo, not just that step.
            raise KeyboardInterrupt
        if code != 0:
            echo(f"   (exit status {code})")
            if must:
                failed.append(" ".join(args[:2]))
        return code

    services = sim.services()
    try:
        step("create the database", "db", "upgrade")
        # The rates are in force from before the first simulated call.
        effective = (datetime.now(UTC) - timedelta(days=days + 2)).date().isoformat()
        step("a product and its rate deck", "product", "add", "Standard", "--increment", "6/6",
             quiet=True)  # fmt: skip
        step("", "rates", "import", "Standard", str(directory / "deck.csv"),
             "--effective", effective, quiet=True)  # fmt: skip
        for cid, first, last, server, index, credit, threshold in CLIENTS:
            fields = services[index]
            assert fields["server"] == server
            step(
                f"client {cid}: {first} {last} on {server}, {credit} credit",
                "client", "add", str(cid), "--first-name", first, "--last-name", last,
                "--email", f"{first.lower()}@demo.example", "--has-voip-service",
                "--low-balance-threshold", threshold, quiet=True,
            )  # fmt: skip
            step("", "credit", "add", str(cid), credit, "--reference", f"demo-topup-{cid}",
                 quiet=True)  # fmt: skip
            extra = []
            if "trunk" in fields:
                extra += ["--trunk", fields["trunk"]]
            if "cdr_link" in fields:
                extra += ["--cdr-link", fields["cdr_link"]]
            if server == "sim_fusion":
                extra += ["--gateway", FUSION_GATEWAY]
            step(
                "",
                "service", "add", "--client", str(cid), "--product", "Standard",
                "--server", server, "--domain", fields["domain"], "--billed", fields["billed"],
                *extra, quiet=True,
            )  # fmt: skip
        since = (datetime.now(UTC) - timedelta(days=days + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        step("pull the calls of the last days from all three servers",
             "pull-cdrs", "--since", since, "-v")  # fmt: skip
        echo("   (pull-cdrs prices each call it can as it stores it: `rate` below then")
        echo("   has only what pull-cdrs left, calls without a rate or a valid number)")
        step("price the rest from the rate deck", "rate", "-v")
        step("charge the rated calls to each client's prepaid credit", "autobill", "-v")
        step("alert clients at or below their threshold", "low-balance", "-v")
        step("suspend clients out of credit (and restore topped-up ones)", "autosuspend", "-v")
        for cid, *_ in CLIENTS:
            step(f"client {cid} now", "balance", str(cid), must=False)
    finally:
        sim.stop()

    emails = sorted((directory / "emails").glob("*.eml"))
    if db.exists():
        echo("")
        echo("== what became of every call")
        for line in call_accounting(db):
            echo(line)
    echo("")
    echo("== where things are")
    if db.exists():
        facts = _database_facts(db)
        echo(
            f"{facts['calls']} calls pulled, {facts['rated']} rated, {facts['billed']} billed in "
            f"{facts['charges']} charges; {facts['suspended']} services suspended; "
            f"{facts['emails']} emails"
        )
    echo(f"database:      sqlite:///{db}")
    echo(f"configuration: {config}")
    echo(f"emails:        {directory / 'emails'} ({len(emails)} files)")
    for path in emails:
        echo(f"  {path.name}")
    echo(f"explore it:    voipctl --config {config} --env-file {env_file} cdrs 101")
    if failed:
        echo(f"steps that failed: {', '.join(failed)}")
    return DemoResult(directory, f"sqlite:///{db}", emails, failed)
