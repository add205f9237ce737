"""The event socket client against a fake FreeSWITCH event socket on a real port."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest

from tests.fakes.esl_server import FakeEslServer
from voipctl.errors import ConfigError, ProviderAuthError, ProviderError, ProviderUnavailable
from voipctl.providers.esl import EslClient, esl_for


def test_auth_and_api_round_trip(esl_server):
    with EslClient("fusion1", esl_server.host, esl_server.port, "ClueCon") as esl:
        assert esl.api("version").startswith("FreeSWITCH Version 1.10")
        assert esl.api("sofia profile external rescan") == "+OK scan complete\n"
    assert esl_server.wait_for(2) == ["api version", "api sofia profile external rescan"]
    assert esl_server.auth_attempts == 1 and esl_server.auth_failures == 0


def test_body_with_many_lines_and_exact_length():
    body = "line one\nline two\n\n\nafter blank lines: é\n"
    with (
        FakeEslServer(replies={"show calls": body}) as server,
        EslClient("fusion1", server.host, server.port, "ClueCon") as esl,
    ):
        assert esl.api("show calls") == body
        # The connection stays in step: the next reply is read from its own frame.
        assert esl.api("status") == "+OK\n"


def test_bad_password_names_server_and_hides_password():
    with FakeEslServer(password="right-one") as server:
        client = EslClient("fusion1", server.host, server.port, "Wr0ngSecret!")
        with pytest.raises(ProviderAuthError) as caught:
            client.connect()
    message = str(caught.value)
    assert message.startswith("fusion1: event socket 127.0.0.1:")
    assert "credentials were refused" in message and "-ERR invalid" in message
    assert "Wr0ngSecret" not in message and "right-one" not in message
    assert server.auth_failures == 1 and server.commands == []


def test_err_reply_raises_with_the_reply():
    replies = {"sofia profile nosuch rescan": "-ERR no such profile\n"}
    with (
        FakeEslServer(replies=replies) as server,
        EslClient("fusion1", server.host, server.port, "ClueCon") as esl,
        pytest.raises(ProviderError) as caught,
    ):
        esl.api("sofia profile nosuch rescan")
    assert not isinstance(caught.value, ProviderUnavailable)
    assert "`sofia profile nosuch rescan` failed: -ERR no such profile" in str(caught.value)


def test_api_timeout_is_unavailable():
    with FakeEslServer(stall_api=True) as server:
        esl = EslClient("fusion1", server.host, server.port, "ClueCon", timeout_s=0.3).connect()
        began = time.monotonic()
        with pytest.raises(ProviderUnavailable, match=r"fusion1: .*no answer within 0.3s"):
            esl.api("version")
        assert time.monotonic() - began < 2
        esl.close()


def test_server_that_never_greets_times_out():
    with (
        FakeEslServer(silent=True) as server,
        pytest.raises(ProviderUnavailable, match="no answer within"),
    ):
        EslClient("fusion1", server.host, server.port, "ClueCon", timeout_s=0.3).connect()


def test_address_refused_by_the_acl():
    with (
        FakeEslServer(reject=True) as server,
        pytest.raises(ProviderAuthError, match="Access Denied, go away.*apply-inbound-acl"),
    ):
        EslClient("fusion1", server.host, server.port, "ClueCon").connect()


def test_connection_refused_is_unavailable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ProviderUnavailable, match=rf"fusion1: event socket 127.0.0.1:{port}"):
        EslClient("fusion1", "127.0.0.1", port, "ClueCon", timeout_s=1).connect()


def test_command_must_be_one_line(esl_server):
    with (
        EslClient("fusion1", esl_server.host, esl_server.port, "ClueCon") as esl,
        pytest.raises(ValueError),
    ):
        esl.api("version\n\napi fsctl shutdown")
    assert esl_server.api_commands == []


def _server_config(**overrides):
    values = {"esl_host": "127.0.0.1", "esl_port": 8021, "esl_password_env": None}
    values["timeout_s"] = 5.0
    return SimpleNamespace(**{**values, **overrides})


def test_password_from_env_and_default(monkeypatch):
    with FakeEslServer(password="from-env") as server:
        monkeypatch.setenv("FUSION1_ESL_PASSWORD", "from-env")
        config = _server_config(esl_port=server.port, esl_password_env="FUSION1_ESL_PASSWORD")
        with esl_for("fusion1", config) as esl:
            assert esl.api("status") == "+OK\n"
    # The stock password when no variable is configured.
    with FakeEslServer() as server, esl_for("fusion1", _server_config(esl_port=server.port)) as esl:
        assert esl.api("status") == "+OK\n"


def test_named_but_unset_password_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("FUSION1_ESL_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="servers.fusion1.esl_password_env"):
        esl_for("fusion1", _server_config(esl_password_env="FUSION1_ESL_PASSWORD"))
