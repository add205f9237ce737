"""The billing jobs decide the same with either backend: same alerts, same suspensions.

One table of clients is played twice, once with credit and invoices in voipctl's
ledger and once with them in (the fake) WHMCS; `voipctl low-balance` and
`voipctl autosuspend` run for real, suspending through the provider simulator's
Vodia trunks. The emails sent (by SMTP capture, or WHMCS SendEmail) and the
services suspended must be the same, and so must what happens after a top-up.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.fakes.whmcs_env import FIELDS
from tests.support.billing_data import add_client, add_invoice, add_product, add_service, topup
from tests.support.sim_env import start_sim
from voipctl.sim import SimConfig
from voipctl.sim.server import VodiaTenant
from voipctl.store.models import OutboxEmail, Service

# client: (credit, owing, low balance threshold)
CLIENTS = {
    1: ("10.00", None, "5.00"),  # fine
    2: ("3.00", None, "5.00"),  # low balance alert, stays active
    3: ("0.00", None, "5.00"),  # alert, suspended at zero, zero balance email
    4: ("20.00", "25.00", None),  # owing more than credit: suspended, zero balance email
}
EXPECTED_EMAILS = [
    ("low_balance_alert", 2),
    ("low_balance_alert", 3),
    ("voip_zero_balance", 3),
    ("voip_zero_balance", 4),
]
EXPECTED_SUSPENDED = {1: False, 2: False, 3: True, 4: True}
MESSAGE_NAMES = {"Low Balance Alert": "low_balance_alert", "VoIP Zero Balance": "voip_zero_balance"}


@pytest.fixture
def sim(monkeypatch):
    tenants = tuple(
        VodiaTenant(
            domain=f"c{cid}.sim.example", dids=(f"51955501{cid:02d}",), trunk_id=str(100 + cid)
        )
        for cid in CLIENTS
    )
    yield from start_sim(monkeypatch, SimConfig(seed=3, days=1, calls_per_day=1, vodia=tenants))


class World:
    """Credit and invoices where the backend keeps them; the jobs; what came out."""

    def __init__(self, backend, store, cli, tmp_path, sim, whmcs):
        self.backend, self.store, self.cli, self.sim, self.whmcs = (
            backend,
            store,
            cli,
            sim,
            whmcs,
        )
        self.config = tmp_path / "voipctl.toml"
        whmcs_section = ""
        if backend == "whmcs":
            whmcs_section = f"""
[whmcs]
url = "{whmcs.url}"
identifier_env = "WHMCS_TEST_IDENTIFIER"
secret_env = "WHMCS_TEST_SECRET"
timeout_s = 5
{FIELDS}
"""
        self.config.write_text(
            f"""
[billing]
backend = "{backend}"
[email]
capture_dir = "{tmp_path / "mail"}"
{whmcs_section}
{sim.config_snippet()}
"""
        )

    def setup(self) -> None:
        with self.store.transaction() as s:
            product = add_product(s)
            for cid, (credit, owing, threshold) in CLIENTS.items():
                add_client(s, cid, low_balance_threshold=Decimal(threshold) if threshold else None)
                add_service(
                    s,
                    cid,
                    product.id,
                    server="sim_vodia",
                    domain_field=f"c{cid}.sim.example | 51955501{cid:02d}",
                    tenant=f"c{cid}.sim.example",
                    trunk_id=str(100 + cid),
                )
                if self.backend == "local":
                    if Decimal(credit):
                        topup(s, cid, credit, f"topup-{cid}")
                    if owing:
                        add_invoice(s, cid, owing, f"INV-{cid}")
                else:
                    self.whmcs.add_client(cid, credit=credit)
                    if owing:
                        self.whmcs.add_invoice(cid, owing, date.today().isoformat())

    def top_up(self, cid: int, amount: str) -> None:
        if self.backend == "local":
            with self.store.transaction() as s:
                topup(s, cid, amount, f"topup-{cid}-again")
        else:
            self.whmcs.clients[cid].credit += Decimal(amount)

    def run(self, *job: str) -> None:
        r = self.cli(*job, config=self.config)
        assert r.exit_code == 0, r.output

    def emails(self) -> list[tuple[str, int]]:
        if self.backend == "whmcs":
            return sorted((MESSAGE_NAMES[e["messagename"]], e["id"]) for e in self.whmcs.emails)
        with self.store.transaction() as s:
            rows = s.execute(
                select(OutboxEmail.template, OutboxEmail.client_id).where(
                    OutboxEmail.sent_at.is_not(None)
                )
            )
            return sorted((t, c) for t, c in rows)

    def suspended(self) -> dict[int, bool]:
        with self.store.transaction() as s:
            db = {sv.client_id: sv.suspended for sv in s.scalars(select(Service))}
        trunks = {
            cid: self.sim.vodia_state.get(f"c{cid}.sim.example/trunk/{100 + cid}", {})
            for cid in CLIENTS
        }
        for cid, settings in trunks.items():
            if settings:  # the provider was asked: it must agree with the database
                assert (settings.get("dis") in (True, "true")) == db[cid], settings
        return db


@pytest.fixture(params=["local", "whmcs"])
def world(request, store, cli, tmp_path, sim, whmcs):
    w = World(request.param, store, cli, tmp_path, sim, whmcs)
    w.setup()
    return w


def test_same_alerts_and_suspensions_with_either_backend(world):
    world.run("low-balance")
    world.run("autosuspend")
    assert world.emails() == EXPECTED_EMAILS
    assert world.suspended() == EXPECTED_SUSPENDED
    # Runs again: latched alerts, one zero balance email per suspension, nothing new.
    world.run("low-balance")
    world.run("autosuspend")
    assert world.emails() == EXPECTED_EMAILS
    # A top-up restores client 3 and re-arms its alert.
    world.top_up(3, "10.00")
    world.run("autosuspend")
    world.run("low-balance")
    assert world.suspended() == {**EXPECTED_SUSPENDED, 3: False}
    assert world.emails() == EXPECTED_EMAILS
    if world.backend == "whmcs":
        # The state went to the "VoIP Suspended" field and came back with the top-up.
        assert world.whmcs.custom(3, "VoIP Suspended") == "none"
        assert world.whmcs.custom(4, "VoIP Suspended") == "yes"
        updates = [p["clientid"] for a, p in world.whmcs.requests if a == "UpdateClient"]
        assert sorted(updates) == ["3", "3", "4"]


def test_a_partly_paid_whmcs_invoice_does_not_suspend_early(store, cli, tmp_path, sim, whmcs):
    # Client 4 has 20.00 of credit and a 25.00 invoice; 10.00 of it paid leaves 15.00 to pay,
    # below the credit: the client stays active (GetInvoices alone would show 25.00).
    world = World("whmcs", store, cli, tmp_path, sim, whmcs)
    world.setup()
    (invoice,) = [i for i in whmcs.invoices.values() if i.userid == 4]
    whmcs.pay(invoice.id, "10.00")
    r = cli("balance", "4", "--format", "json", config=world.config)
    assert r.exit_code == 0, r.output
    assert '"owing": "15.00"' in r.output
    world.run("autosuspend")
    assert world.suspended() == {**EXPECTED_SUSPENDED, 4: False}
    # The remaining 15.00 unpaid and the credit gone to 10.00: owing > credit, suspended.
    whmcs.clients[4].credit = Decimal("10.00")
    world.run("autosuspend")
    assert world.suspended() == EXPECTED_SUSPENDED
