"""The command-line frame: global flags anywhere, exit codes, schema checks."""

from voipctl.cli import _hoist_global_flags, run


def test_global_flags_after_the_command_move_to_the_front():
    assert _hoist_global_flags(["autobill", "-q"]) == ["-q", "autobill"]
    assert _hoist_global_flags(["credit", "adjust", "42", "-5.00", "-v"]) == [
        "-v",
        "credit",
        "adjust",
        "42",
        "-5.00",
    ]
    assert _hoist_global_flags(["x", "--log-format", "json"]) == ["--log-format", "json", "x"]


def test_db_upgrade_is_safe_to_run_again(cli):
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.stdout


def test_an_empty_database_is_refused_with_the_upgrade_hint(tmp_path, capsys):
    from voipctl.cli.app import App

    app = App(db_url=f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        app.store()
    except Exception as exc:  # SchemaOutOfDate
        assert "run `voipctl db upgrade`" in str(exc)
        assert type(exc).__name__ == "SchemaOutOfDate"
    else:
        raise AssertionError("an empty database was accepted")


def test_unknown_command_is_a_usage_error(cli):
    assert cli("no-such-command").exit_code == 2


def test_version(capsys):
    assert run(["--version"]) == 0
    assert "voipctl" in capsys.readouterr().out


def test_every_command_a_module_defines_is_reachable():
    """The lazy command map and the modules' COMMANDS lists agree, both ways."""
    import importlib

    from voipctl.cli import COMMAND_MODULES, load_command

    for module_name in set(COMMAND_MODULES.values()):
        module = importlib.import_module(f"voipctl.cli.{module_name}")
        for command in module.COMMANDS:
            assert COMMAND_MODULES.get(command.name) == module_name, command.name
    for name in COMMAND_MODULES:
        assert load_command(name).name == name
