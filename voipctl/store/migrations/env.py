"""Alembic environment: the engine comes from voipctl, never from alembic.ini."""

from alembic import context

from voipctl.store.models import Base
from voipctl.store.types import Money, Percent, UTCTime

# Migrations name the storage types, not voipctl's Python-side wrappers, so an
# old migration keeps working whatever later happens to those classes.
_STORAGE_TYPES = {Money: "sa.BigInteger()", UTCTime: "sa.BigInteger()", Percent: "sa.Integer()"}


def render_item(type_, obj, autogen_context):
    if type_ == "type" and type(obj) in _STORAGE_TYPES:
        return _STORAGE_TYPES[type(obj)]
    return False


config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        # A batch migration on SQLite recreates a table (copy, drop, rename). With
        # foreign keys on, dropping a table that other rows reference fails, so they
        # are turned off for the migration, outside its transaction (a PRAGMA inside
        # one is a no-op), and checked after it, as SQLite documents for table
        # changes (sqlite.org/lang_altertable.html, "Making Other Kinds Of Table
        # Schema Changes").
        raw = (
            connection.connection.driver_connection if connection.dialect.name == "sqlite" else None
        )
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=True,
                compare_type=True,
                render_item=render_item,
            )
            with context.begin_transaction():
                context.run_migrations()
                if raw is not None:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left foreign keys broken: {broken[:5]}")
            connection.commit()
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


run_migrations_online()
