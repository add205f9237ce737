"""Pytest fixtures for the fakes in tests/fakes/, loaded by tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.esl_server import FakeEslServer
from tests.fakes.fusionpbx_db import FusionDb


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
