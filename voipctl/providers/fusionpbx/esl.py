"""A small FreeSWITCH event socket (ESL) client: authenticate, send `api` commands.

The inbound event socket speaks plain text: every message is a block of
`Name: value` header lines ended by a blank line, followed by a body of
`Content-Length` bytes when that header is present. On connect FreeSWITCH sends
`Content-Type: auth/request`; the client answers `auth PASSWORD`, FreeSWITCH
replies `Reply-Text: +OK accepted` (or `-ERR invalid` and hangs up). Each
`api COMMAND` is answered by an `api/response` whose body is the command's
output. Only what voipctl needs is here: no event subscriptions.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

from voipctl.config import secret
from voipctl.errors import ProviderAuthError, ProviderError, ProviderUnavailable

log = logging.getLogger(__name__)

# FreeSWITCH's stock event socket password, used when no esl_password_env is set.
DEFAULT_PASSWORD = "ClueCon"  # noqa: S105 - a public default, not a secret
MAX_HEADER_BYTES = 64 * 1024


class EslClient:
    """One authenticated event socket connection to a FreeSWITCH server.

    Example:
        with EslClient("fusion1", "127.0.0.1", 8021, "ClueCon") as esl:
            esl.api("sofia profile external rescan")
    """

    def __init__(self, server: str, host: str, port: int, password: str, *, timeout_s: float = 10):
        self.server = server
        self.host = host
        self.port = port
        self._password = password
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._buffer = b""
        # The end of the request being read: a request (connect and auth, or one api
        # command) has timeout_s in all, so a peer that trickles bytes cannot keep it.
        self._deadline: float | None = None
        self._answered = False  # some bytes of the request's answer came

    @property
    def where(self) -> str:
        return f"event socket {self.host}:{self.port}"

    # -- connection ---------------------------------------------------------

    @property
    def _limit(self) -> str:
        return f"{self.timeout_s:g}s (servers.{self.server}.timeout_s)"

    def connect(self) -> EslClient:
        """Connect and authenticate; raises ProviderUnavailable or ProviderAuthError."""
        self._deadline, self._answered = time.monotonic() + self.timeout_s, False
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except TimeoutError:
            raise ProviderUnavailable(
                self.server, f"{self.where}: connect timed out after {self._limit}"
            ) from None
        except OSError as exc:
            raise ProviderUnavailable(
                self.server, f"{self.where}: cannot connect ({exc.strerror or exc})"
            ) from None
        self._sock.settimeout(self.timeout_s)
        headers, body = self._read_message()
        if headers.get("Content-Type") == "text/rude-rejection":
            # FreeSWITCH's apply-inbound-acl turned this address away before any auth.
            self.close()
            reason = body.decode("utf-8", errors="replace").strip()[:80]
            raise ProviderAuthError(
                self.server,
                f"{self.where}: the connection was refused ({reason or 'rude rejection'}); "
                "allow this host in event_socket.conf.xml apply-inbound-acl",
            )
        if headers.get("Content-Type") != "auth/request":
            self.close()
            raise ProviderError(
                self.server,
                f"{self.where}: expected auth/request, got {headers.get('Content-Type')!r}"
                " (is this a FreeSWITCH event socket?)",
            )
        self._send(f"auth {self._password}")
        headers, _ = self._read_reply("command/reply")
        reply = headers.get("Reply-Text", "")
        if not reply.startswith("+OK"):
            self.close()
            # The reply never contains the password; it is shown to tell "invalid" from others.
            raise ProviderAuthError(
                self.server, f"{self.where}: the credentials were refused ({reply or 'no reply'})"
            )
        log.debug("%s: %s authenticated", self.server, self.where)
        return self

    def close(self) -> None:
        """Say goodbye (best effort) and close the socket."""
        if self._sock is None:
            return
        try:
            self._sock.sendall(b"exit\n\n")
        except OSError:
            pass
        finally:
            self._sock.close()
            self._sock = None
            self._buffer = b""

    def __enter__(self) -> EslClient:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- commands -----------------------------------------------------------

    def api(self, command: str) -> str:
        """Run `api COMMAND` and return its output; a `-ERR` answer raises ProviderError."""
        if "\n" in command or "\r" in command:
            raise ValueError("an event socket command is one line")
        if self._sock is None:
            self.connect()
        self._deadline, self._answered = time.monotonic() + self.timeout_s, False
        self._send(f"api {command}")
        _, body = self._read_reply("api/response")
        text = body.decode("utf-8", errors="replace")
        log.debug("%s: api %s -> %s", self.server, command, text.strip()[:200])
        if text.startswith("-ERR"):
            raise ProviderError(
                self.server, f"{self.where}: `{command}` failed: {text.strip()[:200]}"
            )
        return text

    # -- wire ---------------------------------------------------------------

    def _send(self, line: str) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(line.encode() + b"\n\n")
        except TimeoutError:
            raise ProviderUnavailable(self.server, f"{self.where}: send timed out") from None
        except OSError as exc:
            raise ProviderUnavailable(
                self.server, f"{self.where}: connection lost ({exc.strerror or exc})"
            ) from None

    def _read_reply(self, content_type: str) -> tuple[dict[str, str], bytes]:
        # Skip anything else FreeSWITCH may interleave (log lines, notices).
        while True:
            headers, body = self._read_message()
            kind = headers.get("Content-Type")
            if kind == content_type:
                return headers, body
            if kind == "text/disconnect-notice":
                self.close()
                raise ProviderUnavailable(
                    self.server, f"{self.where}: FreeSWITCH closed the connection"
                )

    def _read_message(self) -> tuple[dict[str, str], bytes]:
        head = self._read_until(b"\n\n")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", errors="replace").splitlines():
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip()] = value.strip()
        body = b""
        length = headers.get("Content-Length")
        if length:
            if not length.isdigit():
                raise ProviderError(self.server, f"{self.where}: bad Content-Length {length!r}")
            body = self._read_exactly(int(length))
        return headers, body

    def _recv(self) -> bytes:
        if self._sock is None:
            raise ProviderUnavailable(self.server, f"{self.where}: not connected")
        left = self.timeout_s
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                self.close()
                what = "no complete answer" if self._answered else "no answer"
                raise ProviderUnavailable(self.server, f"{self.where}: {what} within {self._limit}")
        try:
            self._sock.settimeout(min(left, self.timeout_s))
            chunk = self._sock.recv(65536)
        except TimeoutError:
            self.close()
            what = "no complete answer" if self._answered else "no answer"
            raise ProviderUnavailable(
                self.server, f"{self.where}: {what} within {self._limit}"
            ) from None
        except OSError as exc:
            self.close()
            raise ProviderUnavailable(
                self.server, f"{self.where}: connection lost ({exc.strerror or exc})"
            ) from None
        if not chunk:
            self.close()
            raise ProviderUnavailable(self.server, f"{self.where}: connection closed by FreeSWITCH")
        self._answered = True
        return chunk

    def _read_until(self, marker: bytes) -> bytes:
        while True:
            index = self._buffer.find(marker)
            if index >= 0:
                head, self._buffer = self._buffer[:index], self._buffer[index + len(marker) :]
                return head
            if len(self._buffer) > MAX_HEADER_BYTES:
                raise ProviderError(self.server, f"{self.where}: header block too long")
            self._buffer += self._recv()

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._buffer += self._recv()
        body, self._buffer = self._buffer[:size], self._buffer[size:]
        return body


def sofia_verdict(reply: str) -> tuple[bool, str]:
    """(ok, the line that says so) for a `sofia profile ...` reply.

    mod_sofia's cmd_profile() writes progress first: `rescan` and `startgw` start
    with `Reload XML [Success]` (or the XML error), then `+OK scan complete` /
    `-ERR cannot find config for profile P`. The verdict is the last line; a reply
    with no `+OK` line (`Invalid Profile [P]`) is a refusal.
    """
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last.startswith("+OK"), last or "no reply"


@dataclass(frozen=True)
class GatewayStatus:
    """What `sofia status gateway NAME` says: running or not, and its State/Status lines."""

    running: bool
    state: str = ""
    status: str = ""

    def describe(self) -> str:
        if not self.running:
            return "FreeSWITCH runs no such gateway"
        return f"FreeSWITCH runs it (State {self.state or '?'}, Status {self.status or '?'})"


def parse_gateway_status(server: str, name: str, reply: str) -> GatewayStatus:
    """Read cmd_status()'s answer: `Invalid Gateway!` or its `Name\tNAME ...` block."""
    text = reply.strip()
    if text == "Invalid Gateway!":
        return GatewayStatus(False)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("\t")
        if sep:
            fields[key.strip()] = value.strip()
    if fields.get("Name") != name:
        raise ProviderError(
            server, f"event socket: `sofia status gateway {name}` answered {text[:200]!r}"
        )
    return GatewayStatus(True, fields.get("State", ""), fields.get("Status", ""))


def esl_for(name: str, config) -> EslClient:
    """An (unconnected) client for server `name`'s esl_host/esl_port/esl_password_env.

    The password comes from the variable `esl_password_env` names, or is
    FreeSWITCH's default `ClueCon` when no variable is configured.
    """
    password = secret(config.esl_password_env, what=f"servers.{name}.esl_password_env")
    return EslClient(
        name,
        config.esl_host,
        config.esl_port,
        DEFAULT_PASSWORD if password is None else password,
        timeout_s=min(config.timeout_s, 30.0),
    )
