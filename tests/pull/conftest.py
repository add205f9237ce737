"""Fixtures of the pull tests: two Asterisk servers, each with its own Master.csv.

No network: the pull reads a path. Client 42 has one service on each server
(accountcode acct1 on pbx1, acct2 on pbx2), and each file holds three answered
outbound calls of 60 s through trunk voipms.
"""

from __future__ import annotations

import pytest

from tests.providers.asterisk.conftest import cdr_csv_line

SINCE = "2026-11-01T00:00:00+00:00"
SERVERS = ("pbx1", "pbx2")


def master_line(start: str, dst: str, account: str) -> str:
    # An answered outbound call through trunk voipms: cdr_csv's 16 columns, no cdr.conf flags.
    return cdr_csv_line(
        [account, "101", dst, "from-internal", '"Alice" <101>', "PJSIP/101-00000001",
         "PJSIP/voipms-00000002", "Dial", f"PJSIP/{dst}@voipms,300", start, start, start,
         60, 60, "ANSWERED", "DOCUMENTATION"]
    )  # fmt: skip


@pytest.fixture
def two(cli, tmp_path):
    """Client 42 with one service on each of pbx1 and pbx2, three calls in each Master.csv."""
    blocks = []
    for n, name in enumerate(SERVERS, 1):
        master = tmp_path / name / "Master.csv"
        master.parent.mkdir()
        master.write_text(
            "".join(
                master_line(f"2026-11-20 09:0{i}:00", f"1519555{n}00{i}", f"acct{n}")
                for i in range(3)
            )
        )
        blocks.append(
            f'[servers.{name}]\ntype = "asterisk"\ntimezone = "America/Toronto"\n'
            f'trunk_prefixes = ["PJSIP/voipms-"]\nsource = "csv"\npath = "{master}"\n'
        )
    config = tmp_path / "voipctl.toml"
    config.write_text('[billing]\ncurrency = "CAD"\n\n' + "\n".join(blocks))
    deck = tmp_path / "deck.csv"
    deck.write_text("prefix,rate,description\n1,0.0200,North America\n")

    def vc(*args):
        return cli(*args, config=config)

    commands = [
        "product add Standard --increment 6/6",
        f"rates import Standard {deck} --effective 2000-01-01",
        "client add 42 --first-name Ann --last-name Lee --email ann@example.com --has-voip-service",
        *(
            f"service add --client 42 --product Standard --server {name} "
            f"--domain acct{n}|1519555{n}999"
            for n, name in enumerate(SERVERS, 1)
        ),
    ]
    for argv in (command.split() for command in commands):
        result = vc(*argv)
        assert result.exit_code == 0, (argv, result.output)
    vc.config = config
    return vc
