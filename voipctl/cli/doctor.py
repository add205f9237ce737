"""`voipctl doctor`: one line per check, exit 1 if any fails."""

from __future__ import annotations

import click

from voipctl import doctor as doctor_lib
from voipctl.cli.app import get_app
from voipctl.cli.options import SECONDS, document_format_option
from voipctl.cli.output import say, to_json


@click.command("doctor")
@document_format_option
@click.option(
    "--smtp-timeout",
    type=SECONDS,
    default=doctor_lib.SMTP_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the SMTP server.",
)
def doctor(fmt, smtp_timeout):
    """Check the configuration, secrets, database, servers, SMTP and locks.

    One line per check, `ok` or `FAIL`, what was checked and the detail; exit
    status 1 when any check fails. A configuration that does not load is a
    failing line, not an error.

    \b
    Example: voipctl --config /etc/voipctl/voipctl.toml doctor
    """
    app = get_app()
    checks = doctor_lib.diagnose(
        app.config_path, db_url=app.db_url, env_file=app.env_file, smtp_timeout_s=smtp_timeout
    )
    if fmt == "json":
        click.echo(to_json([{"ok": c.ok, "check": c.what, "detail": c.detail} for c in checks]))
    else:
        width = max((len(c.what) for c in checks), default=0)
        for check in checks:
            say(check.line(width))
    return 0 if all(c.ok for c in checks) else 1


COMMANDS = [doctor]
