"""The `voipctl` command: global options, command families, and exit codes.

Errors become exit statuses in one place, `run()`.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys
import traceback
import uuid

import click

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


# Command name -> the module of voipctl.cli that defines it (in its COMMANDS).
# Modules are imported only when their command runs, so a cron job does not pay
# for importing every other command family at start-up.
COMMAND_MODULES: dict[str, str] = {
    "db": "setup",
    "server": "setup",
    "doctor": "doctor",
    "status": "status",
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
    "auto-topup": "jobs",
    "autosuspend": "jobs",
    "suspend": "jobs",
    "unsuspend": "jobs",
    "template": "jobs",
    "cdrs": "support",
    "explain": "support",
    "whmcs": "whmcs",
    "fraud": "fraud",
    "init": "init",
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


# `voipctl --help` lists the commands by who runs them; every command is in one section.
HELP_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Cron jobs",
        ("pull-cdrs", "rate", "autobill", "low-balance", "auto-topup", "autosuspend", "status"),
    ),
    (
        "Operator",
        (
            "client",
            "service",
            "credit",
            "balance",
            "invoice",
            "product",
            "rates",
            "suspend",
            "unsuspend",
            "fraud",
            "template",
            "whmcs",
        ),
    ),
    ("Support", ("cdrs", "explain", "statement")),
    ("Setup", ("init", "doctor", "db", "server", "feed", "demo", "simulate")),
)


def did_you_mean(word: str, choices) -> str:
    """` Did you mean 'X'?` (Click's words for options) for the closest of `choices`, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class VoipctlGroup(click.Group):
    """The top-level group: commands imported on use, help grouped by section."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return load_command(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for title, names in HELP_SECTIONS:
            rows = []
            for name in names:
                command = self.get_command(ctx, name)
                if command is not None and not command.hidden:
                    # The whole first sentence: Click's default cuts it at 45 characters.
                    rows.append((name, command.get_short_help_str(limit=1000)))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


@click.group(cls=VoipctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="voipctl")
@click.option("--config", "config_path", metavar="PATH", help="Configuration file (TOML).")
@click.option("--db", "db_url", metavar="URL", help="Database URL (overrides the configuration).")
@click.option("--env-file", metavar="PATH", help="File of secrets to load (default ./.env).")
@click.option("-v", "--verbose", count=True, help="More detail on stderr; repeat for debug.")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No summary line and no progress, even on a terminal; warnings and errors still "
    "go to stderr.",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", help="Log line format."
)
@click.pass_context
def cli(ctx, config_path, db_url, env_file, verbose, quiet, log_format):
    """Bill and suspend prepaid VoIP customers on FusionPBX, Vodia PBX and LES.NET.

    \b
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


def _err(message: str) -> None:
    # Each line of the message is inert (control characters escaped, see
    # voipctl.cli.output.inert) and says it is an error: data in a message cannot
    # move the cursor or print a line that looks like anything else.
    from voipctl.cli.output import inert

    for line in str(message).split("\n"):
        click.echo(f"voipctl: error: {inert(line)}", err=True)


# Click 8.2+ raises this (a UsageError carrying the help) for a group run bare.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


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
    except _NO_ARGS_IS_HELP as exc:
        exc.show()  # a group without its subcommand (`voipctl rates`): its help, exit 2
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except click.UsageError as exc:
        _err(usage_line(exc))
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except click.ClickException as exc:
        from voipctl.cli.output import inert

        # A usage error may quote what was typed or read: its lines are printed inert.
        exc.message = "\n".join(inert(line) for line in str(exc.message).split("\n"))
        exc.show()
        return exc.exit_code if exc.exit_code else EXIT_USAGE
    except VoipctlError as exc:
        _err(str(exc))
        return exc.exit_code
    except Exception as exc:
        if not _is_database_error(exc):
            return _internal_error(exc, verbose)
        _err(_database_error(exc, next((a for a in args if a in COMMAND_MODULES), "voipctl")))
        if verbose:
            traceback.print_exc()
        return EXIT_FAILURES
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    return rv if isinstance(rv, int) else 0


def _internal_error(exc: Exception, verbose: bool) -> int:
    if isinstance(exc, BrokenPipeError):
        return EXIT_FAILURES
    # A bug, not an operator's mistake: one line (cron mails it), the traceback
    # only when asked for, and the status of a failed run.
    _err(f"internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)")
    if verbose:
        traceback.print_exc()
    return EXIT_FAILURES


def _is_database_error(exc: Exception) -> bool:
    # sqlalchemy is imported only by the commands that use a database (not --version).
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError)


def usage_line(exc: click.UsageError) -> str:
    """A usage error as one line: the command, the option or argument, what is wrong."""
    ctx = exc.ctx
    path = ctx.command_path.split(" ", 1)[1] if ctx and " " in ctx.command_path else ""
    where = f"{path}: " if path else ""
    if isinstance(exc, click.NoSuchOption):
        # Click's own line, with its "Did you mean" (one line already).
        return f"{where}{' '.join(exc.format_message().split())}"
    if isinstance(exc, click.BadParameter):
        hint = exc.param_hint
        if hint is None and exc.param is not None and ctx is not None:
            hint = exc.param.get_error_hint(ctx)
        if isinstance(hint, list | tuple):
            hint = " / ".join(hint)
        hint = (hint or "").replace("'", "")
        if isinstance(exc, click.MissingParameter):
            return f"{where}{hint}: required" if hint else f"{where}{exc.format_message()}"
        return f"{where}{hint}: {exc.message}" if hint else f"{where}{exc.message}"
    message = exc.message
    if message.startswith("No such command") and ctx is not None:
        name = message.split("'")[1] if "'" in message else ""
        group = ctx.command
        choices = group.list_commands(ctx) if isinstance(group, click.Group) else []
        message = f"No such command {name!r}.{did_you_mean(name, choices)}"
    return f"{where}{message}"


def main() -> None:
    """Console entry point."""
    sys.exit(run(sys.argv[1:]))
