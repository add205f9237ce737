"""Transfer deadlines against a real local HTTP server that trickles its body.

The server sends its headers at once, then one byte every 0.2 s: a read timeout
never fires, so only the minimum rate or the per-request limit can end it.
"""

from __future__ import annotations

import time

import pytest

from tests.fakes.trickle import trickling_server
from voipctl.config import LesnetServer
from voipctl.errors import ProviderError
from voipctl.providers.http import HttpClient


@pytest.fixture
def trickler():
    with trickling_server(size=1000, interval_s=0.2) as url:
        yield url


def _client(url, **limits):
    return HttpClient("les1", url, timeout_s=3, retries=0, **limits)


@pytest.mark.parametrize("how", ["request", "stream"])
def test_a_trickling_body_trips_the_minimum_rate(trickler, how):
    client = _client(trickler, min_rate_bps=100, rate_window_s=1.0)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        if how == "request":
            client.request("GET", "/file.txt")
        else:
            with client.stream("GET", "/file.txt") as response:
                for _ in response.iter_lines():
                    pass
    assert str(caught.value) == (
        "les1: transfer slower than 100 B/s over 1 s (servers.les1.min_rate_bps)"
    )
    assert time.monotonic() - started < 20  # ended, not the 200 s the body would take


def test_a_trickling_body_trips_the_request_limit(trickler):
    client = _client(trickler, min_rate_bps=0, max_request_s=1.0)
    with pytest.raises(ProviderError) as caught:
        client.request("GET", "/file.txt")
    assert str(caught.value) == ("les1: transfer longer than 1 s (servers.les1.max_request_s)")


def test_defaults_leave_room_for_a_day_long_file():
    server = LesnetServer.model_fields
    assert server["min_rate_bps"].default == 1024
    assert server["rate_window_s"].default == 30.0
    assert server["max_request_s"].default == 1800.0


def test_the_lock_waits_are_configured_on_the_connection(db_url):
    from sqlalchemy import text

    from voipctl.store import open_store

    store = open_store(db_url, busy_timeout_ms=1234, lock_timeout_s=2.5)
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
        else:
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "2500ms"
    store.engine.dispose()


def test_a_lock_held_by_another_postgresql_session_ends_the_wait(db_url):
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from voipctl.store import open_store

    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's lock_timeout")
    holder = open_store(db_url)
    waiter = open_store(db_url, lock_timeout_s=0.5)
    with holder.engine.connect() as held:
        held.execute(text("CREATE TABLE IF NOT EXISTS deadline_probe (id int)"))
        held.commit()
        held.execute(text("LOCK TABLE deadline_probe IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        with waiter.engine.connect() as conn, pytest.raises(OperationalError) as caught:
            conn.execute(text("SELECT * FROM deadline_probe"))
        assert "lock timeout" in str(caught.value.orig)
        assert time.monotonic() - started < 20
        held.rollback()
    holder.engine.dispose()
    waiter.engine.dispose()


@pytest.mark.parametrize(("job", "table"), [("autobill", "services"), ("autosuspend", "clients")])
def test_a_job_behind_a_held_postgresql_lock_stops_with_one_line(
    store, cli, db_url, tmp_path, job, table
):
    """The held lock of the fault suite, through the command line: one line, exit 1."""
    import time

    from sqlalchemy import text

    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's lock_timeout")
    config = tmp_path / "voipctl.toml"
    config.write_text("[database]\nlock_timeout_s = 0.5\n")
    with store.engine.connect() as held:
        held.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        result = cli(job, config=config)
        held.rollback()
    assert time.monotonic() - started < 30
    assert result.exit_code == 1, result.stderr
    assert result.stderr == (
        f"voipctl: error: {job}: gave up waiting for a lock another session holds "
        "([database] lock_timeout_s); nothing of the unfinished transaction was written, "
        "the next run goes on\n"
    )
    again = cli(job, config=config)  # the lock released: the next run goes on
    assert again.exit_code == 0, again.stderr
