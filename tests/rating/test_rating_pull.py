"""Rating in pull-cdrs' single pass (PullRater) gives what `voipctl rate` gives afterwards."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select, update

# The simulator and its services, as pull-cdrs' own tests set them up.
from tests.pull.test_pull_cdrs import END, add_services, config_file, sim  # noqa: F401
from tests.support.rating_support import write
from voipctl.config import load_config
from voipctl.jobs.pull_cdrs import pull_cdrs
from voipctl.jobs.rate import rate_cdrs
from voipctl.rating.deck import import_deck_file
from voipctl.rating.pull import PullRater
from voipctl.rating.rater import RATING_COLUMNS
from voipctl.store.models import Cdr

# Every number of 8-15 digits has a rate; a 44 row is cheaper, a 1519 row cheaper still.
DECK = (
    "prefix,rate,increment,connect fee\n"
    + "".join(f"{d},0.02,60/6,0\n" for d in "0123456789")
    + "44,0.05,1/1,0.10\n1519,0.01,6/6,0\n"
)


def _ratings(store):
    with store.transaction() as session:
        columns = [getattr(Cdr, name) for name in RATING_COLUMNS]
        return {row[0]: tuple(row[1:]) for row in session.execute(select(Cdr.id, *columns))}


def test_one_pass_rating_equals_the_rate_job(store, sim, config_file, tmp_path):  # noqa: F811
    add_services(store, sim)
    import_deck_file(store, "Metered", write(tmp_path, "d.csv", DECK), effective_from=sim.start_at)
    config = load_config(str(config_file))
    hook = PullRater(store)
    try:
        report = pull_cdrs(store, config, until=END, before_insert=hook)
    finally:
        hook.close()
    assert report.exit_code == 0
    one_pass = _ratings(store)
    statuses = {rating[0] for rating in one_pass.values()}
    assert "rated" in statuses and len(one_pass) > 50, statuses
    # What the hook leaves (no_rate, invalid_number) is for the rate job.
    assert statuses <= {None, "rated", "unanswered", "internal", "excluded", "inbound_not_billed"}
    assert sum(r[11] or 0 for r in one_pass.values() if r[0] == "rated") > 0

    # The same calls rated again by `voipctl rate` from scratch.
    with store.transaction() as session:
        session.execute(update(Cdr).values(**dict.fromkeys(RATING_COLUMNS), rated_at=None))
    rate_cdrs(store)
    two_pass = _ratings(store)
    for cdr_id, rating in one_pass.items():
        if rating[0] is not None:
            assert two_pass[cdr_id] == rating, cdr_id
    assert all(isinstance(r[11], Decimal) for r in two_pass.values() if r[0] == "rated")
