"""PostgreSQL: a pull COPYs its new rows straight into cdrs, the unique key as the guard.

The ids of a chunk already stored (the overlap window brings them back on every
run) are left out before the COPY; a COPY that still meets the unique key (a
writer outside the server's lock, as a host running an older voipctl during an
upgrade would be) is rolled back to its savepoint and the chunk is stored by
INSERT ... ON CONFLICT DO NOTHING instead.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from tests.conftest import BACKEND
from tests.pull.conftest import SINCE, master_line
from voipctl.jobs import pull_cdrs
from voipctl.store.models import Cdr, PullWatermark

pytestmark = pytest.mark.skipif(BACKEND != "postgresql", reason="the COPY path is PostgreSQL's")


@pytest.fixture
def copies(monkeypatch):
    """The COPY statements the pull sent, in order."""
    sent: list[str] = []
    real = pull_cdrs._Writer._copy

    def copy(conn, sql, rows):
        sent.append(sql.split(" (")[0])
        return real(conn, sql, rows)

    monkeypatch.setattr(pull_cdrs._Writer, "_copy", staticmethod(copy))
    return sent


def _read_from_the_top(store) -> None:
    """Forget where pbx1's Master.csv was read up to: the next pull reads it all again."""
    with store.transaction() as s:
        s.execute(update(PullWatermark).where(PullWatermark.server == "pbx1").values(cursor=None))


def _calls(store) -> int:
    with store.transaction() as s:
        return s.scalar(select(func.count()).select_from(Cdr).where(Cdr.server == "pbx1"))


def test_new_rows_go_straight_into_cdrs_and_stored_ones_are_left_out(two, store, copies):
    first = two("pull-cdrs", "--server", "pbx1", "--since", SINCE, "-v")
    assert first.exit_code == 0, first.output
    assert copies == ["COPY cdrs"], copies
    assert _calls(store) == 3
    copies.clear()
    # The same three calls again, and one new: only the new one is COPY'd.
    with (two.config.parent / "pbx1" / "Master.csv").open("a") as f:
        f.write(master_line("2026-11-20 10:00:00", "15195551009", "acct1"))
    _read_from_the_top(store)
    again = two("pull-cdrs", "--server", "pbx1", "--since", SINCE, "-v")
    assert again.exit_code == 0, again.output
    assert "pbx1: stored 1, 3 duplicates" in again.output, again.output
    assert len(copies) == 1 and "pull_cdrs_in" not in copies[0], copies
    assert _calls(store) == 4
    # Nothing new: no COPY at all.
    _read_from_the_top(store)
    copies.clear()
    assert two("pull-cdrs", "--server", "pbx1", "--since", SINCE).exit_code == 0
    assert copies == []


def test_a_copy_that_meets_the_unique_key_takes_the_safe_path(two, store, copies, monkeypatch):
    assert two("pull-cdrs", "--server", "pbx1", "--since", SINCE).exit_code == 0
    with (two.config.parent / "pbx1" / "Master.csv").open("a") as f:
        f.write(master_line("2026-11-20 10:00:00", "15195551009", "acct1"))
    _read_from_the_top(store)
    copies.clear()
    # As if another writer stored the three old calls between the read of the
    # stored ids and the COPY: none is left out, and the COPY meets the key.
    monkeypatch.setattr(pull_cdrs._Writer, "_not_stored", lambda self, conn, params: params)
    result = two("pull-cdrs", "--server", "pbx1", "--since", SINCE, "-v")
    assert result.exit_code == 0, result.output
    assert "pbx1: stored 1, 3 duplicates" in result.output, result.output
    assert len(copies) == 2 and "pull_cdrs_in" in copies[1], copies
    assert _calls(store) == 4
    with store.transaction() as s:
        ids = s.scalars(select(Cdr.provider_id).where(Cdr.server == "pbx1")).all()
    assert len(ids) == len(set(ids)) == 4
