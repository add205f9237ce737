"""The provider simulator: FusionPBX's CSV export, Vodia's REST API and LES.NET CDR files.

A real HTTP server on 127.0.0.1 with generated calls (see `voipctl.sim.calls`),
for trials (`voipctl simulate`), the demo and end-to-end tests::

    sim = Simulator(SimConfig(seed=7, days=3))
    base_url = sim.start()            # port 0: a free port, served from a thread
    sim.fail("/rest/", times=2)       # the next two Vodia requests answer 503
    sim.delay("/cdr/", seconds=5)     # the next LES.NET file request is slow
    sim.lesnet_days = 2               # the LES.NET file shows only the first 2 days
    ...
    sim.stop()

Endpoints:
- `GET /app/xml_cdr/xml_cdr_export.php?key=..&export_format=csv&start_epoch=..&stop_epoch=..
  &domain_name=..`: a quoted header row and one row per leg (inbound calls also
  have a b-leg); a wrong key answers "access denied" like FusionPBX does.
- `PUT /rest/system/session`, `GET /rest/system/domaininfo`,
  `GET /rest/domain/TENANT/cdrs?start=YYYYMMDD&end=YYYYMMDD&page=N&size=M`,
  `PUT /rest/domain/TENANT/edit_trunk/ID`, `PUT /rest/domain/TENANT/user_settings/EXT`,
  `GET /rest/domain/TENANT/edit_trunk/ID` (the trunk's settings, `dis` among them):
  Basic or session auth; trunk and extension changes are kept in `vodia_state`.
- `GET /cdr/ACCOUNT.txt`: the account's CDR file in voipctl's default LES.NET layout,
  `POST /v1/account/balance/`: LES.NET's JSON API (apikey/idkey).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

from voipctl.sim.calls import SimCall, generate

log = logging.getLogger(__name__)

FUSION_COLUMNS = (
    "xml_cdr_uuid",
    "domain_name",
    "direction",
    "extension",
    "caller_id_name",
    "caller_id_number",
    "caller_destination",
    "destination_number",
    "start_epoch",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "duration",
    "billsec",
    "hangup_cause",
    "status",
    "leg",
)
LESNET_HEADER = ("date", "src", "dst", "duration", "peer", "did")


@dataclass(frozen=True)
class FusionTenant:
    domain: str = "mcon.sim.example"
    extensions: tuple[str, ...] = ("2112", "2113", "2114")
    dids: tuple[str, ...] = ("5192229000",)


@dataclass(frozen=True)
class VodiaTenant:
    domain: str = "rucken.sim.example"
    extensions: tuple[str, ...] = ("8300", "8301")
    dids: tuple[str, ...] = ("5484815577", "5197830020")
    trunk_id: str = "106"


@dataclass(frozen=True)
class LesnetPeer:
    peer: str
    did: str


@dataclass(frozen=True)
class LesnetAccount:
    account: str = "11330_0000"
    peers: tuple[LesnetPeer, ...] = (
        LesnetPeer("D4E3CD2BFC791", "12046664021"),
        LesnetPeer("A1B2C3D4E5F60", "12045550199"),
    )


@dataclass
class SimConfig:
    """What the simulator serves. `end` defaults to the start of the current hour (UTC)."""

    seed: int = 7
    days: int = 3
    calls_per_day: int = 40
    end: datetime | None = None
    fusion: tuple[FusionTenant, ...] = (FusionTenant(),)
    vodia: tuple[VodiaTenant, ...] = (VodiaTenant(),)
    lesnet: tuple[LesnetAccount, ...] = (LesnetAccount(),)
    fusion_api_key: str = "sim-fusion-api-key-0123456789abcdef0123456789"
    vodia_username: str = "admin"
    vodia_password: str = "sim-vodia-password"  # noqa: S105 - the simulator's own credential
    lesnet_api_key: str = "sim-lesnet-apikey"
    lesnet_id_key: str = "sim-lesnet-idkey"
    vodia_timezone: str = "America/Toronto"
    lesnet_timezone: str = "America/Toronto"
    fusion_timezone: str = "UTC"


@dataclass
class _Fault:
    prefix: str
    remaining: int
    status: int | None
    delay_s: float


@dataclass
class Simulator:
    """The simulator's data and state; `start()` serves it over HTTP."""

    config: SimConfig = field(default_factory=SimConfig)

    def __post_init__(self):
        cfg = self.config
        end = cfg.end or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.end = end.astimezone(UTC)
        self.start_at = self.end - timedelta(days=cfg.days)
        self.lesnet_days = cfg.days
        self.vodia_state: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []
        self._faults: list[_Fault] = []
        self._sessions: set[str] = set()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.fusion_calls = {
            t.domain: self._calls(t.domain, t.extensions, t.dids) for t in cfg.fusion
        }
        self.vodia_calls = {
            t.domain: self._calls(t.domain, t.extensions, t.dids) for t in cfg.vodia
        }
        self.lesnet_calls: dict[str, list[tuple[LesnetPeer, SimCall]]] = {}
        for account in cfg.lesnet:
            rows = []
            for peer in account.peers:
                for call in self._calls(peer.peer, (), (peer.did,), local=False):
                    rows.append((peer, call))
            rows.sort(key=lambda pair: (pair[1].start, pair[0].peer))
            self.lesnet_calls[account.account] = rows

    def _calls(self, key, extensions, dids, local=True) -> list[SimCall]:
        return generate(
            seed=self.config.seed,
            key=key,
            start=self.start_at,
            days=self.config.days,
            calls_per_day=self.config.calls_per_day,
            extensions=tuple(extensions),
            dids=tuple(dids),
            local_calls=local,
        )

    # -- running ----------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve from a daemon thread; return the base URL (port 0 picks a free port)."""
        self._httpd = _Server((host, port), _Handler)
        self._httpd.sim = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self.base_url

    def bind(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind without serving yet (to print the URL first); then `serve_bound()`."""
        self._httpd = _Server((host, port), _Handler)
        self._httpd.sim = self  # type: ignore[attr-defined]
        return self.base_url

    def serve_bound(self) -> None:
        """Serve the bound port in the foreground until interrupted (`voipctl simulate`)."""
        assert self._httpd is not None
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Simulator:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test controls ----------------------------------------------------------

    def fail(self, prefix: str, times: int = 1, status: int = 503) -> None:
        """The next `times` requests whose path starts with `prefix` answer `status`."""
        with self._lock:
            self._faults.append(_Fault(prefix, times, status, 0.0))

    def delay(self, prefix: str, seconds: float, times: int = 1) -> None:
        """The next `times` requests whose path starts with `prefix` wait `seconds` first."""
        with self._lock:
            self._faults.append(_Fault(prefix, times, None, seconds))

    def expire_sessions(self) -> None:
        """Forget every Vodia session (the next request with one gets 401)."""
        with self._lock:
            self._sessions.clear()

    def _fault_for(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and path.startswith(fault.prefix):
                    fault.remaining -= 1
                    return fault
        return None

    # -- what to configure ------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The environment variables the config snippet names."""
        return {
            "SIM_FUSION_API_KEY": self.config.fusion_api_key,
            "SIM_VODIA_PASSWORD": self.config.vodia_password,
            "SIM_LESNET_API_KEY": self.config.lesnet_api_key,
            "SIM_LESNET_ID_KEY": self.config.lesnet_id_key,
            # The FusionPBX suspend levers write FusionPBX's database, which the
            # simulator does not have: pulls work, `server check` says it is unreachable.
            "SIM_FUSION_DB_URL": "postgresql://fusionpbx@fusionpbx.invalid/fusionpbx",
        }

    def config_snippet(self) -> str:
        """voipctl.toml servers matching this simulator (secrets by env, see `env()`)."""
        base = self.base_url
        cfg = self.config
        return f"""\
[servers.sim_vodia]
type = "vodia"
url = "{base}"
auth = "session"
username = "{cfg.vodia_username}"
password_env = "SIM_VODIA_PASSWORD"
timezone = "{cfg.vodia_timezone}"
suspend = "trunk"

[servers.sim_lesnet]
type = "lesnet"
url = "{base}/v1"
api_key_env = "SIM_LESNET_API_KEY"
id_key_env = "SIM_LESNET_ID_KEY"
suspend = "manual"
[servers.sim_lesnet.cdr_format]
timezone = "{cfg.lesnet_timezone}"

# FusionPBX export mode; its suspend levers write FusionPBX's database, so
# db_url_env must name a variable (the simulator has no such database: pulls
# work, suspension and `server check` report it unreachable).
[servers.sim_fusion]
type = "fusionpbx"
mode = "export"
url = "{base}"
api_key_env = "SIM_FUSION_API_KEY"
db_url_env = "SIM_FUSION_DB_URL"
timezone = "{cfg.fusion_timezone}"
"""

    def services(self) -> list[dict[str, Any]]:
        """One `service add` worth of fields per simulated tenant or peer."""
        out = []
        for t in self.config.vodia:
            out.append(
                {
                    "server": "sim_vodia",
                    "domain": " | ".join((t.domain, *t.dids)),
                    "billed": t.extensions[0],
                    "trunk": t.trunk_id,
                }
            )
        for t in self.config.fusion:
            out.append(
                {
                    "server": "sim_fusion",
                    "domain": f"{t.domain} | {t.dids[0]}",
                    "billed": " | ".join(t.extensions),
                }
            )
        for account in self.config.lesnet:
            for peer in account.peers:
                out.append(
                    {
                        "server": "sim_lesnet",
                        "domain": f"{peer.peer} | {peer.did}",
                        "billed": peer.did,
                        "cdr_link": f"{self.base_url}/cdr/{account.account}.txt",
                    }
                )
        return out

    # -- payloads ---------------------------------------------------------------

    def fusion_csv(self, domain: str | None, start_epoch: float, stop_epoch: float) -> str:
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(FUSION_COLUMNS)
        tenants = [t for t in self.config.fusion if domain in (None, t.domain)]
        for tenant in tenants:
            for call in self.fusion_calls[tenant.domain]:
                if not start_epoch <= int(call.start) <= stop_epoch:
                    continue
                for row in _fusion_rows(tenant, call):
                    writer.writerow(row)
        return out.getvalue()

    def vodia_cdrs(self, domain: str, first: str, last: str, page: int, size: int) -> list:
        tenant = next((t for t in self.config.vodia if t.domain == domain), None)
        if tenant is None:
            return []
        zone = ZoneInfo(self.config.vodia_timezone)
        items = []
        for call in self.vodia_calls[domain]:
            day = datetime.fromtimestamp(call.start, zone).strftime("%Y%m%d")
            if first <= day <= last:
                items.append(_vodia_item(tenant, call))
        return items[(page - 1) * size : page * size]

    def lesnet_file(self, account: str) -> str | None:
        rows = self.lesnet_calls.get(account)
        if rows is None:
            return None
        zone = ZoneInfo(self.config.lesnet_timezone)
        last = int((self.start_at + timedelta(days=self.lesnet_days)).timestamp())
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(LESNET_HEADER)
        for peer, call in rows:
            if call.start >= last:
                break
            local = datetime.fromtimestamp(int(call.start), zone).strftime("%Y-%m-%d %H:%M:%S")
            if call.direction == "outbound":
                src, dst = peer.did, call.called
            else:
                src, dst = "1" + call.caller, peer.did
            writer.writerow((local, src, dst, call.billsec, peer.peer, peer.did))
        return out.getvalue()


def _stamp(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S+00")


def _fusion_rows(tenant: FusionTenant, call: SimCall) -> list[tuple]:
    if call.direction == "outbound":
        caller_number, caller_dest, dest = tenant.dids[0], call.called, call.called
    elif call.direction == "inbound":
        caller_number, caller_dest, dest = call.caller, call.did, call.extension
    else:
        caller_number, caller_dest, dest = call.caller, call.called, call.called
    row = [
        call.uuid,
        tenant.domain,
        call.direction,
        call.extension,
        f"Ext {call.extension}" if call.direction != "inbound" else call.caller,
        caller_number,
        caller_dest,
        dest,
        str(int(call.start)),
        _stamp(call.start),
        _stamp(call.answer),
        _stamp(call.end),
        str(call.billsec),  # FusionPBX's export selects billsec as duration
        str(call.billsec),
        call.hangup_cause,
        call.status,
        "a",
    ]
    rows = [tuple(row)]
    if call.direction == "inbound":
        # The b-leg to the extension describes the same call again.
        b_leg = list(row)
        b_leg[0] = str(uuid.uuid5(uuid.NAMESPACE_URL, call.uuid))
        b_leg[-1] = "b"
        rows.append(tuple(b_leg))
    return rows


def _vodia_item(tenant: VodiaTenant, call: SimCall) -> dict[str, Any]:
    host = tenant.domain
    if call.direction == "outbound":
        sender = f'"Ext {call.extension}" <sip:{call.extension}@{host}>'
        receiver = f'"{call.called}" <sip:{call.called}@{host}>'
    elif call.direction == "inbound":
        sender = f'"{call.caller}" <sip:{call.caller}@trunk.sim.example>'
        receiver = f"<sip:{call.did}@{host}>"
    else:
        sender = f'"Ext {call.extension}" <sip:{call.extension}@{host}>'
        receiver = f"<sip:{call.called}@{host}>"
    # Keys and float times of the webcdr record (https://doc.vodia.com/docs/webcdr); the
    # listing and its extensions/trunks lists are unverified (docs/providers.md).
    item: dict[str, Any] = {
        "callid": f"{call.uuid}@10.254.43.9",
        "domain": host,
        "from": sender,
        "to": receiver,
        "start": round(call.start, 3),
    }
    if call.answer is not None:
        item["connect"] = round(call.answer, 3)
    item["end"] = round(call.end, 3)
    item["extensions"] = [call.extension] if call.extension else []
    item["trunks"] = [] if call.direction == "local" else [tenant.trunk_id]
    return item


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (a timeout test) leaves a broken pipe: not news.
        log.debug("sim: request from %s ended early", client_address[0], exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server_version = "voipctl-sim/1"
    protocol_version = "HTTP/1.1"

    @property
    def sim(self) -> Simulator:
        return self.server.sim  # type: ignore[attr-defined]

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        # The path alone: query strings carry API keys (FusionPBX export), and the
        # simulator often runs inside a voipctl process whose -vv log this is.
        log.debug("sim: %s %s", self.command, urlsplit(self.path).path)

    def _send(self, status: int, body: str | bytes, content_type: str = "application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="sim"')
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc))

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = self._body()
        with self.sim._lock:
            self.sim.requests.append((method, path))
        fault = self.sim._fault_for(path)
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.status:
                self._send(fault.status, "simulated failure", "text/plain")
                return
        try:
            self._route(method, path, query, body)
        except (ValueError, KeyError) as exc:
            self._send(400, f"bad request: {exc}", "text/plain")

    def do_GET(self):  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_PUT(self):  # noqa: N802
        self._handle("PUT")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        sim = self.sim
        if method == "GET" and path == "/app/xml_cdr/xml_cdr_export.php":
            if query.get("key") != sim.config.fusion_api_key:
                self._send(200, "access denied", "text/html")
                return
            text = sim.fusion_csv(
                query.get("domain_name"),
                float(query.get("start_epoch") or 0),
                float(query.get("stop_epoch") or 2**40),
            )
            self._send(200, text, "text/csv")
            return
        if path.startswith("/cdr/") and path.endswith(".txt") and method == "GET":
            text = sim.lesnet_file(path[len("/cdr/") : -len(".txt")])
            if text is None:
                self._send(404, "not found", "text/plain")
            else:
                self._send(200, text, "text/plain")
            return
        if path.rstrip("/") == "/v1/account/balance" and method == "POST":
            auth = json.loads(body or b"{}").get("authentication") or {}
            if (auth.get("apikey"), auth.get("idkey")) != (
                sim.config.lesnet_api_key,
                sim.config.lesnet_id_key,
            ):
                self._json(401, {"error": "authentication failed"})
            else:
                self._json(200, {"balance": "25.00", "currency": "CAD"})
            return
        if path.startswith("/rest/"):
            self._vodia(method, path, query, body)
            return
        self._send(404, "not found", "text/plain")

    def _vodia_authorised(self) -> bool:
        sim = self.sim
        header = self.headers.get("Authorization") or ""
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return (user, password) == (sim.config.vodia_username, sim.config.vodia_password)
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "session":
                with sim._lock:
                    return value in sim._sessions
        return False

    def _vodia(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        sim = self.sim
        if path == "/rest/system/session" and method == "PUT":
            doc = json.loads(body or b"{}")
            digest = hashlib.md5(sim.config.vodia_password.encode(), usedforsecurity=False)
            expected = f"{sim.config.vodia_username} {digest.hexdigest()}"
            if doc.get("name") != "auth" or doc.get("value") != expected:
                self._json(401, "authentication failed")
                return
            session = uuid.uuid4().hex
            with sim._lock:
                sim._sessions.add(session)
            self._json(200, session)
            return
        if not self._vodia_authorised():
            self._send(401, "unauthorized", "text/plain")
            return
        parts = path.strip("/").split("/")
        if path == "/rest/system/domaininfo" and method == "GET":
            self._json(200, [{"name": t.domain} for t in sim.config.vodia])
            return
        if len(parts) == 4 and parts[:2] == ["rest", "domain"] and parts[3] == "cdrs":
            items = sim.vodia_cdrs(
                parts[2],
                query["start"],
                query["end"],
                int(query.get("page", 1)),
                int(query.get("size", 500)),
            )
            self._json(200, items)
            return
        if (
            len(parts) == 5
            and parts[:2] == ["rest", "domain"]
            and parts[3] == "edit_trunk"
            and method == "GET"
        ):
            # Vodia's documented read of one trunk's settings, `dis` among them
            # (https://api.vodia.com/trunks_api, "Info of a SINGLE trunk"); a few of
            # the documented keys, with the trunk's kept state.
            with sim._lock:
                kept = dict(sim.vodia_state.get(f"{parts[2]}/trunk/{parts[4]}", {}))
            self._json(200, {"dis": "false", "domain": "1", "failover": "never", **kept})
            return
        if (
            len(parts) == 5
            and parts[:2] == ["rest", "domain"]
            and parts[3] in ("edit_trunk", "user_settings")
            and method == "PUT"
        ):
            settings = json.loads(body or b"{}")
            kind = "trunk" if parts[3] == "edit_trunk" else "user"
            with sim._lock:
                sim.vodia_state.setdefault(f"{parts[2]}/{kind}/{parts[4]}", {}).update(settings)
            self._json(200, settings)
            return
        self._send(404, "not found", "text/plain")
