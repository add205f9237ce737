"""Every command and subcommand explains itself: help text, and an Example: line on each command."""

import inspect

import click
import pytest

from tests.support import ROOT
from voipctl.cli import cli, run


def _walk(command, path=()):
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from _walk(command.get_command(ctx, name), (*path, name))


COMMANDS = list(_walk(cli))
IDS = [" ".join(path) or "voipctl" for path, _ in COMMANDS]


def test_the_command_tree_is_registered():
    names = {" ".join(path) for path, _ in COMMANDS}
    for expected in ("product add", "client list", "service add", "credit adjust", "balance"):
        assert expected in names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_command_has_help(path, command):
    assert (command.help or "").strip(), f"voipctl {' '.join(path)} has no help text"
    if not isinstance(command, click.Group):
        assert "Example: voipctl" in command.help, f"voipctl {' '.join(path)}: no Example: line"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_runs(path, command, capsys):
    assert run([*path, "--help"]) == 0
    assert "Usage: voipctl" in capsys.readouterr().out


CLIENT_DOCS = ROOT / "docs" / "clients.md"
DOCUMENTED_FAMILIES = ("product", "client", "service", "credit", "balance", "invoice")


@pytest.mark.parametrize(
    "path",
    [
        p
        for p, c in COMMANDS
        if p and p[0] in DOCUMENTED_FAMILIES and not isinstance(c, click.Group)
    ],
    ids=" ".join,
)
def test_client_and_product_commands_are_documented(path):
    assert f"voipctl {' '.join(path)}" in CLIENT_DOCS.read_text(), (
        f"docs/clients.md lacks voipctl {' '.join(path)}"
    )


def test_docs_cli_reference_is_current():
    from voipctl.cli.reference import reference

    docs = (ROOT / "docs/cli.md").read_text()
    assert reference() in docs, "docs/cli.md is stale: python -m voipctl.cli.reference"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_option_has_help(path, command):
    bare = [
        "/".join(p.opts)
        for p in command.params
        if isinstance(p, click.Option) and not (p.help or "").strip()
    ]
    assert not bare, f"voipctl {' '.join(path)}: options without help: {', '.join(bare)}"


@pytest.mark.parametrize(
    ("path", "command"), [(p, c) for p, c in COMMANDS if "Example:" in (c.help or "")], ids=str
)
def test_examples_are_kept_as_written(path, command):
    # Click re-wraps a paragraph unless it starts with \b: the example would break mid-option.
    text = inspect.cleandoc(command.help)
    assert "\b\nExample: voipctl" in text, f"voipctl {' '.join(path)}: no \\b before it"


def test_a_long_example_is_printed_as_written_on_a_narrow_terminal(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert run(["client", "add", "--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "  Example: voipctl client add 42 --first-name Ann --last-name Lee "
        "--email ann@example.com \\"
    ) in lines
    assert (
        "    --currency CAD --low-balance-threshold 5.00 --has-voip-service "
        "--timezone America/Toronto"
    ) in lines


def test_top_level_help_groups_the_commands_with_whole_descriptions(capsys, monkeypatch):
    from voipctl.cli import COMMAND_MODULES, HELP_SECTIONS

    listed = [name for _, names in HELP_SECTIONS for name in names]
    assert sorted(listed) == sorted(COMMAND_MODULES), "each command in exactly one section"
    monkeypatch.setenv("COLUMNS", "80")
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.endswith(":") and line[:1] != " "]
    assert headers == ["Options:", "Cron jobs:", "Operator:", "Support:", "Setup:"]
    section = out[out.index("Cron jobs:") : out.index("Operator:")].splitlines()[1:]
    assert [line.split()[0] for line in section if line[:3].strip() and line[:2] == "  "] == [
        "pull-cdrs",
        "rate",
        "autobill",
        "low-balance",
        "auto-topup",
        "autosuspend",
        "status",
    ]
    # The whole first sentence (wrapped), not Click's 45-character cut with "...".
    support = " ".join(out[out.index("Support:") : out.index("Setup:")].split())
    assert (
        "explain The whole story of one call: the provider's record, how it was rated, "
        "the free minutes it used, the ledger entry that billed it and any re-rating."
    ) in support
    assert "..." not in out[out.index("Cron jobs:") :]
