"""One provider kit per server type: how the contract suite (tests/contract/) makes a
server's configuration, its services and records, and how it observes the levers.

Vodia, LES.NET and FusionPBX (export mode) are read from the provider simulator
(voipctl/sim/) on a real port; Asterisk from a Master.csv written as cdr_csv writes
it (tests/providers/asterisk/conftest.py). The command lever (LES.NET, Asterisk) runs a real
script that records its arguments. What a provider cannot do is said by its kit
(`cannot`), and the contract test that needs it is skipped with that reason.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.providers.asterisk.conftest import cdr_csv_line
from tests.pull.test_pull_cdrs import add_services
from tests.support.sim_env import start_sim
from voipctl.config import load_config
from voipctl.jobs.common import service_info
from voipctl.providers.base import ServiceInfo
from voipctl.providers.fields import parse_fields
from voipctl.providers.fusionpbx.adapter import FusionPBXAdapter
from voipctl.providers.lesnet.adapter import LesnetAdapter
from voipctl.providers.vodia.adapter import VodiaAdapter
from voipctl.sim import SimConfig
from voipctl.store.models import Client, Product, Service

END = datetime(2026, 11, 20, tzinfo=UTC)
SIM_NAMES = {"vodia": "sim_vodia", "lesnet": "sim_lesnet", "fusionpbx": "sim_fusion"}
# A lever script: appends its arguments as one JSON line to the file named first.
LEVER = """
import json, sys
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(sys.argv[2:]) + "\\n")
print("done " + " ".join(sys.argv[2:]))
"""


@dataclass
class Env:
    """A kit set up for one test: the configuration, the server's name, its services."""

    kind: str
    server: str
    config: Any
    service_ids: list[int]
    # service -> what the lever's far side shows of it: "suspended" or "active".
    observe: Any = None
    sim: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def info(self, store) -> ServiceInfo:
        with store.transaction() as session:
            return service_info(session.get(Service, self.service_ids[0]))


@dataclass(frozen=True)
class Kit:
    kind: str
    # what the provider cannot do -> why (the test needing it is skipped with this reason)
    cannot: dict[str, str]

    def skip_unless(self, ability: str) -> None:
        import pytest

        if ability in self.cannot:
            pytest.skip(f"{self.kind}: {self.cannot[ability]}")


KITS = {
    "fusionpbx": Kit("fusionpbx", {}),
    "vodia": Kit("vodia", {}),
    "lesnet": Kit(
        "lesnet", {"state": "LES.NET has no API to read a peer's state back (docs/providers.md)"}
    ),
    "asterisk": Kit(
        "asterisk",
        {
            "http": "Master.csv and the cdr table are read without HTTP",
            "state": "the command lever is the operator's own program; "
            "state() is unknown (docs/asterisk.md)",
            "credentials": "Master.csv is a file: no credentials to refuse",
        },
    ),
    # FreePBX's asteriskcdrdb.cdr table on a real MariaDB server
    # (tests/providers/asterisk/conftest.py).
    "asterisk-table": Kit(
        "asterisk-table",
        {
            "http": "the cdr table is read without HTTP",
            "state": "the command lever is the operator's own program; "
            "state() is unknown (docs/asterisk.md)",
        },
    ),
}


def _lever_script(tmp_path: Path) -> tuple[list[str], Path]:
    script = tmp_path / "lever.py"
    script.write_text(LEVER)
    return [sys.executable, str(script), str(tmp_path / "lever.log")], tmp_path / "lever.log"


def _lever_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def sim_env(kind: str, store, tmp_path: Path, monkeypatch):
    """A generator: the simulator started, the kind's services added; stopped after."""
    for cls in (VodiaAdapter, LesnetAdapter, FusionPBXAdapter):
        monkeypatch.setattr(cls, "backoff_s", 0.0)
    sims = start_sim(monkeypatch, SimConfig(seed=11, days=3, calls_per_day=30, end=END))
    sim = next(sims)
    try:
        snippet = sim.config_snippet()
        command, log = _lever_script(tmp_path)
        if kind == "lesnet":
            snippet = snippet.replace(
                'suspend = "manual"',
                'suspend = "command"\n'
                f"suspend_command = {json.dumps([*command, 'off', '{peer}', '{did}'])}\n"
                f"unsuspend_command = {json.dumps([*command, 'on', '{peer}', '{service_id}'])}",
            )
        path = tmp_path / "voipctl.toml"
        path.write_text(snippet, encoding="utf-8")
        server = SIM_NAMES[kind]
        ids = add_services(store, sim, servers=(server,))[server]
        env = Env(kind, server, load_config(str(path)), ids, sim=sim)
        env.extra["log"] = log
        if kind == "vodia":

            def observe(info: ServiceInfo) -> str:
                with sim._lock:
                    kept = sim.vodia_state.get(f"{info.tenant}/trunk/{info.trunk_id}", {})
                return "suspended" if kept.get("dis") == "true" else "active"

        else:

            def observe(info: ServiceInfo) -> str:
                calls = _lever_log(log)
                return "suspended" if calls and calls[-1][0] == "off" else "active"

        env.observe = observe
        yield env
    finally:
        next(sims, None)


def asterisk_line(start: str, seconds: int, dst: str) -> str:
    """An outbound call of extension 101 (accountcode acme) through trunk voipms,
    answered 3 s after its start (cdr_csv's 16 columns without cdr.conf flags).

    # source: asterisk/asterisk cdr/cdr_csv.c, build_csv_record() (via
    # tests/providers/asterisk/conftest.py cdr_csv_line)
    """
    answer = start[:-2] + f"{int(start[-2:]) + 3:02d}"
    return cdr_csv_line(
        ["acme", "101", dst, "from-internal", '"Alice" <101>', "PJSIP/101-00000001",
         "PJSIP/voipms-00000002", "Dial", f"PJSIP/{dst}@voipms,300", start, answer, start,
         seconds + 3, seconds, "ANSWERED", "DOCUMENTATION"]
    )  # fmt: skip


ASTERISK_CALLS = [
    ("2026-11-18 09:15:02", 60, "15195550199"),
    ("2026-11-19 10:00:00", 125, "12045550113"),
    ("2026-11-19 23:59:00", 30, "12045550114"),
]


TABLE_COLUMNS = (
    "calldate, clid, src, dst, dcontext, channel, dstchannel, lastapp, lastdata, "
    "duration, billsec, disposition, amaflags, accountcode, uniqueid, did, linkedid, sequence"
)
TABLE_PASSWORD = "cdr-pw-never-shown"


def freepbx_table(mariadb, monkeypatch, request) -> str:
    """ASTERISK_CALLS in a new FreePBX cdr table (tests/fixtures/asterisk/freepbx_cdr.sql,
    whose source it cites), read by a user of its own with a password; the source text."""
    import uuid

    from tests.providers.asterisk.conftest import FIXTURES

    name = f"asteriskcdrdb_{uuid.uuid4().hex[:8]}"
    user = f"cdr_{uuid.uuid4().hex[:8]}"
    admin = mariadb.connect()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{TABLE_PASSWORD}'")
        cur.execute(f"GRANT SELECT ON {name}.* TO '{user}'@'localhost'")
    conn = mariadb.connect(name)
    rows = []
    for n, (start, seconds, dst) in enumerate(ASTERISK_CALLS, start=1):
        unique = f"179518{n:04d}.{n}"
        rows.append(
            (start, '"Alice" <101>', "101", dst, "from-internal", "PJSIP/101-00000001",
             "PJSIP/voipms-00000002", "Dial", "x", seconds + 3, seconds, "ANSWERED", 3,
             "acme", unique, "", unique, n)
        )  # fmt: skip
    with conn.cursor() as cur:
        cur.execute((FIXTURES / "freepbx_cdr.sql").read_text())
        cur.executemany(
            f"INSERT INTO cdr ({TABLE_COLUMNS}) VALUES ({', '.join(['%s'] * 18)})", rows
        )
    conn.close()

    def drop():
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {name}")
            cur.execute(f"DROP USER '{user}'@'localhost'")
        admin.close()

    request.addfinalizer(drop)
    monkeypatch.setenv(
        "PBX1_CDR_DB_URL",
        f"mysql://{user}:{TABLE_PASSWORD}@localhost/{name}?unix_socket={mariadb.socket}",
    )
    return 'source = "table"\ndb_url_env = "PBX1_CDR_DB_URL"\ndialect = "mysql"\n'


def asterisk_env(store, tmp_path: Path, source: str | None = None):
    """Master.csv (or, given `source`, the configuration of another source) and one
    service of accountcode acme, DID 15195550100."""
    master = tmp_path / "cdr-csv" / "Master.csv"
    master.parent.mkdir()
    master.write_text("".join(asterisk_line(*call) for call in ASTERISK_CALLS))
    command, log = _lever_script(tmp_path)
    path = tmp_path / "voipctl.toml"
    source = source or f'source = "csv"\npath = "{master}"\n'
    path.write_text(
        '[servers.pbx1]\ntype = "asterisk"\ntimezone = "America/Toronto"\n'
        'trunk_prefixes = ["PJSIP/voipms-"]\nsuspend = "command"\n'
        + source
        + f"suspend_command = {json.dumps([*command, 'off', '{accountcode}', '{did}'])}\n"
        f"unsuspend_command = {json.dumps([*command, 'on', '{accountcode}', '{service_id}'])}\n",
        encoding="utf-8",
    )
    created = datetime(2026, 11, 1, tzinfo=UTC)
    with store.transaction() as session:
        product = Product(name="Metered", created_at=created)
        session.add(product)
        session.add(
            Client(id=42, first_name="Ann", last_name="Lee", email="ann@example.com",
                   currency="CAD", created_at=created, updated_at=created)
        )  # fmt: skip
        session.flush()
        service = Service(
            client_id=42,
            product_id=product.id,
            server="pbx1",
            server_type="asterisk",
            domain_field="acme | 15195550100",
            billed_field="",
            created_at=created,
            **parse_fields("asterisk", "acme | 15195550100", ""),
        )
        session.add(service)
        session.flush()
        ids = [service.id]
    env = Env("asterisk", "pbx1", load_config(str(path)), ids)
    env.extra["secrets"] = (TABLE_PASSWORD,)
    env.extra["log"] = log
    env.extra["master"] = master

    def observe(info: ServiceInfo) -> str:
        calls = _lever_log(log)
        return "suspended" if calls and calls[-1][0] == "off" else "active"

    env.observe = observe
    return env


@dataclass
class LeverEnv:
    """A server whose lever is pulled for real: the adapter, one service, and how the
    lever's far side shows that service ("suspended" or "active")."""

    adapter: Any
    info: ServiceInfo
    observe: Any
    secrets: tuple[str, ...] = ()
    # A command lever's record of its runs (argv after the script), else None.
    log: Path | None = None

    def runs(self) -> list[list[str]]:
        return _lever_log(self.log) if self.log else []


def fusion_lever_env(request, monkeypatch):
    """FusionPBX in db mode on its fake database (a real PostgreSQL) and a fake event
    socket on a real port (tests/fakes/fusionpbx_db.py, tests/fakes/esl_server.py,
    whose sources they cite): the gateway lever."""
    from tests.fakes.esl_server import FakeEslServer
    from tests.support.fusionpbx_env import TENANT, db_mode_config, service
    from voipctl.providers import adapter_for

    db = request.getfixturevalue("fusion_db")
    db.add_domain(TENANT)
    db.add_extension(TENANT, "2112")
    gateway = db.add_gateway(TENANT, "mcon-trunk")
    with FakeEslServer(sofia=db.sofia()) as esl:
        config = db_mode_config(monkeypatch, db.url, esl_port=esl.port, timeout_s=2)
        info = service(gateway_uuid=gateway)

        def observe(_info: ServiceInfo) -> str:
            return "active" if db.gateway_enabled(gateway) in (True, "true") else "suspended"

        # The database URL's password, were there one, and the event socket's.
        yield LeverEnv(adapter_for("fusion1", config), info, observe, ("ClueCon",))


def expected_calls(env: Env, store) -> int:
    """How many calls of the kit's services the first pull must store (more than none)."""
    from tests.pull.test_pull_cdrs import expected_fusion, expected_vodia, lesnet_rows

    if env.kind.startswith("asterisk"):
        return len(ASTERISK_CALLS)
    if env.kind == "vodia":
        return expected_vodia(env.sim)
    if env.kind == "fusionpbx":
        return expected_fusion(env.sim)
    return lesnet_rows(env.sim, 3)


def stored(store, server: str) -> int:
    from sqlalchemy import func

    from voipctl.store.models import Cdr

    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(Cdr).where(Cdr.server == server))
