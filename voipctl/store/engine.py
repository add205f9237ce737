"""Engine and session setup for SQLite (WAL, BEGIN IMMEDIATE) and PostgreSQL."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from voipctl.errors import ConfigError, SchemaOutOfDate, VoipctlError
from voipctl.private import FILE_MODE, private_dir, private_umask

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Page cache bound per SQLite connection, in KiB (PRAGMA cache_size takes it negated).
SQLITE_CACHE_KIB = 65_536


@dataclass
class Store:
    """An engine and its session factory; `sqlite_path` is set for SQLite files."""

    engine: Engine
    session_factory: sessionmaker[Session]
    url: str

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        database = self.engine.url.database
        return Path(database) if database and database != ":memory:" else None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.session_factory.begin() as session:
            yield session

    def check_schema(self) -> None:
        """Refuse to run on a database that is not at the newest migration."""
        from voipctl.store import revision

        path = self.sqlite_path
        if path is not None and not path.expanduser().exists():
            # Connecting would leave an empty file behind a mistyped path: say so instead.
            raise SchemaOutOfDate(
                f"the database {self.safe_url} does not exist: check the URL, or "
                "run `voipctl db upgrade` to create it"
            )
        try:
            current = revision.current_revision(self.engine)
        except OperationalError as exc:
            raise VoipctlError(
                f"cannot open the database {self.safe_url}: {_reason(exc)}"
            ) from None
        head = revision.head_revision()
        if head is None:  # not one head (migrations being merged): Alembic decides
            from voipctl.store.migrate import current_revision, head_revision

            current, head = current_revision(self), head_revision()
        if current != head:
            state = "has no voipctl schema" if current is None else f"is at revision {current}"
            raise SchemaOutOfDate(
                f"the database {self.safe_url} {state}, this voipctl needs {head}: "
                "run `voipctl db upgrade`"
            )

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()


def cdrs_through(session: Session, index: str) -> str:
    """`cdrs` as a FROM clause, read through one of its partial indexes.

    Without statistics SQLite may prefer a wider index (every call ever rated);
    INDEXED BY pins the partial one, and fails loudly should a query stop
    matching it (the query repeats the index's WHERE terms literally).
    PostgreSQL proves the index fits by itself.
    """
    if session.get_bind().dialect.name == "sqlite":
        return f"cdrs INDEXED BY {index}"
    return "cdrs"


def driver_sql(session: Session, sql: str) -> str:
    """`sql` written with qmark parameters, in the paramstyle of the session's DBAPI driver.

    Hot statements go straight to the DBAPI cursor: qmark for sqlite3, %s for psycopg.
    """
    return sql.replace("?", "%s") if session.get_bind().dialect.name == "postgresql" else sql


def _sqlite_private(engine: Engine) -> None:
    """A database file this connection creates is 0600 whatever the umask.

    SQLite creates the file 0644 less the umask, and its -wal and -shm files with
    the database file's own mode: a private database file keeps all three private
    (tests/store/test_private_files.py checks it under umask 0).
    """

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None  # the default connect
        path = Path(database).expanduser()
        if path.exists():
            return None
        with private_umask():
            connection = dialect.connect(*cargs, **cparams)
        if path.exists():
            os.chmod(path, FILE_MODE)
        return connection


def _sqlite_setup(engine: Engine, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
    # pysqlite's own transaction handling is turned off so that every transaction
    # starts with BEGIN IMMEDIATE: writers queue on the busy timeout up front
    # instead of failing with "database is locked" halfway through.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # The default 2 MB page cache holds a fraction of cdrs' indexes at a million
        # calls: bulk jobs then re-read and spill pages for every chunk. The cache is
        # per connection and grows only as pages are used, up to this bound.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        # Sorts and GROUP BY temp b-trees (autobill's sums) in memory, not a temp file.
        cursor.execute("PRAGMA temp_store=MEMORY")
        # No mmap_size: at a million calls it saved autobill nothing measurable and
        # added the mapped file to the resident memory (+200 MB).
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_store(
    url: str,
    *,
    create_dir: bool = True,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    lock_timeout_s: float | None = None,
    statement_timeout_s: float | None = None,
) -> Store:
    """Open the database at a SQLAlchemy URL. Raises ConfigError for a bad URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"database url {url!r} is not a SQLAlchemy URL") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship; plain postgresql:// means it.
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs: dict = {}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:" and create_dir:
            private_dir(Path(parsed.database).expanduser().parent)
        kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000}
    elif backend == "postgresql":
        if (
            parsed.drivername == "postgresql+psycopg"
            and importlib.util.find_spec("psycopg") is None
        ):
            raise ConfigError(
                "database url: PostgreSQL needs the psycopg driver; "
                "install it with: pip install 'voipctl[postgresql]'"
            )
        kwargs["pool_pre_ping"] = True
        # A row or table lock held by another session ends the statement after
        # lock_timeout instead of leaving the job (and its advisory lock) waiting;
        # statement_timeout bounds any one statement.
        options = [
            f"-c {name}={int(seconds * 1000)}"
            for name, seconds in (
                ("lock_timeout", lock_timeout_s),
                ("statement_timeout", statement_timeout_s),
            )
            if seconds
        ]
        if options:
            kwargs["connect_args"] = {"options": " ".join(options)}
    else:
        raise ConfigError(f"database url: {backend!r} is not supported (sqlite or postgresql)")
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ArgumentError) as exc:
        raise ConfigError(f"database url: {exc}") from None
    if backend == "sqlite":
        _sqlite_private(engine)
        _sqlite_setup(engine, busy_timeout_ms)
    return Store(
        engine=engine, session_factory=sessionmaker(engine, expire_on_commit=False), url=url
    )


def connect_check(store: Store) -> None:
    """Open one connection, turning driver errors into a clear VoipctlError."""
    try:
        with store.engine.connect() as conn:
            inspect(conn).get_table_names()
    except OperationalError as exc:
        raise VoipctlError(f"cannot open the database {store.safe_url}: {_reason(exc)}") from None


def _reason(exc: OperationalError) -> str:
    """The driver's first line ("connection refused"), without SQLAlchemy's wrapping."""
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
