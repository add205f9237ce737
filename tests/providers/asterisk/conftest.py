"""Fixtures of the Asterisk / FreePBX tests: a real MariaDB server, and cdr_csv's line writer.

The MariaDB server (Debian's mariadb-server: mariadbd, mariadb-install-db) is
started once per session as its own process, on a unix socket in a temporary
directory (no port to collide with anyone's), with a fresh datadir; it is
skipped when mariadbd is not installed, unless VOIPCTL_TEST_MARIADB=required
(`.ci/run` sets it), which makes its absence a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import support

FIXTURES = support.FIXTURES / "asterisk"
MARIADB_REQUIRED = os.environ.get("VOIPCTL_TEST_MARIADB") == "required"


def cdr_csv_line(values: list[str | int | None]) -> str:
    """A Master.csv line as cdr_csv writes it, for tests that build their own rows.

    # source: asterisk/asterisk cdr/cdr_csv.c, build_csv_record(): a str is
    # append_string() (quoted, a quote doubled), an int append_int() (bare), None a
    # zero time from append_date() (an empty field); the last comma trimmed, "\n".
    """
    out = []
    for value in values:
        if value is None:
            out.append("")
        elif isinstance(value, int):
            out.append(str(value))
        else:
            out.append('"' + value.replace('"', '""') + '"')
    return ",".join(out) + "\n"


def _tool(name: str, *dirs: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in dirs:
        candidate = Path(d) / name
        if candidate.exists():
            return str(candidate)
    return None


@dataclass
class MariaDB:
    socket: str
    datadir: Path

    def connect(self, database: str | None = None, **kw):
        import pymysql

        return pymysql.connect(
            unix_socket=self.socket, user="root", database=database, autocommit=True, **kw
        )


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    mariadbd = _tool("mariadbd", "/usr/sbin")
    install_db = _tool("mariadb-install-db", "/usr/bin")
    if not mariadbd or not install_db:
        if MARIADB_REQUIRED:
            pytest.fail("VOIPCTL_TEST_MARIADB=required but mariadbd / mariadb-install-db not found")
        pytest.skip("no MariaDB server (install mariadb-server; .ci/run does)")
    try:
        import pymysql  # noqa: F401
    except ImportError:
        if MARIADB_REQUIRED:
            pytest.fail("VOIPCTL_TEST_MARIADB=required but PyMySQL is not installed")
        pytest.skip("no PyMySQL (pip install pymysql)")
    # Not under pytest's temporary directory: that is private to this user (0700),
    # and mariadbd runs as another one when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="voipctl-mariadb-"))
    datadir = base / "data"
    socket = str(base / "mysqld.sock")
    args = ["--no-defaults", f"--datadir={datadir}"]
    if os.geteuid() == 0:
        # mariadbd will not run as root without being told to; run it as the
        # package's own unprivileged user (or nobody), owner of the datadir.
        user = "mysql"
        try:
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
        shutil.chown(base, user)
        args.append(f"--user={user}")
    done = subprocess.run(
        [
            install_db,
            *args,
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"mariadb-install-db failed ({done.returncode}):\n{done.stderr[-2000:]}")
    log = base / "error.log"
    proc = subprocess.Popen(
        [
            mariadbd,
            *args,
            "--skip-networking",
            f"--socket={socket}",
            f"--pid-file={base / 'mysqld.pid'}",
            f"--log-error={log}",
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=16M",
            "--default-time-zone=+00:00",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = MariaDB(socket, datadir)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.connect().close()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                pytest.fail(f"mariadbd did not start:\n{text}")
            time.sleep(0.2)
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def write_line():
    """`cdr_csv_line`: a row -> the Master.csv line cdr_csv writes for it."""
    return cdr_csv_line
