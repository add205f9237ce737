"""Provider adapters, found through one explicit registry."""

from __future__ import annotations

import importlib

from voipctl.errors import ConfigError
from voipctl.providers.base import CallRecord, ProviderAdapter, ServiceInfo

# server type -> "module:Class". Imported on use, so one adapter's optional
# dependencies never stop another from loading.
PROVIDERS: dict[str, str] = {
    "fusionpbx": "voipctl.providers.fusionpbx.adapter:FusionPBXAdapter",
    "vodia": "voipctl.providers.vodia.adapter:VodiaAdapter",
    "lesnet": "voipctl.providers.lesnet.adapter:LesnetAdapter",
}


def adapter_class(server_type: str) -> type[ProviderAdapter]:
    try:
        module_name, class_name = PROVIDERS[server_type].split(":")
    except KeyError:
        raise ConfigError(f"unknown server type {server_type!r}") from None
    return getattr(importlib.import_module(module_name), class_name)


def adapter_for(name: str, config) -> ProviderAdapter:
    """A ready adapter for a configured server (`config.servers[name]`)."""
    return adapter_class(config.type)(name, config)


__all__ = ["PROVIDERS", "CallRecord", "ProviderAdapter", "ServiceInfo", "adapter_for"]
