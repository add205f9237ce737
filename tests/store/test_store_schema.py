"""The migrations and the models describe the same schema, on the backend under test."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from voipctl.store.models import Base


def test_migrations_match_the_models(store):
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ; run scripts/new-migration: {diff}"
