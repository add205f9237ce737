"""Command-line numbers are plain (docs/cli.md): one usage line, exit 2.

Click's `int` is Python's int(), which takes `6_0`, ` 7` and other scripts'
digits; every integer option and argument of voipctl refuses them instead.
"""

import pytest

from tests.cli.test_clients_cli import CONFIG

NOT_PLAIN = ["6_0", "\u0661\u0662", "1e3", " 7", "7 ", "\uff17", "0x10", ""]
GROUPS = {"client", "service", "product", "rates", "credit"}


def usage_line(args, name: str, reason: str) -> str:
    """The one usage line (docs/cli.md): `voipctl: error: COMMAND: PARAMETER: reason`."""
    command = " ".join(args[:2]) if args[0] in GROUPS else args[0]
    return f"voipctl: error: {command}: {name}: {reason}"


@pytest.fixture
def vc(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_FUSION1_DB_URL", "postgresql://fusion@127.0.0.1/fusionpbx")
    path = tmp_path / "voipctl-test.toml"
    path.write_text(CONFIG)
    return lambda *args: cli(*args, config=path)


# (command line before the value, after it, the name Click gives the parameter)
SITES = [
    (("client", "show"), (), "ID"),
    (("service", "show"), (), "ID"),
    (("balance",), (), "CLIENT"),
    (("cdrs", "1", "--limit"), (), "--limit"),
    (("cdrs", "1", "--service"), (), "--service"),
    (("autobill", "--client"), (), "--client"),
    (("pull-cdrs", "--service"), (), "--service"),
    (("product", "add", "P", "--free-minutes"), (), "--free-minutes"),
    (("rates", "quote", "P", "+15195550100"), (), "SECONDS"),
    (("simulate", "--port"), (), "--port"),
    (("demo", "--days"), (), "--days"),
]


@pytest.mark.parametrize("text", NOT_PLAIN)
@pytest.mark.parametrize(("before", "after", "name"), SITES, ids=lambda s: str(s))
def test_an_integer_that_is_not_plain_is_one_usage_error(vc, before, after, name, text):
    result = vc(*before, text, *after)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        usage_line(before, name, f"{text!r} is not a whole number (ASCII digits only)")
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "name", "reason"),
    [
        (("cdrs", "1", "--limit", "0"), "--limit", "0 is out of range (1..)"),
        (("demo", "--days", "31"), "--days", "31 is out of range (1..30)"),
        (("simulate", "--port", "65536"), "--port", "65536 is out of range (0..65535)"),
        (("cdrs", "1", "--limit", "-3"), "--limit", "-3 is out of range (1..)"),
    ],
)
def test_an_integer_out_of_its_range_is_one_usage_error(vc, args, name, reason):
    result = vc(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [usage_line(args, name, reason)]


def test_a_plain_integer_is_taken(vc):
    # A plain id reaches the command, which then says the client does not exist.
    result = vc("client", "show", "+7")
    assert result.exit_code == 2, result.output
    assert (
        result.stderr.strip()
        == "voipctl: error: no client 7 (add it with `voipctl client add 7 ...`)"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("6_0/6", "'6_0/6' is not an increment like 60/6 or 6"),
        ("\u0666\u0660/6", "'\u0666\u0660/6' is not an increment like 60/6 or 6"),
        ("60/6 ", "'60/6 ' is not an increment like 60/6 or 6"),
        ("1e3", "'1e3' is not an increment like 60/6 or 6"),
    ],
)
def test_an_increment_takes_plain_digits_only(vc, text, reason):
    result = vc("product", "add", "P", "--increment", text)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        usage_line(("product", "add"), "--increment", reason)
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (" 7", "' 7' is not a number (blanks around it)"),
        ("6_0", "amount: '6_0' is not a number"),
    ],
)
def test_an_amount_on_the_command_line_is_plain_too(vc, text, reason):
    result = vc("credit", "add", "42", text)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [usage_line(("credit", "add"), "AMOUNT", reason)]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1e3", "'1e3' is not a number of seconds like 2 or 0.5"),
        ("\u0662", "'\u0662' is not a number of seconds like 2 or 0.5"),
        ("nan", "'nan' is not a number of seconds like 2 or 0.5"),
        ("inf", "'inf' is not a number of seconds like 2 or 0.5"),
        ("0", "0 is not more than 0 seconds"),
    ],
)
def test_doctor_smtp_timeout_is_plain_seconds(vc, text, reason):
    result = vc("doctor", "--smtp-timeout", text)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [usage_line(("doctor",), "--smtp-timeout", reason)]
