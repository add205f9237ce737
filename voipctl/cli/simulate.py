"""`voipctl simulate`: run the provider simulator in the foreground."""

from __future__ import annotations

import click

from voipctl.cli.options import WHOLE, WholeType
from voipctl.cli.output import say, say_text
from voipctl.errors import UsageError
from voipctl.sim import SimConfig, Simulator


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=0,
    type=WholeType(0, 65535),
    help="Port to listen on (default: a free port).",
)
@click.option("--seed", default=7, show_default=True, type=WHOLE, help="Seed of the calls.")
@click.option(
    "--days",
    default=3,
    show_default=True,
    type=WholeType(1, 366),
    help="Days of generated calls, ending now.",
)
@click.option(
    "--calls-per-day",
    default=40,
    show_default=True,
    type=WholeType(0, 1_000_000),
    help="Calls per tenant or peer and day.",
)
def simulate(host, port, seed, days, calls_per_day):
    """Serve FusionPBX's CSV export, Vodia's REST API and LES.NET CDR files with generated calls.

    Prints the URL, the secrets to export and a matching configuration snippet,
    then serves until Ctrl-C. Calls are the same for the same seed.

    \b
    Example: voipctl simulate --port 8089
    """
    sim = Simulator(SimConfig(seed=seed, days=days, calls_per_day=calls_per_day))
    try:
        url = sim.bind(host, port)
    except OSError as exc:  # in use, or not an address of this host: the operator's to fix
        raise UsageError(
            f"simulate: --host {host} --port {port}: cannot listen: "
            f"{exc.strerror or type(exc).__name__}"
        ) from None
    say(f"provider simulator at {url} (Ctrl-C stops it)")
    say_text("\n# secrets, for the environment or a .env file:")
    for name, value in sim.env().items():
        say(f"export {name}={value}")
    say_text("\n# voipctl.toml:")
    say_text(sim.config_snippet())
    say("# services:")
    for fields in sim.services():
        extra = "".join(
            f" --{key.replace('_', '-')} {value}"
            for key, value in fields.items()
            if key in ("trunk", "cdr_link")
        )
        say(
            f"voipctl service add --client ID --product NAME --server {fields['server']} "
            f'--domain "{fields["domain"]}" --billed "{fields["billed"]}"{extra}'
        )
    try:
        sim.serve_bound()
    except KeyboardInterrupt:
        say("simulator stopped", err=True)
    return 0


COMMANDS = [simulate]
