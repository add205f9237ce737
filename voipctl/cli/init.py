"""`voipctl init`: a first voipctl.toml and .env for the servers named."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from voipctl.cli.app import get_app
from voipctl.cli.output import say
from voipctl.errors import UsageError
from voipctl.providers import server_types

# The types `--server` takes, from the provider registry ("a, b or c").
_TYPES = " or ".join((", ".join(server_types()[:-1]), server_types()[-1]))


@click.command("init")
@click.option(
    "--server",
    "servers",
    multiple=True,
    required=True,
    metavar="TYPE:NAME",
    help=f"A server to configure: TYPE is {_TYPES}; repeat for each.",
)
@click.option(
    "--dir",
    "directory",
    default=".",
    show_default=True,
    metavar="DIR",
    help="Where to write voipctl.toml and .env (made if missing).",
)
def init(servers, directory):
    """Write a voipctl.toml for the servers named and a .env listing their secrets.

    The configuration is config.example.toml's general tables and, for each
    --server, the example table of its type renamed (its secrets' variables
    start with the server's name). Both files are mode 0600. An existing file
    is never overwritten (exit status 2). The global --db URL, if given, is
    written as [database] url.

    \b
    Example: voipctl init --server TYPE:NAME --server TYPE:NAME --dir /etc/voipctl
    """
    from voipctl import example
    from voipctl.private import private_dir, write_private

    specs = [example.parse_server_spec(spec) for spec in servers]
    names = [name for _, name in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(f"init: --server: {', '.join(twice)} named twice")
    where = Path(directory)
    config_file, env_file = where / "voipctl.toml", where / ".env"
    for path in (config_file, env_file):
        if path.exists():
            raise UsageError(f"init: {path} exists: not overwritten (move it aside or use --dir)")
    text = example.render_config(specs, db_url=get_app().db_url)
    secrets = example.named_secrets(text)
    private_dir(where)
    write_private(config_file, text.encode())
    write_private(env_file, example.render_env(secrets, config_file.name).encode())
    say(
        f"wrote {config_file} ({len(specs)} server{'s' if len(specs) != 1 else ''}: "
        f"{', '.join(names)}) and {env_file} ({len(secrets)} secrets to fill in), both mode 0600"
    )
    prefix = "voipctl"
    if where.resolve() != Path.cwd().resolve():
        prefix += f" --config {shlex.quote(str(config_file))}"
        prefix += f" --env-file {shlex.quote(str(env_file))}"
    say("next: fill in the URLs and the secrets, then:")
    for step in ("doctor", "db upgrade", "pull-cdrs"):
        say(f"  {prefix} {step}")


COMMANDS = [init]
