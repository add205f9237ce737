"""`voipctl demo`: the whole cycle on a throwaway database against the provider simulator."""

from __future__ import annotations

import click

from voipctl import demo as demo_lib
from voipctl.cli.options import WholeType


@click.command("demo")
@click.option("--days", default=3, show_default=True, type=WholeType(1, 30),
              help="Days of simulated calls.")  # fmt: skip
def demo(days):
    """Run pull-cdrs, rate, autobill, low-balance and autosuspend on a throwaway database.

    Starts the provider simulator on a free port, creates a few clients on
    FusionPBX, Vodia and LES.NET, runs each job as its own command line and
    shows what it did; emails are written to files. Prints where the database
    and the emails are.

    \b
    Example: voipctl demo
    """
    from voipctl.cli import run  # noqa: PLC0415 - the demo runs real command lines

    result = demo_lib.run_demo(run, click.echo, days=days)
    return result.exit_code


COMMANDS = [demo]
