"""Setup commands: `db upgrade`, `server list`."""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from voipctl import providers
from voipctl.cli.app import get_app
from voipctl.cli.options import document_format_option, format_option
from voipctl.cli.output import render, say, to_json
from voipctl.errors import VoipctlError
from voipctl.jobs.server_check import check_servers
from voipctl.store.engine import connect_check
from voipctl.store.migrate import upgrade


@click.group()
def db():
    """The database schema."""


@db.command("upgrade")
def db_upgrade():
    """Create or migrate the schema to the newest revision. Safe to run every time.

    \b
    Example: voipctl --db sqlite:////var/lib/voipctl/voipctl.db db upgrade
    """
    app = get_app()
    store = app.store(check_schema=False)
    connect_check(store)
    before, after = upgrade(store)
    if before == after:
        say(f"database {store.safe_url} is at revision {after}: nothing to do")
    else:
        say(f"database {store.safe_url} upgraded from {before or 'empty'} to {after}")


@click.group()
def server():
    """The PBX and carrier servers of the configuration."""


@server.command("list")
@format_option
def server_list(fmt):
    """List the configured servers.

    \b
    Example: voipctl server list --format json
    """
    config = get_app().config
    rows = []
    for name, srv in sorted(config.servers.items()):
        where = providers.plugin(srv.type).where(srv)
        rows.append(
            {
                "name": name,
                "type": srv.type,
                "mode": getattr(srv, "mode", None),
                "where": where,
                "suspend": srv.suspend,
                "timezone": srv.timezone,
            }
        )
    columns = [(k, k) for k in ("name", "type", "mode", "where", "suspend", "timezone")]
    render(rows, columns, fmt)


@server.command("check")
@click.argument("name", required=False)
@document_format_option
def server_check(name, fmt):
    """Reach each server (or NAME) with its credentials: one line each, exit 1 if any fails.

    LES.NET servers also read the head of each active service's CDR link.
    `--format json` gives a list of {"server", "type", "ok", "detail"}.

    \b
    Example: voipctl server check vodia1
    """
    app = get_app()
    config = app.config
    try:
        store = app.store()
    except (VoipctlError, SQLAlchemyError):
        store = None  # no database (yet): check the servers alone
    results = check_servers(config, [name] if name else None, store=store)
    if fmt == "json":
        doc = [
            {"server": r.server, "type": r.type, "ok": r.ok, "detail": r.detail} for r in results
        ]
        click.echo(to_json(doc))
    elif not results:
        say("no servers configured")
    else:
        for result in results:
            state = "ok" if result.ok else "FAIL"
            say(f"{result.server} ({result.type}): {state}: {result.detail}")
    return 0 if all(r.ok for r in results) else 1


COMMANDS = [db, server]
