"""Hostile configuration: any file, .env or environment gives a Config or a ConfigError.

Never a traceback: the CLI maps ConfigError to one line and exit 2.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzzing import FUZZ
from voipctl.cli import run
from voipctl.config import load_config
from voipctl.errors import ConfigError

SECTION_KEYS = {
    "database": ["url"],
    "email": ["from", "smtp_host", "smtp_port", "security", "password_env", "timeout_s", "bcc"],
    "billing": ["backend", "currency"],
    "whmcs": ["url", "fields", "post_usage", "identifier_env", "timeout_s"],
}
SERVER_KEYS = [
    "type",
    "mode",
    "url",
    "db_url_env",
    "api_key_env",
    "timezone",
    "timeout_s",
    "retries",
    "overlap_minutes",
    "suspend",
    "suspend_command",
    "unsuspend_command",
    "cdr_format",
    "ca_bundle",
    "verify_tls",
    "esl_port",
]

scalars = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.sampled_from(
        ["fusionpbx", "vodia", "lesnet", "db", "export", "manual", "command", "UTC", "Mars/Base"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
servers = st.dictionaries(
    st.text(min_size=1, max_size=10),
    st.one_of(
        st.dictionaries(st.sampled_from(SERVER_KEYS) | st.text(max_size=8), values, max_size=6),
        values,
    ),
    max_size=3,
)
documents = st.fixed_dictionaries(
    {},
    optional={
        **{
            section: st.one_of(
                st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), values, max_size=4),
                values,
            )
            for section, keys in SECTION_KEYS.items()
        },
        "servers": st.one_of(servers, values),
        "extra": values,
    },
)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def to_toml(doc: dict) -> str:
    """A small TOML writer: every top-level key as `key = value` (inline tables)."""
    return "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in doc.items())


def _load(path: Path, **kwargs):
    try:
        return load_config(str(path), environ={}, **kwargs)
    except ConfigError as exc:
        message = str(exc)
        assert message and "Traceback" not in message
        return None


@FUZZ
@given(doc=documents, db_url=st.none() | st.just("sqlite:///x.db"))
def test_any_toml_document_loads_or_is_a_config_error(tmp_path, doc, db_url):
    path = tmp_path / "fuzz.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    _load(path, db_url=db_url)


@FUZZ
@given(data=st.binary(max_size=200))
def test_any_bytes_as_a_config_file_are_a_config_error(tmp_path, data):
    path = tmp_path / "bytes.toml"
    path.write_bytes(data)
    _load(path)


@FUZZ
@given(
    env=st.dictionaries(
        st.sampled_from(
            [
                "VOIPCTL_DATABASE_URL",
                "VOIPCTL_DATABASE__URL",
                "VOIPCTL_EMAIL__SMTP_PORT",
                "VOIPCTL_EMAIL__SMTP_PORT__X",
                "VOIPCTL_SERVERS__A__TYPE",
                "VOIPCTL_SERVERS__A",
                "VOIPCTL_SERVERS__A__SUSPEND_COMMAND",
                "VOIPCTL_BILLING",
                "VOIPCTL___",
                "VOIPCTL_X__",
            ]
        ),
        st.text(max_size=20) | st.sampled_from(["[1,2]", '{"a":1}', "[", "{", "vodia", "25"]),
        max_size=5,
    ),
    file_body=st.sampled_from(
        ["", 'database = "x"\n', "email = 5\n", "[servers.a]\ntype='vodia'\n"]
    ),
)
def test_any_environment_override_loads_or_is_a_config_error(tmp_path, env, file_body):
    path = tmp_path / "env.toml"
    path.write_text(file_body)
    with contextlib.suppress(ConfigError):
        load_config(str(path), environ=env)


@FUZZ
@given(data=st.binary(max_size=100))
def test_any_env_file_loads_or_is_a_config_error(tmp_path, data, monkeypatch):
    env_file = tmp_path / "fuzz.env"
    env_file.write_bytes(data)
    before = dict(os.environ)
    try:
        load_config(None, env_file=str(env_file), environ={})
    except ConfigError:
        pass
    finally:
        # load_dotenv writes into os.environ: put it back for the next example.
        for name in set(os.environ) - set(before):
            del os.environ[name]


# Regressions found by the fuzzing above.


@pytest.mark.parametrize(
    ("body", "kwargs", "env"),
    [
        ('database = "x"\n', {"db_url": "sqlite:///x.db"}, {}),
        ('database = "x"\n', {}, {"VOIPCTL_DATABASE_URL": "sqlite:///x.db"}),
        ("database = [1]\n", {}, {"VOIPCTL_DATABASE_URL": "sqlite:///x.db"}),
    ],
)
def test_a_database_key_that_is_not_a_table_is_a_config_error(tmp_path, body, kwargs, env):
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=r"c\.toml: database: .*table"):
        load_config(str(path), environ=env, **kwargs)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[email]\nfrom = "caf\xe9@example.com"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml: not valid TOML: not UTF-8"):
        load_config(str(path), environ={})


def test_an_env_file_that_is_not_utf8_is_a_config_error(tmp_path):
    env_file = tmp_path / "latin1.env"
    env_file.write_bytes(b"SMTP_PASSWORD=caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.env: not UTF-8"):
        load_config(None, env_file=str(env_file), environ={})


def test_the_cli_reports_a_bad_config_file_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe = 1\n")
    assert run(["--config", str(path), "server", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("voipctl: error: ")
    assert "Traceback" not in err
