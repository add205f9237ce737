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
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
