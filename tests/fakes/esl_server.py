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

# Every text below is what FreeSWITCH writes, read from signalwire/freeswitch
# (commit cc93a683ca6e1f8f47c1d6e38bd2daf8fa6a7b1c):
# - mod_event_socket.c: "Content-Type: auth/request", "Reply-Text: +OK accepted" /
#   "-ERR invalid" (parse_command, auth), "Content-Type: api/response\nContent-Length: N"
#   (api_exec), "-ERR <cmd> Command not found!" (api_exec), the disconnect notice
#   "Disconnected, goodbye.\nSee you at ClueCon! ..." and text/rude-rejection.
# - mod_sofia.c, cmd_profile(): rescan and startgw write "Reload XML [%s]\n" first
#   (err is "Success" from switch_xml.c __switch_xml_open_root), then
#   "+OK scan complete\n" / "-ERR cannot find config for profile %s\n" (rescan),
#   "+OK start gateway %s complete\n" / "-ERR cannot add gateway %s for profile %s\n"
#   (startgw); killgw answers "+OK gateway marked for deletion.\n" or
#   "-ERR no such gateway.\n"; an unknown profile "Invalid Profile [%s]" (no newline).
# - mod_sofia.c, cmd_status(): `sofia status gateway NAME` prints the block of
#   GATEWAY_STATUS below, or "Invalid Gateway!\n"; sofia_reg.c
#   sofia_reg_find_gateway__() skips a gateway marked deleted, so a killed gateway
#   is "Invalid Gateway!" at once.
VERSION = "FreeSWITCH Version 1.10.11-release+git~20231222T175158Z~cfa2e0e3c2~64bit"
RELOAD_OK = "Reload XML [Success]\n"
LINE = "=" * 97  # cmd_status()'s separator line
GATEWAY_STATUS = (
    "{line}\nName    \t{name}\nProfile \t{profile}\nScheme  \tDigest\nRealm   \t"
    "sip.example.net\nUsername\tacct\nPassword\tyes\nFrom    \t<sip:acct@sip.example.net>\n"
    "Contact \t<sip:gw+{name}@203.0.113.10:5080;transport=udp;gw={name}>\nExten   \tacct\n"
    "To      \tsip:acct@sip.example.net\nProxy   \tsip:sip.example.net\nContext \tpublic\n"
    "Expires \t800\nFreq    \t800\nPing    \t0\nPingFreq\t0\nPingTime\t0.00\n"
    "PingState\t0/0/0\nState   \tREGED\nStatus  \tUP\nUptime  \t42s\nCallsIN \t0\n"
    "CallsOUT\t0\nFailedCallsIN\t0\nFailedCallsOUT\t0\n{line}\n"
)


class Sofia:
    """The part of mod_sofia the levers touch: which gateways run on which profile.

    `running` maps a gateway name (FusionPBX names gateways by their uuid) to its
    profile. `configured(profile)` gives the gateways the profile's configuration
    holds at a rescan (FusionPBX's XML handler builds it from the enabled rows of
    v_gateways); a rescan starts those not yet running and, as FreeSWITCH's does,
    stops none. `refuse_rescan` makes the rescan fail as config_sofia() does.
    """

    def __init__(
        self,
        running: dict[str, str] | None = None,
        *,
        profiles: tuple[str, ...] = ("internal", "external"),
        configured: Callable[[str], set[str]] | None = None,
    ):
        self.running: dict[str, str] = dict(running or {})
        self.profiles = set(profiles) | set(self.running.values())
        self.configured = configured
        self.refuse_rescan = False

    def __call__(self, command: str) -> str | None:
        words = command.split()
        if words[:3] == ["sofia", "status", "gateway"] and len(words) == 4:
            profile = self.running.get(words[3])
            if profile is None:
                return "Invalid Gateway!\n"
            return GATEWAY_STATUS.format(line=LINE, name=words[3], profile=profile)
        if words[:2] != ["sofia", "profile"] or len(words) < 4:
            return None
        profile, verb, args = words[2], words[3], words[4:]
        if profile not in self.profiles:
            return f"Invalid Profile [{profile}]"
        if verb == "killgw":
            if not args:
                return "-ERR missing gw name\n"
            # sofia_reg_find_gateway() looks the name up across every profile.
            if args[0] not in self.running:
                return "-ERR no such gateway.\n"
            del self.running[args[0]]
            return "+OK gateway marked for deletion.\n"
        if verb == "startgw":
            if not args:
                return "-ERR missing gw name\n"
            wanted = self.configured(profile) if self.configured else set()
            if args[0] not in wanted:
                return f"{RELOAD_OK}-ERR cannot add gateway {args[0]} for profile {profile}\n"
            self.running[args[0]] = profile
            return f"{RELOAD_OK}+OK start gateway {args[0]} complete\n"
        if verb == "rescan":
            if self.refuse_rescan:
                return f"{RELOAD_OK}-ERR cannot find config for profile {profile}\n"
            for name in self.configured(profile) if self.configured else set():
                self.running.setdefault(name, profile)
            return f"{RELOAD_OK}+OK scan complete\n"
        return None


# source: signalwire/freeswitch src/mod/applications/mod_commands/mod_commands.c,
# hupall_api_function() (commit cc93a683ca6e1f8f47c1d6e38bd2daf8fa6a7b1c): `hupall <cause>
# [<var> <value>]...`; an unknown cause name is MANAGER_REQUEST; the channels hung up are
# those whose variables equal every pair given (src/switch_core_session.c,
# switch_core_session_hupall_matching_vars_ans()); the reply is always +OK and never says
# how many channels matched:
#   "+OK hangup all channels with cause %s\n"                      (no pair)
#   "+OK hangup all channels matching [%s]=[%s] with cause: %s\n"  (one pair)
#   "+OK hangup all channels matching [%s]=[%s]... with cause: %s\n" (more: the first shown)
# The cause names are switch_channel.c's CAUSE_CHART (a few of them here).
HUPALL_CAUSES = ("MANAGER_REQUEST", "NORMAL_CLEARING", "CALL_REJECTED", "NORMAL_TEMPORARY_FAILURE")


class Channels:
    """The calls in progress: each a dict of its channel variables (e.g. sip_gateway_name)."""

    def __init__(self, channels: list[dict[str, str]] | None = None):
        self.up: list[dict[str, str]] = list(channels or [])
        self.hung_up: list[tuple[dict[str, str], str]] = []

    def hupall(self, command: str) -> str:
        argv = command.split(" ")[1:12]  # switch_separate_string(..., argv[11])
        cause = argv[0] if argv and argv[0] in HUPALL_CAUSES else "MANAGER_REQUEST"
        pairs = [
            (argv[i], argv[i + 1]) for i in range(1, len(argv) - 1, 2) if argv[i] and argv[i + 1]
        ]
        keep = []
        for channel in self.up:
            if all(channel.get(name) == value for name, value in pairs):
                self.hung_up.append((channel, cause))
            else:
                keep.append(channel)
        self.up = keep
        if not pairs:
            return f"+OK hangup all channels with cause {cause}\n"
        more = "..." if len(pairs) > 1 else ""
        return (
            f"+OK hangup all channels matching [{argv[1]}]=[{argv[2]}]{more} with cause: {cause}\n"
        )


DEFAULT_REPLIES: dict[str, Reply] = {"version": VERSION}


def _default_reply(command: str) -> str:
    # mod_event_socket.c api_exec(): an api command no module provides.
    if command.split()[0] not in ("sofia", "version", "status", "show", "reloadxml"):
        return f"-ERR {command.split()[0]} Command not found!\n"
    return "+OK\n"


class FakeEslServer:
    """Threaded fake event socket. `replies` maps an api command (after `api `) to
    its body, or to a function of the command; other `sofia` commands are answered
    by `self.sofia` (a `Sofia`) with FreeSWITCH's texts; anything else `+OK`.

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
        sofia: Sofia | None = None,
    ):
        self.password = password
        self.sofia = sofia if sofia is not None else Sofia()
        self.channels = Channels()
        self.replies: dict[str, Reply] = {**DEFAULT_REPLIES, **(replies or {})}
        self.stall_api = stall_api
        self.silent = silent
        self.reject = reject
        self.commands: list[str] = []  # every line after a successful auth, e.g. "api version"
        # Test instrumentation, not FreeSWITCH behaviour: connections accepted.
        self.connections = 0
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
            with self._lock:
                self.connections += 1
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
                body = self._answer(command).encode()
                conn.sendall(
                    b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)
                )

    def _answer(self, command: str) -> str:
        reply = self.replies.get(command)
        if reply is not None:
            return reply(command) if callable(reply) else reply
        with self._lock:
            if command.split(" ")[0] == "hupall":
                return self.channels.hupall(command)
            answer = self.sofia(command)
        return answer if answer is not None else _default_reply(command)

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
