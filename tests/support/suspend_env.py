"""Real parts for the suspension tests: the Vodia REST simulator on a real port, the
FusionPBX tables in a real PostgreSQL with a fake FreeSWITCH event socket, a
LES.NET server with its `manual` lever, and an SMTP server (aiosmtpd).

    env = SuspendEnv(tmp_path, store, sim=sim, sink=sink, fusion=fusion_db, esl=esl_server)
    service = env.vodia_service(42)
    cli("autosuspend", config=env.config)
    env.vodia_puts()   -> [("/rest/domain/rucken.sim.example/edit_trunk/106", {"dis": "true"})]
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from tests.fakes.esl_memcache import MemcacheFake
from tests.fakes.esl_server import FakeEslServer
from tests.fakes.fusionpbx_db import FusionDb
from tests.support.billing_data import add_client, add_invoice, add_product, add_service, topup
from tests.support.smtp_sink import SmtpSink
from voipctl.providers.fusionpbx.adapter import FusionPBXAdapter
from voipctl.providers.vodia.adapter import VodiaAdapter
from voipctl.sim.server import Simulator
from voipctl.store.models import Client, Service, SuspensionEvent

VODIA_TENANT = "rucken.sim.example"
VODIA_TRUNK = "106"
FUSION_TENANT = "mcon.example.net"


class SuspendEnv:
    """One configuration naming every server the test started."""

    def __init__(
        self,
        tmp_path: Path,
        store,
        monkeypatch,
        *,
        sim: Simulator,
        sink: SmtpSink,
        fusion: FusionDb | None = None,
        esl: FakeEslServer | None = None,
    ):
        self.store = store
        self.sim = sim
        self.sink = sink
        self.fusion = fusion
        self.esl = esl
        # Failures must show at once, not after backoff (the retry rules are the adapters' tests).
        monkeypatch.setattr(VodiaAdapter, "backoff_s", 0.0)
        monkeypatch.setattr(FusionPBXAdapter, "backoff_s", 0.0)
        monkeypatch.setenv("SIM_VODIA_PASSWORD", sim.config.vodia_password)
        text = (
            "[email]\n"
            'from = "billing@example.net"\n'
            f'smtp_host = "{sink.host}"\nsmtp_port = {sink.port}\ntimeout_s = 5\n'
            'operator = "noc@example.net"\n\n'
            "[servers.vodia1]\n"
            'type = "vodia"\n'
            f'url = "{sim.base_url}"\n'
            'auth = "basic"\nusername = "admin"\npassword_env = "SIM_VODIA_PASSWORD"\n'
            'suspend = "trunk"\nretries = 0\ntimeout_s = 5\n\n'
            "[servers.lesnet]\n"
            'type = "lesnet"\nsuspend = "manual"\n'
        )
        if fusion is not None and esl is not None:
            # FreeSWITCH runs the enabled gateways; a rescan reads the database.
            esl.sofia = fusion.sofia()
            # A FusionPBX install always has v_default_settings; memcache is the cache
            # method a clustered install uses (file cache needs a shared cache_dir).
            fusion.add_default_settings(method="memcache")
            self.cache = MemcacheFake({}, hostname="pbx01")
            esl.replies.update(self.cache.replies(["pbx01:configuration:sofia.conf"]))
            monkeypatch.setenv("FUSION1_DB_URL", fusion.url)
            monkeypatch.setenv("FUSION1_ESL_PASSWORD", esl.password)
            text += (
                "\n[servers.fusion1]\n"
                'type = "fusionpbx"\nmode = "db"\ndb_url_env = "FUSION1_DB_URL"\n'
                f'esl_host = "{esl.host}"\nesl_port = {esl.port}\n'
                'esl_password_env = "FUSION1_ESL_PASSWORD"\nsuspend = "gateway"\n'
                "retries = 0\ntimeout_s = 5\n"
            )
        self.config = tmp_path / "voipctl.toml"
        self.config.write_text(text)
        with store.transaction() as s:
            self.product_id = add_product(s).id

    # -- data ---------------------------------------------------------------------

    def client(self, client_id: int, *, credit: str = "0", owing: str = "0", **fields) -> None:
        with self.store.transaction() as s:
            add_client(s, client_id, **fields)
            if Decimal(credit):
                topup(s, client_id, credit, f"topup-{client_id}-initial")
            if Decimal(owing):
                add_invoice(s, client_id, owing, f"INV-{client_id}")

    def set_client(self, client_id: int, **fields) -> None:
        with self.store.transaction() as s:
            client = s.get(Client, client_id)
            for key, value in fields.items():
                setattr(client, key, value)

    def vodia_service(self, client_id: int) -> int:
        with self.store.transaction() as s:
            return add_service(
                s,
                client_id,
                self.product_id,
                server="vodia1",
                server_type="vodia",
                domain_field=f"{VODIA_TENANT} | 5484815577",
                tenant=VODIA_TENANT,
                trunk_id=VODIA_TRUNK,
            ).id

    def fusion_service(self, client_id: int) -> tuple[int, str]:
        assert self.fusion is not None
        gateway = self.fusion.add_gateway(FUSION_TENANT, f"client{client_id}")
        with self.store.transaction() as s:
            service = add_service(
                s,
                client_id,
                self.product_id,
                server="fusion1",
                server_type="fusionpbx",
                domain_field=f"{FUSION_TENANT} | 5192229000",
                tenant=FUSION_TENANT,
                gateway_uuid=gateway,
            )
            service_id = service.id
        assert self.esl is not None
        self.esl.sofia.running[gateway] = "external"
        return service_id, gateway

    def disable_gateway(self, gateway: str) -> None:
        """The gateway as a suspend left it: row disabled, FreeSWITCH not running it."""
        assert self.fusion is not None and self.esl is not None
        self.fusion.execute(
            "UPDATE v_gateways SET enabled = false WHERE gateway_uuid = CAST(:u AS uuid)",
            u=gateway,
        )
        self.esl.sofia.running.pop(gateway, None)

    def enable_gateway_by_hand(self, gateway: str) -> None:
        """What FusionPBX's gateway page does on Enabled = true: the row, then a start."""
        assert self.fusion is not None and self.esl is not None
        self.fusion.execute(
            "UPDATE v_gateways SET enabled = true WHERE gateway_uuid = CAST(:u AS uuid)",
            u=gateway,
        )
        self.esl.sofia.running[gateway] = "external"

    def lever_commands(self) -> list[str]:
        """The ESL commands that act on gateways (read-backs and cache clearing left out)."""
        assert self.esl is not None
        return [
            c
            for c in self.esl.api_commands
            if not c.startswith(("api sofia status ", "api hostname", "api memcache "))
        ]

    def lesnet_service(self, client_id: int) -> int:
        with self.store.transaction() as s:
            return add_service(
                s,
                client_id,
                self.product_id,
                server="lesnet",
                server_type="lesnet",
                domain_field="D4E3CD2BFC791 | 12046664021",
                peer_id="D4E3CD2BFC791",
                dids=["12046664021"],
                extensions=["12046664021"],
            ).id

    def mark_suspended(self, service_id: int, by: str) -> None:
        """A service suspended earlier (with the provider-confirmed audit row it would have)."""
        now = datetime.now(UTC)
        with self.store.transaction() as s:
            service = s.get(Service, service_id)
            service.suspended = True
            service.suspended_by = by
            service.suspend_reason = "earlier"
            service.suspended_at = now
            s.add(
                SuspensionEvent(
                    service_id=service_id,
                    client_id=service.client_id,
                    action="suspend",
                    actor=by,
                    reason="earlier",
                    ok=True,
                    provider_response="ok",
                    created_at=now,
                )
            )

    # -- what happened ------------------------------------------------------------

    def vodia_puts(self) -> list[str]:
        return [path for method, path in self.sim.requests if method == "PUT"]

    def trunk_state(self) -> dict[str, str]:
        return self.sim.vodia_state.get(f"{VODIA_TENANT}/trunk/{VODIA_TRUNK}", {})

    def service(self, service_id: int) -> Service:
        with self.store.transaction() as s:
            return s.get(Service, service_id)

    def events(self, service_id: int | None = None) -> list[tuple]:
        with self.store.transaction() as s:
            query = select(
                SuspensionEvent.service_id,
                SuspensionEvent.action,
                SuspensionEvent.actor,
                SuspensionEvent.ok,
            ).order_by(SuspensionEvent.id)
            if service_id is not None:
                query = query.where(SuspensionEvent.service_id == service_id)
            return [tuple(row) for row in s.execute(query)]

    def subjects(self) -> list[tuple[str, str]]:
        return [(m["To"], m["Subject"]) for m in self.sink.messages]


TRUNK_PATH = f"/rest/domain/{VODIA_TENANT}/edit_trunk/{VODIA_TRUNK}"
