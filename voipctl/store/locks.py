"""Job locks: two overlapping runs of one job never interleave (docs/billing.md, Locks).

SQLite: an `fcntl.flock` on a file beside the database, released by the kernel
even after kill -9. PostgreSQL: a session advisory lock on a connection of its
own, so the job may commit per client on other connections while it holds it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from voipctl.errors import LockHeld
from voipctl.store.engine import Store


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a job name."""
    digest = hashlib.sha256(f"voipctl:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_path(store: Store, name: str) -> Path:
    path = store.sqlite_path
    if path is None:
        raise ValueError("lock files are for SQLite file databases")
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
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
    finally:
        conn.close()
