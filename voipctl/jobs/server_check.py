"""`voipctl server check`: reach each configured server with its credentials."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from voipctl.config import Config
from voipctl.errors import VoipctlError
from voipctl.providers import ProviderAdapter, adapter_for
from voipctl.store.engine import Store
from voipctl.store.models import Service

log = logging.getLogger(__name__)


@dataclass
class ServerCheck:
    server: str
    type: str
    ok: bool
    detail: str


def check_servers(
    config: Config,
    names: list[str] | None = None,
    *,
    store: Store | None = None,
    adapter_factory: Callable[[str, Any], ProviderAdapter] = adapter_for,
) -> list[ServerCheck]:
    """Check each named server (all by default); a failure is a result, not an exception.

    With a store, LES.NET servers also read the head of each active service's CDR link.
    """
    selected = names or sorted(config.servers)
    results = []
    for name in selected:
        server = config.server(name)
        try:
            with adapter_factory(name, server) as adapter:
                if server.type == "lesnet":
                    detail = adapter.check(links=_cdr_links(store, name))
                else:
                    detail = adapter.check()
            results.append(ServerCheck(name, server.type, True, detail))
        except VoipctlError as exc:
            # The message already starts with the server's name.
            message = str(exc)
            prefix = f"{name}: "
            results.append(ServerCheck(name, server.type, False, message.removeprefix(prefix)))
    return results


def _cdr_links(store: Store | None, server: str) -> list[str]:
    if store is None:
        return []
    with store.session() as session:
        links = session.scalars(
            select(Service.cdr_link)
            .where(Service.server == server, Service.active.is_(True))
            .where(Service.cdr_link.is_not(None))
            .distinct()
        )
        return sorted(link for link in links if link)
