"""A fake FreeSWITCH event socket on 127.0.0.1 that speaks the inbound ESL protocol.

It sends `auth/request`, checks `auth PASSWORD`, answers `api COMMAND` with an
`api/response` body and records every command line it received, so tests can
assert exactly what the PBX was told:

    with FakeEslServer(password="s3cret") as esl:
        ...  # point the adapter at esl.host / esl.port
        assert esl.commands == ["api sofia profile external rescan"]
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

Reply = str | Callable[[str], str]

DEFAULT_REPLIES: dict[str, Reply] = {
    "version": "FreeSWITCH Version 1.10.11-release+git~fake (64bit)",
    "sofia profile external rescan": "+OK scan complete\n",
}


def _default_reply(command: str) -> str:
    if " killgw " in command:
        return "+OK gateway marked for deletion.\n"
    return "+OK\n"


class FakeEslServer:
    """Threaded fake event socket. `replies` maps an api command (after `api `) to
    its body, or to a function of the command; unknown commands answer `+OK`.

    `stall_api=True` reads commands but never answers them (client timeouts);
    `silent=True` accepts connections and never sends `auth/request`;
    `reject=True` turns connections away as an inbound ACL does.
    """

    def __init__(
        self,
        password: str = "ClueCon",
        replies: dict[str, Reply] | None = None,
        *,
        stall_api: bool = False,
        silent: bool = False,
        reject: bool = False,
    ):
        self.password = password
        self.replies: dict[str, Reply] = {**DEFAULT_REPLIES, **(replies or {})}
        self.stall_api = stall_api
        self.silent = silent
        self.reject = reject
        self.commands: list[str] = []  # every line after a successful auth, e.g. "api version"
        self.auth_attempts = 0
        self.auth_failures = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.host, self.port = self._sock.getsockname()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> FakeEslServer:
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        self._accept_thread.join(timeout=2)
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> FakeEslServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- protocol -------------------------------------------------------------

    def _accept_loop(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buffer = b""

        def read_block() -> str | None:
            nonlocal buffer
            while b"\n\n" not in buffer:
                if self._stop.is_set():
                    return None
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return None
                if not chunk:
                    return None
                buffer += chunk
            block, buffer = buffer.split(b"\n\n", 1)
            return block.decode()

        with conn:
            if self.silent:
                while read_block() is not None:
                    pass
                return
            if self.reject:
                # What FreeSWITCH sends an address its apply-inbound-acl does not allow.
                text = b"Access Denied, go away.\n"
                conn.sendall(
                    b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n%s"
                    % (len(text), text)
                )
                return
            conn.sendall(b"Content-Type: auth/request\n\n")
            block = read_block()
            if block is None:
                return
            with self._lock:
                self.auth_attempts += 1
            if block != f"auth {self.password}":
                with self._lock:
                    self.auth_failures += 1
                notice = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
                conn.sendall(b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n")
                conn.sendall(
                    b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n%s"
                    % (len(notice), notice)
                )
                return
            conn.sendall(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
            while (block := read_block()) is not None:
                with self._lock:
                    self.commands.append(block)
                if block == "exit":
                    conn.sendall(b"Content-Type: command/reply\nReply-Text: +OK bye\n\n")
                    return
                if not block.startswith("api "):
                    conn.sendall(
                        b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n"
                    )
                    continue
                if self.stall_api:
                    continue
                command = block[len("api ") :]
                reply = self.replies.get(command, _default_reply)
                body = (reply(command) if callable(reply) else reply).encode()
                conn.sendall(
                    b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)
                )

    # -- assertions -----------------------------------------------------------

    @property
    def api_commands(self) -> list[str]:
        """The `api ...` lines received, in order (without the closing `exit`)."""
        with self._lock:
            return [c for c in self.commands if c.startswith("api ")]

    def wait_for(self, count: int, timeout: float = 2.0) -> list[str]:
        """Wait until `count` api commands arrived (the server thread may lag the client)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.api_commands) < count:
            time.sleep(0.01)
        return self.api_commands
