"""The `voipctl` command: global options, command families, and exit codes.

Errors become exit statuses in one place, `run()`.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
import uuid

import click
from sqlalchemy.exc import SQLAlchemyError

from voipctl import __version__
from voipctl.cli.app import App
from voipctl.cli.logsetup import setup_logging
from voipctl.errors import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_USAGE, VoipctlError

log = logging.getLogger("voipctl")

# Flags that may stand anywhere on the line (`voipctl autobill -q` in a crontab).
_ANYWHERE_FLAGS = {"-v", "--verbose", "-q", "--quiet", "-vv"}


def _hoist_global_flags(argv: list[str]) -> list[str]:
    """Move -v/-q/--log-format to the front, so they work before or after the command."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in _ANYWHERE_FLAGS:
            front.append(arg)
        elif arg == "--log-format" and i + 1 < len(argv):
            front.extend(argv[i : i + 2])
            i += 1
        elif arg.startswith("--log-format="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="voipctl")
@click.option("--config", "config_path", metavar="PATH", help="Configuration file (TOML).")
@click.option("--db", "db_url", metavar="URL", help="Database URL (overrides the configuration).")
@click.option("--env-file", metavar="PATH", help="File of secrets to load (default ./.env).")
@click.option("-v", "--verbose", count=True, help="More detail on stderr; repeat for debug.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line, errors only.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", help="Log line format."
)
@click.pass_context
def cli(ctx, config_path, db_url, env_file, verbose, quiet, log_format):
    """Bill and suspend prepaid VoIP customers on FusionPBX, Vodia PBX and LES.NET.

    Example: voipctl --config /etc/voipctl/voipctl.toml autobill
    """
    verbosity = -1 if quiet else verbose
    app = App(
        config_path=config_path,
        db_url=db_url,
        env_file=env_file,
        verbosity=verbosity,
        log_format=log_format,
        run_id=uuid.uuid4().hex[:12],
    )
    setup_logging(verbosity, log_format, app.run_id)
    ctx.obj = app
    ctx.call_on_close(app.close)


# Command name -> the module of voipctl.cli that defines it (in its COMMANDS).
# Modules are imported only when their command runs, so a cron job does not pay
# for importing every other command family at start-up.
COMMAND_MODULES: dict[str, str] = {
    "db": "setup",
    "server": "setup",
    "doctor": "doctor",
    "demo": "demo",
    "simulate": "simulate",
    "product": "products",
    "rates": "rates",
    "client": "clients",
    "service": "clients",
    "credit": "clients",
    "balance": "clients",
    "invoice": "clients",
    "statement": "support",
    "pull-cdrs": "pull",
    "rate": "rates",
    "autobill": "jobs",
    "low-balance": "jobs",
    "autosuspend": "jobs",
    "suspend": "jobs",
    "unsuspend": "jobs",
    "template": "jobs",
    "cdrs": "support",
    "explain": "support",
    "whmcs": "whmcs",
    "feed": "feed",
}


def load_command(name: str) -> click.Command | None:
    """Import the module that defines command `name` and return the command."""
    module_name = COMMAND_MODULES.get(name)
    if module_name is None:
        return None
    module = importlib.import_module(f"voipctl.cli.{module_name}")
    for command in module.COMMANDS:
        if command.name == name:
            return command
    raise RuntimeError(f"voipctl.cli.{module_name} does not define the command {name!r}")


def _lazy_list(self, ctx) -> list[str]:
    return sorted(COMMAND_MODULES)


def _lazy_get(self, ctx, name):
    return load_command(name)


cli.list_commands = _lazy_list.__get__(cli)
cli.get_command = _lazy_get.__get__(cli)


def _err(message: str) -> None:
    for line in str(message).splitlines() or [""]:
        click.echo(f"voipctl: error: {line}", err=True)


# PostgreSQL's lock_not_available and query_canceled (statement_timeout).
_PG_WAITED = {"55P03": "lock_timeout_s", "57014": "statement_timeout_s"}


def _database_error(exc: Exception, command: str) -> str:
    """One line for a database error; a lock wait that hit its limit names the setting."""
    orig = getattr(exc, "orig", None)
    reason = (str(orig or exc).strip().splitlines() or ["?"])[0]
    setting = _PG_WAITED.get(getattr(orig, "sqlstate", None) or "")
    if setting is None and "database is locked" in reason:
        setting = "busy_timeout_ms"  # SQLite gave up waiting for another writer
    if setting is not None:
        return (
            f"{command}: gave up waiting for a lock another session holds "
            f"([database] {setting}); nothing of the unfinished transaction was written, "
            "the next run goes on"
        )
    return f"database error: {reason}"


def run(argv: list[str]) -> int:
    """Run one command line and return its exit status; every error is mapped here, once."""
    args = _hoist_global_flags(list(argv))
    verbose = any(a.startswith("-v") or a == "--verbose" for a in args)
    try:
        rv = cli.main(args=args, prog_name="voipctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort as exc:
        # Click turns Ctrl-C into Abort; say what happened and exit as a shell expects.
        if isinstance(exc.__context__, KeyboardInterrupt):
            _err("interrupted")
            return EXIT_INTERRUPTED
        _err("aborted")
        return EXIT_FAILURES
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except VoipctlError as exc:
        _err(str(exc))
        return exc.exit_code
    except SQLAlchemyError as exc:
        _err(_database_error(exc, next((a for a in args if a in COMMAND_MODULES), "voipctl")))
        if verbose:
            traceback.print_exc()
        return EXIT_FAILURES
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURES
    except Exception as exc:
        # A bug, not an operator's mistake: one line (cron mails it), the traceback
        # only when asked for, and the status of a failed run.
        _err(f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)")
        if verbose:
            traceback.print_exc()
        return EXIT_FAILURES
    return rv if isinstance(rv, int) else 0


def main() -> None:
    """Console entry point."""
    sys.exit(run(sys.argv[1:]))
