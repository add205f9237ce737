"""`voipctl server check`: reach each configured server with its credentials."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voipctl.config import Config
from voipctl.errors import VoipctlError
from voipctl.providers import ProviderAdapter, adapter_for, plugin
from voipctl.store.engine import Store

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

    With a store, a provider may read more (`Plugin.check_inputs`: LES.NET reads the head
    of each active service's CDR link).
    """
    selected = names or sorted(config.servers)
    results = []
    for name in selected:
        server = config.server(name)
        try:
            with adapter_factory(name, server) as adapter:
                detail = adapter.check(**plugin(server.type).check_inputs(store, name))
            results.append(ServerCheck(name, server.type, True, detail))
        except VoipctlError as exc:
            # The message already starts with the server's name.
            message = str(exc)
            prefix = f"{name}: "
            results.append(ServerCheck(name, server.type, False, message.removeprefix(prefix)))
    return results
