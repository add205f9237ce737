"""The store: engine and sessions, schema, migrations and job locks."""

from voipctl.store.engine import Store, open_store

__all__ = ["Store", "open_store"]
