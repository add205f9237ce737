"""Shared fixtures: a fresh, migrated database per test on SQLite or PostgreSQL.

The backend under test is chosen by VOIPCTL_TEST_DB (sqlite, the default, or
postgresql). VOIPCTL_TEST_PG_URL is an admin URL of a running PostgreSQL server
(`.ci/run` starts one); tests that need PostgreSQL whatever the backend (the
FusionPBX database, for one) use `pg_admin_url` and are skipped only when no
server is given, which `.ci/run` never allows.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from voipctl.cli import run
from voipctl.store import Store, open_store
from voipctl.store.migrate import upgrade

BACKEND = os.environ.get("VOIPCTL_TEST_DB", "sqlite")
PG_ADMIN_URL = os.environ.get("VOIPCTL_TEST_PG_URL")

if BACKEND not in ("sqlite", "postgresql"):
    raise RuntimeError(f"VOIPCTL_TEST_DB={BACKEND!r}: expected sqlite or postgresql")
if BACKEND == "postgresql" and not PG_ADMIN_URL:
    raise RuntimeError("VOIPCTL_TEST_DB=postgresql needs VOIPCTL_TEST_PG_URL (an admin URL)")


def pytest_report_header(config):
    return f"voipctl store backend: {BACKEND}; PostgreSQL server: {PG_ADMIN_URL or 'none'}"


class PgServer:
    """Creates and drops databases on the test PostgreSQL server."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def url_for(self, name: str) -> str:
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create(self, prefix: str = "t", template: str | None = None) -> str:
        name = f"voipctl_{prefix}_{uuid.uuid4().hex[:10]}"
        clause = f" TEMPLATE {template}" if template else ""
        with self.engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
        self.created.append(name)
        return self.url_for(name)

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if not PG_ADMIN_URL:
        pytest.skip("no PostgreSQL server (set VOIPCTL_TEST_PG_URL; .ci/run does)")
    server = PgServer(PG_ADMIN_URL)
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def pg_admin_url(pg_server: PgServer) -> str:
    return pg_server.admin_url


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory, request) -> str:
    """A migrated database to copy for each test (a file, or a PostgreSQL template)."""
    if BACKEND == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        store = open_store(f"sqlite:///{path}")
        upgrade(store)
        store.dispose()  # the last connection to close checkpoints the WAL into the file
        assert not path.with_name(path.name + "-wal").exists()
        return str(path)
    server: PgServer = request.getfixturevalue("pg_server")
    url = server.create("template")
    store = open_store(url)
    upgrade(store)
    store.dispose()
    return make_url(url).database


@pytest.fixture
def db_url(_template_db, tmp_path, request) -> str:
    """URL of a fresh, migrated database for this test, on the backend under test."""
    if BACKEND == "sqlite":
        path = tmp_path / "voipctl.db"
        shutil.copyfile(_template_db, path)
        path.chmod(0o600)  # as `voipctl db upgrade` creates it (doctor checks the mode)
        return f"sqlite:///{path}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.create("t", template=_template_db)


@pytest.fixture
def store(db_url) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.dispose()


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(db_url, capsys, tmp_path, monkeypatch):
    """Run voipctl in-process against this test's database: cli("balance", "42")."""
    monkeypatch.chdir(tmp_path)  # no stray ./voipctl.toml or ./.env
    for name in list(os.environ):
        if name.startswith("VOIPCTL_") and not name.startswith("VOIPCTL_TEST_"):
            monkeypatch.delenv(name)

    def invoke(*args: str, config: Path | str | None = None) -> Result:
        capsys.readouterr()
        argv = ["--db", db_url]
        if config is not None:
            argv += ["--config", str(config)]
        code = run([*argv, *map(str, args)])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


# Fixtures of the fake PBXs (tests/fakes/): fusion_db, fusion_db_legacy, esl_server.
pytest_plugins = ["tests.fakes.plugin"]


@pytest.fixture(autouse=True)
def _reset_voipctl_logging():
    """In-process CLI runs set up the `voipctl` logger (own handler, no propagation);
    undo that after each test so later tests' caplog sees voipctl's records."""
    yield
    import logging

    logger = logging.getLogger("voipctl")
    logger.handlers[:] = []
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def umask0():
    """The most permissive umask, for tests that voipctl's files are private anyway."""
    old = os.umask(0)
    yield
    os.umask(old)
