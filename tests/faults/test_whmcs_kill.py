"""autobill in WHMCS `credit` mode killed with SIGKILL at random instants.

Each run is the installed `voipctl autobill` in a process of its own, posting to
the fake WHMCS (which takes its time over AddCredit, so kills land while
postings are open). After the final run, for every client the AddCredit
removals in WHMCS's credit log add up to the client's rated usage rounded to
the cent, no reference was ever posted twice, and no intent is left open.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import func, select

from tests.fakes.whmcs_env import write_config
from tests.support.autobill_runs import run_autobill_to_end, start_autobill
from tests.support.billing_data import add_calls, add_client, add_product, add_service, random_costs
from tests.support.invariants import check_invariants
from voipctl.store.models import Cdr, ExternalPosting

CLIENTS = 4


def _open_intents(store) -> int:
    with store.transaction() as s:
        return s.scalar(select(func.count()).where(ExternalPosting.state == "intent")) or 0


def _kill_loop(store, db_url, tmp_path, whmcs, kills: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    config = write_config(tmp_path / "voipctl.toml", whmcs)
    whmcs.delay_s["AddCredit"] = 0.2
    with store.transaction() as s:
        product = add_product(s)
        services = []
        for cid in range(1, CLIENTS + 1):
            add_client(s, cid)
            whmcs.add_client(cid, credit="100000.00")
            services.append(add_service(s, cid, product.id))
    mid_posting = attempts = 0
    while attempts < kills or (mid_posting == 0 and attempts < 3 * kills):
        attempts += 1
        for service in services:
            add_calls(store, service, random_costs(rng, 7), prefix=f"k{attempts}")
        proc = start_autobill(db_url, config.parent, config=config)
        time.sleep(rng.uniform(1.0, 3.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_invariants(store)  # the local ledger's guarantees hold after every kill
        if _open_intents(store):
            mid_posting += 1
    final = run_autobill_to_end(db_url, config.parent, config=config)
    assert final.returncode == 0, final.stderr
    assert _open_intents(store) == 0

    with store.transaction() as s:
        usage = dict(
            s.execute(select(Cdr.client_id, func.sum(Cdr.cost)).group_by(Cdr.client_id)).all()
        )
    for cid in range(1, CLIENTS + 1):
        removed = -sum((e.amount for e in whmcs.removals(cid)), Decimal(0))
        assert removed == Decimal(usage[cid]).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    descriptions = Counter(e.description for e in whmcs.credit_log)
    assert all(n == 1 for n in descriptions.values()), descriptions.most_common(3)
    assert mid_posting >= 1, "no kill landed while a posting was open"
    return {"kills": attempts, "mid_posting": mid_posting, "postings": len(whmcs.credit_log)}


def test_killed_at_random_instants_posts_usage_to_whmcs_exactly_once(
    store, db_url, tmp_path, whmcs
):
    counts = _kill_loop(store, db_url, tmp_path, whmcs, kills=4, seed=7)
    print(f"whmcs autobill kill -9: {counts}")


@pytest.mark.slow
def test_killed_many_times(store, db_url, tmp_path, whmcs):
    counts = _kill_loop(store, db_url, tmp_path, whmcs, kills=30, seed=8)
    print(f"whmcs autobill kill -9 (slow): {counts}")
