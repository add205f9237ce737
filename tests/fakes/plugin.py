"""Pytest fixtures for the fakes in tests/fakes/, loaded by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.esl_server import FakeEslServer
from tests.fakes.fusionpbx_db import FusionDb
from tests.fakes.whmcs_env import start_fake, write_config
from tests.fakes.whmcs_server import FakeWhmcs


@pytest.fixture
def fusion_db(pg_server) -> Iterator[FusionDb]:
    """A new FusionPBX database (boolean `enabled` flags, as FusionPBX 5.x declares them)."""
    db = FusionDb(pg_server.create("fusion"))
    yield db
    db.dispose()


@pytest.fixture
def fusion_db_legacy(pg_server) -> Iterator[FusionDb]:
    """A FusionPBX database whose `enabled` flags are text 'true'/'false' (older installs)."""
    db = FusionDb(pg_server.create("fusion"), legacy_text_flags=True)
    yield db
    db.dispose()


@pytest.fixture
def esl_server() -> Iterator[FakeEslServer]:
    """A fake FreeSWITCH event socket on 127.0.0.1 (password ClueCon)."""
    with FakeEslServer() as server:
        yield server


@pytest.fixture
def whmcs(monkeypatch) -> Iterator[FakeWhmcs]:
    """A fake WHMCS on 127.0.0.1, its API credentials in the environment."""
    yield from start_fake(monkeypatch)


@pytest.fixture
def whmcs_config(tmp_path, whmcs) -> Path:
    """A voipctl.toml with backend whmcs, pointing at the `whmcs` fake."""
    return write_config(tmp_path / "voipctl.toml", whmcs)
