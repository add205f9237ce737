"""Usage errors: one line naming the command and the option, exit 2; did-you-mean;
the time bounds of --since/--until (docs/cli.md, "Conventions")."""

import socket
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click
import pytest

from voipctl.cli.options import WHEN_FORMS, parse_day_or_time

NOW = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
TORONTO = ZoneInfo("America/Toronto")


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-11-01", False, datetime(2026, 11, 1, 4, 0, tzinfo=UTC)),
        # Daylight time ends on 1 November 2026 at 02:00 in Toronto.
        ("2026-11-01", True, datetime(2026, 11, 2, 5, 0, tzinfo=UTC)),
        ("2026-11-01T10:30", False, datetime(2026, 11, 1, 15, 30, tzinfo=UTC)),
        ("2026-11-01T10:30Z", False, datetime(2026, 11, 1, 10, 30, tzinfo=UTC)),
        # 03:00 UTC is still 3 December in Toronto.
        ("today", False, datetime(2026, 12, 3, 5, 0, tzinfo=UTC)),
        ("today", True, datetime(2026, 12, 4, 5, 0, tzinfo=UTC)),
        ("Yesterday", False, datetime(2026, 12, 2, 5, 0, tzinfo=UTC)),
        ("3d", False, datetime(2026, 12, 1, 3, 0, tzinfo=UTC)),
        ("12h", True, datetime(2026, 12, 3, 15, 0, tzinfo=UTC)),
        ("30m", False, datetime(2026, 12, 4, 2, 30, tzinfo=UTC)),
    ],
)
def test_time_bounds(text, end, expected):
    assert parse_day_or_time(text, TORONTO, end=end, now=NOW) == expected


@pytest.mark.parametrize("text", ["3w", "\u0663d", "-3d", "2026-13-01", "tomorrow", ""])
def test_other_bounds_are_refused(text):
    with pytest.raises(click.BadParameter) as caught:
        parse_day_or_time(text, TORONTO, end=False, now=NOW)
    assert caught.value.message == f"{text!r} is not {WHEN_FORMS}"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["pull-cdrs", "--since", "last week"],
            f"pull-cdrs: --since: 'last week' is not {WHEN_FORMS}",
        ),
        (["cdrs", "1", "--until", "soon"], f"cdrs: --to / --until: 'soon' is not {WHEN_FORMS}"),
        (
            ["statement", "1", "--since", "x"],
            f"statement: --from / --since: 'x' is not {WHEN_FORMS}",
        ),
        (
            ["rate", "--rerate", "--from", "3d", "--to", "q"],
            f"rate: --to / --until: 'q' is not {WHEN_FORMS}",
        ),
        (
            ["pull-cdrs", "--since", "1d", "--until", "3d"],
            "pull-cdrs: --since must be before --until",
        ),
        (["credit", "add", "101", "abc"], "credit add: AMOUNT: amount: 'abc' is not a number"),
        (["autobil"], "No such command 'autobil'. Did you mean 'autobill'?"),
        (["rates", "qoute"], "rates: No such command 'qoute'. Did you mean 'quote'?"),
        (
            ["autobill", "--dry-rn"],
            "autobill: No such option '--dry-rn'. Did you mean '--dry-run'?",
        ),
        (["xyzzy"], "No such command 'xyzzy'."),
        (["balance"], "balance: CLIENT: required"),
        (["cdrs", "x"], "cdrs: CLIENT: 'x' is not a whole number (ASCII digits only)"),
    ],
)
def test_usage_errors_are_one_line_naming_the_option(cli, args, line):
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr == f"voipctl: error: {line}\n"
    assert result.stdout == ""


def test_a_since_in_the_past_is_accepted(cli):
    result = cli("pull-cdrs", "--since", "yesterday", "--until", "today")
    assert result.exit_code == 0, result.output


def test_a_busy_port_for_simulate_is_exit_2_naming_the_port(cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("simulate", "--port", str(port))
    assert result.exit_code == 2
    assert result.stderr == (
        f"voipctl: error: simulate: --host 127.0.0.1 --port {port}: cannot listen: "
        "Address already in use\n"
    )


def test_a_misspelt_configuration_key_gets_a_suggestion(cli, tmp_path):
    (tmp_path / "c.toml").write_text(
        '[email]\nsmtp_hots = "x"\n[servers.v]\ntype = "vodia"\n'
        'url = "https://v.example"\ntimout_s = 3\n'
    )
    result = cli("server", "list", config="c.toml")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "voipctl: error: c.toml: email.smtp_hots: unknown key (did you mean smtp_host?)",
        "voipctl: error: c.toml: servers.v.timout_s: unknown key (did you mean timeout_s?)",
    ]


def test_a_group_without_its_subcommand_prints_its_help(cli):
    result = cli("rates")
    assert result.exit_code == 2
    assert result.stderr.startswith("Usage: voipctl rates [OPTIONS] COMMAND [ARGS]...\n")
    assert "voipctl: error:" not in result.stderr


def test_an_option_without_its_value_is_one_line(cli):
    result = cli("pull-cdrs", "--since")
    assert result.exit_code == 2
    assert result.stderr == "voipctl: error: Option '--since' requires an argument.\n"
