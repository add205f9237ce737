"""Every command and subcommand explains itself: help text, and an Example: line on each command."""

from pathlib import Path

import click
import pytest

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


CLIENT_DOCS = Path(__file__).resolve().parent.parent / "docs" / "clients.md"
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

    docs = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    assert reference() in docs, "docs/cli.md is stale: python -m voipctl.cli.reference"
