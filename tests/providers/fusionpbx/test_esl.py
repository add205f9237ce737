"""The event socket client against a fake FreeSWITCH event socket on a real port."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest

from tests.fakes.esl_server import FakeEslServer, Sofia
from voipctl.errors import ConfigError, ProviderAuthError, ProviderError, ProviderUnavailable
from voipctl.providers.fusionpbx.esl import (
    EslClient,
    GatewayStatus,
    esl_for,
    parse_gateway_status,
    sofia_verdict,
)


def test_auth_and_api_round_trip(esl_server):
    with EslClient("fusion1", esl_server.host, esl_server.port, "ClueCon") as esl:
        assert esl.api("version").startswith("FreeSWITCH Version 1.10")
        # mod_sofia.c cmd_profile(): the reload line comes before the verdict.
        assert esl.api("sofia profile external rescan") == (
            "Reload XML [Success]\n+OK scan complete\n"
        )
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
    with (
        FakeEslServer() as server,
        EslClient("fusion1", server.host, server.port, "ClueCon") as esl,
        pytest.raises(ProviderError) as caught,
    ):
        esl.api("sofai status")
    assert not isinstance(caught.value, ProviderUnavailable)
    assert str(caught.value) == (
        f"fusion1: event socket 127.0.0.1:{server.port}: `sofai status` failed: "
        "-ERR sofai Command not found!"
    )


def test_api_response_frame_is_freeswitch_s():
    """The raw frame: Content-Type then Content-Length, as mod_event_socket.c writes it."""
    with FakeEslServer() as server, socket.create_connection((server.host, server.port)) as raw:
        raw.settimeout(2)
        assert raw.recv(100) == b"Content-Type: auth/request\n\n"
        raw.sendall(b"auth ClueCon\n\n")
        assert raw.recv(100) == b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
        raw.sendall(b"api sofia status gateway nosuch\n\n")
        assert raw.recv(200) == (
            b"Content-Type: api/response\nContent-Length: 17\n\nInvalid Gateway!\n"
        )


SOFIA_CASES = [
    ("sofia profile external killgw gw1", "+OK gateway marked for deletion.\n"),
    ("sofia profile external killgw gw1", "-ERR no such gateway.\n"),
    ("sofia profile external killgw", "-ERR missing gw name\n"),
    ("sofia profile external startgw gw1", (
        "Reload XML [Success]\n+OK start gateway gw1 complete\n"
    )),
    ("sofia profile external startgw gw9", (
        "Reload XML [Success]\n-ERR cannot add gateway gw9 for profile external\n"
    )),
    ("sofia profile nosuch rescan", "Invalid Profile [nosuch]"),
]  # fmt: skip


def test_fake_sofia_answers_cmd_profile_texts():
    configured = {"gw1"}
    sofia = Sofia({"gw1": "external"}, configured=lambda profile: configured)
    with FakeEslServer(sofia=sofia) as server, esl_for_fake(server) as esl:
        for command, expected in SOFIA_CASES:
            if expected.startswith("-ERR"):
                with pytest.raises(ProviderError) as caught:
                    esl.api(command)
                assert str(caught.value).endswith(f"failed: {expected.strip()}")
            else:
                assert esl.api(command) == expected, command
        status = esl.api("sofia status gateway gw1")
        assert status.startswith("=" * 97 + "\nName    \tgw1\nProfile \texternal\n")
        assert parse_gateway_status("fusion1", "gw1", status) == GatewayStatus(True, "REGED", "UP")
        sofia.refuse_rescan = True
        refused = esl.api("sofia profile external rescan")
        assert refused == "Reload XML [Success]\n-ERR cannot find config for profile external\n"
        assert sofia_verdict(refused) == (False, "-ERR cannot find config for profile external")


def esl_for_fake(server: FakeEslServer) -> EslClient:
    return EslClient("fusion1", server.host, server.port, "ClueCon")


def test_sofia_verdict_reads_the_last_line():
    assert sofia_verdict("Reload XML [Success]\n+OK scan complete\n") == (True, "+OK scan complete")
    assert sofia_verdict("+OK gateway marked for deletion.\n") == (
        True,
        "+OK gateway marked for deletion.",
    )
    assert sofia_verdict("Invalid Profile [x]") == (False, "Invalid Profile [x]")
    assert sofia_verdict("") == (False, "no reply")


def test_gateway_status_other_text_is_an_error():
    assert parse_gateway_status("fusion1", "gw1", "Invalid Gateway!\n") == GatewayStatus(False)
    with pytest.raises(ProviderError) as caught:
        parse_gateway_status("fusion1", "gw1", "-USAGE: ...\n")
    assert str(caught.value) == (
        "fusion1: event socket: `sofia status gateway gw1` answered '-USAGE: ...'"
    )


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


class _TricklingEsl:
    """An event socket that greets and authenticates at once, then answers each `api`
    with its headers and one body byte every 0.1 s: no single read ever times out.

    The wire format (auth/request, command/reply, api/response with Content-Length)
    is the one tests/fakes/esl_server.py follows; source: signalwire/freeswitch
    src/mod/event_handlers/mod_event_socket/mod_event_socket.c.
    """

    def __init__(self):
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading

        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn):
        with conn:
            try:
                conn.sendall(b"Content-Type: auth/request\n\n")
                conn.recv(4096)  # auth ClueCon
                conn.sendall(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
                conn.recv(4096)  # api ...
                conn.sendall(b"Content-Type: api/response\nContent-Length: 100000\n\n")
                while not self.stop.is_set():
                    conn.sendall(b"x")
                    time.sleep(0.1)
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.sock.close()


def test_an_event_socket_that_trickles_its_answer_stops_at_the_request_limit():
    server = _TricklingEsl()
    try:
        esl = EslClient("fusion1", "127.0.0.1", server.port, "ClueCon", timeout_s=0.5).connect()
        began = time.monotonic()
        with pytest.raises(ProviderUnavailable) as caught:
            esl.api("sofia status")
        assert time.monotonic() - began < 2  # the 100000 s of the body are never waited for
        assert str(caught.value) == (
            f"fusion1: event socket 127.0.0.1:{server.port}: no complete answer within "
            "0.5s (servers.fusion1.timeout_s)"
        )
    finally:
        server.close()


def test_an_event_socket_that_accepts_and_never_answers_names_the_limit():
    with FakeEslServer(silent=True) as server:
        began = time.monotonic()
        with pytest.raises(ProviderUnavailable) as caught:
            EslClient("fusion1", server.host, server.port, "ClueCon", timeout_s=0.3).connect()
        assert time.monotonic() - began < 2
    assert str(caught.value) == (
        f"fusion1: event socket {server.host}:{server.port}: no answer within 0.3s "
        "(servers.fusion1.timeout_s)"
    )
