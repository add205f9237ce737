"""Job locks: two overlapping runs of one job never interleave (docs/billing.md, Locks).

SQLite: an `fcntl.flock` on a file beside the database, released by the kernel
even after kill -9. PostgreSQL: a session advisory lock on a connection of its
own, so the job may commit per client on other connections while it holds it.

pull-cdrs takes one lock per server (`pull_lock`), so several processes or cron
hosts sharing one PostgreSQL pull different servers at once.

Every lock just taken is a test-only pause point of its name (voipctl/pause.py):
the overlap tests hold it there and start a second run, instead of hoping that
two runs happen to overlap.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from voipctl.errors import LockHeld
from voipctl.pause import pause_point
from voipctl.store.engine import Store


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a job name."""
    digest = hashlib.sha256(f"voipctl:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# What a lock file's name may hold as it is; any other name (a server's may be
# anything TOML allows) is shown with the rest replaced, and a digest of it.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def pull_lock(server: str) -> str:
    """The lock of one server's pull (`pull-cdrs:NAME`)."""
    return f"pull-cdrs:{server}"


def lock_path(store: Store, name: str) -> Path:
    path = store.sqlite_path
    if path is None:
        raise ValueError("lock files are for SQLite file databases")
    if not _PLAIN_NAME.fullmatch(name):
        shown = re.sub(r"[^A-Za-z0-9_.:-]", "_", name)[:60]
        name = f"{shown}.{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return path.with_name(f"{path.name}.{name}.lock")


@contextmanager
def job_lock(store: Store, name: str) -> Iterator[None]:
    """Hold the lock named after a job for the duration; LockHeld (exit 75) if taken."""
    if store.is_sqlite:
        if store.sqlite_path is None:  # an in-memory database has no other runs
            yield
            return
        path = lock_path(store, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(f"{name}: another run holds the lock {path}") from None
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:
                # The pid is for the operator's eyes; the flock is the lock. A full
                # disk is then reported by the job's own first write, as one line.
                pass
            pause_point(name)
            yield
        finally:
            os.close(fd)
        return
    key = lock_key(name)
    conn = store.engine.connect()
    try:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()
        if not got:
            raise LockHeld(f"{name}: another run holds the advisory lock {key}")
        try:
            pause_point(name)
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
    finally:
        conn.close()
