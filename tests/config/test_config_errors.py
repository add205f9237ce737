"""Configuration mistakes are named where they are: the file and line, or the variable."""

import os

import pytest

from voipctl.config import load_config
from voipctl.errors import ConfigError


def test_a_bad_line_in_the_env_file_is_refused_with_its_line(tmp_path):
    env = tmp_path / "secrets.env"
    env.write_text("VOIPCTL_TEST_A=1\n# a comment\n=hunter2\n")
    with pytest.raises(ConfigError) as caught:
        load_config(env_file=str(env), environ={})
    assert str(caught.value).startswith(f"{env}:3: not a NAME=value line")
    assert "hunter2" not in str(caught.value)


def test_a_good_env_file_still_loads(tmp_path):
    env = tmp_path / "secrets.env"
    env.write_text('# secrets\nexport VOIPCTL_TEST_SECRET_X="s3cret"\n')
    try:
        load_config(env_file=str(env), environ={})
        assert os.environ["VOIPCTL_TEST_SECRET_X"] == "s3cret"
    finally:
        os.environ.pop("VOIPCTL_TEST_SECRET_X", None)


def test_a_server_made_only_by_a_variable_is_blamed_on_that_variable(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(environ={"VOIPCTL_SERVERS__NOPE__URL": "https://x"})
    message = str(caught.value)
    assert message.startswith("$VOIPCTL_SERVERS__NOPE__URL: servers.nope.type:")
