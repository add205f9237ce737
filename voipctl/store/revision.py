"""The schema revision without importing Alembic: every job checks it before it runs.

Alembic (and Mako with it) takes a third of a cron job's start-up; the check needs
only the `alembic_version` table and the `revision` lines of the migration files.
`db upgrade` and `doctor` still ask Alembic itself (voipctl.store.migrate).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import inspect, text

VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r'^revision\s*(?::\s*str\s*)?=\s*["\']([^"\']+)["\']', re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.M)


@cache
def head_revision() -> str | None:
    """The one revision no migration names as its down_revision; None when not one."""
    revisions, downs = set(), set()
    for path in VERSIONS.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = _REVISION.search(source)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(source)
        if down is not None:
            downs.update(re.findall(r'["\']([^"\']+)["\']', down.group(1)))
    heads = revisions - downs
    return next(iter(heads)) if len(heads) == 1 else None


def current_revision(engine) -> str | None:
    """What `alembic_version` holds (None: no voipctl schema)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None
