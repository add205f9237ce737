"""Files voipctl creates are private whatever the umask: the SQLite database (and its
-wal/-shm files) 0600 in a 0700 directory; existing directories are left alone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from voipctl.cli import run
from voipctl.private import private_dir, write_private
from voipctl.store import open_store


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_db_upgrade_creates_a_private_database_and_directory(tmp_path, umask0, capsys):
    database = tmp_path / "var" / "lib" / "voipctl" / "voipctl.db"
    assert run(["--db", f"sqlite:///{database}", "db", "upgrade"]) == 0
    assert _mode(database) == 0o600
    for directory in (database.parent, database.parent.parent, tmp_path / "var"):
        assert _mode(directory) == 0o700, directory
    assert run(["--db", f"sqlite:///{database}", "product", "add", "std"]) == 0
    capsys.readouterr()


def test_wal_and_shm_files_are_as_private_as_the_database(tmp_path, umask0):
    database = tmp_path / "new" / "voipctl.db"
    store = open_store(f"sqlite:///{database}")
    try:
        with store.engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
            conn.commit()
            # While a connection is open the WAL files exist; SQLite creates them with
            # the database file's own mode.
            for suffix in ("", "-wal", "-shm"):
                side = database.with_name(database.name + suffix)
                assert _mode(side) == 0o600, side
        assert _mode(database.parent) == 0o700
    finally:
        store.dispose()


def test_an_existing_database_file_keeps_its_mode(tmp_path, umask0):
    database = tmp_path / "voipctl.db"
    database.touch()
    database.chmod(0o640)  # the operator's choice (a backup group): not overridden
    store = open_store(f"sqlite:///{database}")
    try:
        with store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        store.dispose()
    assert _mode(database) == 0o640


def test_an_existing_directory_keeps_its_mode(tmp_path, umask0):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    private_dir(shared / "mine")
    assert _mode(shared) == 0o755
    assert _mode(shared / "mine") == 0o700


def test_write_private_replaces_a_leftover_tmp_of_any_mode(tmp_path, umask0):
    target = tmp_path / "x.eml"
    leftover = tmp_path / "x.eml.tmp"
    leftover.write_bytes(b"old")
    leftover.chmod(0o666)
    write_private(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o600
    assert not leftover.exists()
