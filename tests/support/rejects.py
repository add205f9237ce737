"""Adapter output as the tests of one provider's parser read it.

Adapters yield a `Rejected` for a record they cannot read (pull-cdrs sets it
aside); `strict` turns the first one into the ProviderDataError its reason
names, so a parser test asserts the exact one-line message as before.
"""

from __future__ import annotations

from collections.abc import Iterable

from voipctl.errors import ProviderDataError
from voipctl.providers.base import Rejected


def strict(adapter, records: Iterable) -> list:
    out = []
    for record in records:
        if isinstance(record, Rejected):
            raise ProviderDataError(adapter.name, record.reason)
        out.append(record)
    return out


def fetch_strict(adapter, *args) -> list:
    """`strict` over `adapter.fetch_cdrs(*args)`."""
    return strict(adapter, adapter.fetch_cdrs(*args))
