"""autobill: rated, unbilled calls of metered services become charges, exactly once."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tests.support.billing_data import add_calls, add_client, add_product, add_service, random_costs
from tests.support.invariants import check_invariants
from voipctl.billing import ledger
from voipctl.jobs import autobill
from voipctl.store.locks import job_lock
from voipctl.store.models import Cdr, JobRun, LedgerEntry


def _setup(store, rng, *, clients=(42, 43), calls=30):
    costs = {}
    with store.transaction() as s:
        metered = add_product(s, "Metered")
        flat = add_product(s, "Flat", metered=False)
        services = {}
        for cid in clients:
            add_client(s, cid)
            services[cid] = add_service(s, cid, metered.id)
        flat_service = add_service(s, clients[0], flat.id, server="vodia2")
    for cid, service in services.items():
        costs[cid] = random_costs(rng, calls)
        add_calls(store, service, costs[cid])
    add_calls(store, flat_service, [Decimal("1.00")] * 3, prefix="flat")
    return services, costs, flat_service


def _charges(store):
    with store.transaction() as s:
        return s.execute(
            select(LedgerEntry.client_id, LedgerEntry.amount, LedgerEntry.cdr_count).where(
                LedgerEntry.kind == "charge"
            )
        ).all()


def test_one_charge_per_service_equal_to_the_costs_to_the_last_digit(store, cli):
    rng = random.Random(1)
    services, costs, flat = _setup(store, rng)
    # Calls that are not rated, and an unmetered product's calls, are not billed.
    add_calls(store, services[42], [Decimal(0)] * 2, status="no_rate", prefix="norate")

    r = cli("autobill", "-v")
    assert r.exit_code == 0, r.output
    assert "autobill: 2 charges, 60 calls" in r.stdout

    charges = {cid: (amount, n) for cid, amount, n in _charges(store)}
    for cid in (42, 43):
        assert charges[cid] == (-sum(costs[cid]), 30)
    with store.transaction() as s:
        assert ledger.balance(s, 42) == -sum(costs[42])
        assert ledger.unbilled_cost(s, 42) == Decimal("3.00")  # the unmetered service's calls
        unbilled = s.scalar(
            select(func.count()).where(Cdr.billed_entry_id.is_(None), Cdr.service_id == flat.id)
        )
        assert unbilled == 3
    check_invariants(store)


def test_second_run_bills_nothing_and_new_calls_get_a_new_charge(store, cli):
    rng = random.Random(2)
    services, costs, _ = _setup(store, rng, clients=(42,))
    assert cli("autobill").exit_code == 0
    before = _charges(store)
    r = cli("autobill", "-v")
    assert r.exit_code == 0
    assert "0 charges, 0 calls, 0.00 total" in r.stdout
    assert _charges(store) == before

    more = random_costs(rng, 5)
    add_calls(store, services[42], more, prefix="later")
    assert cli("autobill").exit_code == 0
    amounts = sorted(amount for _, amount, _ in _charges(store))
    assert sorted([-sum(costs[42]), -sum(more)]) == amounts
    check_invariants(store)


def test_reference_is_made_from_the_calls_so_a_replay_finds_the_same_one(store):
    rng = random.Random(3)
    services, _, _ = _setup(store, rng, clients=(42,))
    planned = autobill.plan_service(store, services[42].id, 42)
    billed = autobill.bill_service(store, autobill_backend(), services[42].id, 42)
    assert [c.reference for c in planned] == [c.reference for c in billed]
    with store.transaction() as s:
        refs = list(s.scalars(select(LedgerEntry.reference)))
    assert refs == [planned[0].reference]
    assert refs[0].startswith(f"autobill:s{services[42].id}:")


def autobill_backend():
    from voipctl.billing.backend import LocalBackend

    return LocalBackend()


def test_dry_run_prints_the_charges_and_writes_nothing(store, cli):
    rng = random.Random(4)
    _, costs, _ = _setup(store, rng)
    r = cli("autobill", "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"would charge client 42 service 1: {sum(costs[42])} for 30 calls" in r.stdout
    assert "autobill (dry run): 2 charges, 60 calls" in r.stdout
    assert _charges(store) == []
    with store.transaction() as s:
        assert s.scalar(select(func.count()).where(Cdr.billed_entry_id.is_not(None))) == 0
        assert s.scalar(select(func.count()).select_from(JobRun)) == 0


def test_client_option_bills_only_that_client(store, cli):
    rng = random.Random(5)
    _, costs, _ = _setup(store, rng)
    assert cli("autobill", "--client", "43").exit_code == 0
    assert [(cid, amount) for cid, amount, _ in _charges(store)] == [(43, -sum(costs[43]))]


def test_more_calls_than_a_chunk_become_several_charges(store, cli, monkeypatch):
    monkeypatch.setattr(autobill, "CHUNK", 7)
    rng = random.Random(6)
    _, costs, _ = _setup(store, rng, clients=(42,), calls=30)
    assert cli("autobill").exit_code == 0
    charges = _charges(store)
    assert [n for _, _, n in charges] == [7, 7, 7, 7, 2]
    assert sum(amount for _, amount, _ in charges) == -sum(costs[42])
    check_invariants(store)


def test_a_run_holding_the_lock_makes_the_second_exit_75_at_once(store, cli):
    rng = random.Random(7)
    _setup(store, rng, clients=(42,))
    with job_lock(store, "autobill"):
        r = cli("autobill")
    assert r.exit_code == 75
    assert r.stderr.count("\n") == 1 and "another run holds the" in r.stderr
    assert _charges(store) == []


@pytest.mark.parametrize(
    ("chunk", "batch", "charges"),
    [
        (1000, 70, 8),  # one charge per service, two services per transaction
        (12, 2000, None),  # a backlog: windows of 12 consecutive calls across services
    ],
)
def test_many_services_with_interleaved_calls_are_billed_once(
    store, cli, monkeypatch, chunk, batch, charges
):
    # Calls of eight services take turns by id, as the calls of one pull do.
    monkeypatch.setattr(autobill, "CHUNK", chunk)
    monkeypatch.setattr(autobill, "BATCH", batch)
    rng = random.Random(8)
    clients = range(50, 58)
    services, costs, _ = _setup(store, rng, clients=clients, calls=0)
    for round_ in range(6):
        for cid in clients:
            more = random_costs(rng, 5)
            costs[cid] += more
            add_calls(store, services[cid], more, prefix=f"r{round_}")
    add_calls(store, services[50], [Decimal(0)] * 3, status="no_rate", prefix="norate")

    planned = autobill.plan(store)
    r = cli("autobill", "-v")
    assert r.exit_code == 0, r.output
    assert f"autobill: {len(planned)} charges, 240 calls" in r.stdout
    with store.transaction() as s:
        refs = list(s.scalars(select(LedgerEntry.reference).order_by(LedgerEntry.id)))
        for cid in clients:
            assert ledger.balance(s, cid) == -sum(costs[cid])
            # The unmetered service's calls (of the first client) stay unbilled.
            assert ledger.unbilled_cost(s, cid) == (Decimal("3.00") if cid == 50 else 0)
        per_charge = s.execute(
            select(Cdr.billed_entry_id, func.count(), func.sum(Cdr.cost))
            .where(Cdr.billed_entry_id.is_not(None))
            .group_by(Cdr.billed_entry_id)
        ).all()
        entries = {e.id: e for e in s.scalars(select(LedgerEntry))}
    assert refs == [c.reference for c in planned]
    if charges is not None:
        assert [c.cdr_count for c in planned] == [30] * charges
    else:
        # Each window's calls are those of 12 consecutive ids, split between services.
        assert len(planned) > 20 and max(c.cdr_count for c in planned) <= 12
    assert len(per_charge) == len(entries) == len(planned)
    for entry_id, count, cost in per_charge:
        assert (entries[entry_id].cdr_count, entries[entry_id].amount) == (count, -cost)
    r = cli("autobill", "-v")
    assert "0 charges, 0 calls" in r.stdout
    assert len(_charges(store)) == len(planned)
    check_invariants(store)


def test_a_failing_charge_leaves_its_service_for_the_next_run_and_bills_the_others(store, cli):
    rng = random.Random(9)
    services, costs, _ = _setup(store, rng, clients=(42, 43))
    # A ledger row already holding the reference 43's charge will get, with another
    # amount: the ledger refuses it, and only that service is left unbilled.
    ref = autobill.plan_service(store, services[43].id, 43)[0].reference
    with store.transaction() as s:
        ledger.post(s, client_id=43, kind="adjustment", amount=Decimal(1), reference=ref)
    r = cli("autobill")
    assert r.exit_code == 1
    assert f"service {services[43].id} of client 43" in r.stderr
    with store.transaction() as s:
        assert ledger.balance(s, 42) == -sum(costs[42])
        assert ledger.unbilled_cost(s, 42) == Decimal("3.00")  # the unmetered calls
        assert ledger.unbilled_cost(s, 43) == sum(costs[43])
