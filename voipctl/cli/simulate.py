"""`voipctl simulate`: run the provider simulator in the foreground."""

from __future__ import annotations

import click

from voipctl.cli.options import WHOLE, WholeType
from voipctl.sim import SimConfig, Simulator


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=0, type=WholeType(0, 65535), help="Port to listen on (default: a free port)."
)
@click.option("--seed", default=7, show_default=True, type=WHOLE, help="Seed of the calls.")
@click.option("--days", default=3, show_default=True, type=WholeType(1, 366))
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

    Example: voipctl simulate --port 8089
    """
    sim = Simulator(SimConfig(seed=seed, days=days, calls_per_day=calls_per_day))
    url = sim.bind(host, port)
    click.echo(f"provider simulator at {url} (Ctrl-C stops it)")
    click.echo("\n# secrets, for the environment or a .env file:")
    for name, value in sim.env().items():
        click.echo(f"export {name}={value}")
    click.echo("\n# voipctl.toml:")
    click.echo(sim.config_snippet())
    click.echo("# services:")
    for fields in sim.services():
        extra = "".join(
            f" --{key.replace('_', '-')} {value}"
            for key, value in fields.items()
            if key in ("trunk", "cdr_link")
        )
        click.echo(
            f"voipctl service add --client ID --product NAME --server {fields['server']} "
            f'--domain "{fields["domain"]}" --billed "{fields["billed"]}"{extra}'
        )
    try:
        sim.serve_bound()
    except KeyboardInterrupt:
        click.echo("simulator stopped", err=True)
    return 0


COMMANDS = [simulate]
