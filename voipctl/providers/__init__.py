"""Provider adapters and plugins, found through one explicit registry.

A provider is a package `voipctl/providers/<type>/` and its two registry lines
below (docs/internals.md, "Providers as plugins"). Both are `"module:Class"`
strings imported on use, so one adapter's optional dependencies never stop
another from loading, and a job imports only the adapters it uses.
"""

from __future__ import annotations

import importlib
from functools import cache

from voipctl.errors import ConfigError
from voipctl.providers.base import CallRecord, ProviderAdapter, ServiceInfo
from voipctl.providers.plugin import Extra, Plugin, load

# server type -> "module:Class" of its adapter.
PROVIDERS: dict[str, str] = {
    "fusionpbx": "voipctl.providers.fusionpbx.adapter:FusionPBXAdapter",
    "vodia": "voipctl.providers.vodia.adapter:VodiaAdapter",
    "lesnet": "voipctl.providers.lesnet.adapter:LesnetAdapter",
    "asterisk": "voipctl.providers.asterisk.adapter:AsteriskAdapter",
}
# server type -> "module:Class" of its plugin (configuration, fields, extras).
PLUGINS: dict[str, str] = {
    "fusionpbx": "voipctl.providers.fusionpbx.plugin:FusionPBXPlugin",
    "vodia": "voipctl.providers.vodia.plugin:VodiaPlugin",
    "lesnet": "voipctl.providers.lesnet.plugin:LesnetPlugin",
    "asterisk": "voipctl.providers.asterisk.plugin:AsteriskPlugin",
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


def server_types() -> tuple[str, ...]:
    """The known server types, in registry order."""
    return tuple(PLUGINS)


@cache
def plugin(server_type: str) -> Plugin:
    """The plugin of a server type; ConfigError for a type no plugin has."""
    try:
        target = PLUGINS[server_type]
    except KeyError:
        raise ConfigError(f"unknown server type {server_type!r}") from None
    return load(target)()


def plugins() -> list[Plugin]:
    return [plugin(server_type) for server_type in PLUGINS]


def service_extras() -> dict[str, tuple[str, Extra]]:
    """Every service extra: key -> (its server type, its description), in registry order."""
    return {extra.key: (p.type, extra) for p in plugins() for extra in p.extras}


__all__ = [
    "PLUGINS",
    "PROVIDERS",
    "CallRecord",
    "Extra",
    "Plugin",
    "ProviderAdapter",
    "ServiceInfo",
    "adapter_for",
    "plugin",
    "plugins",
    "server_types",
    "service_extras",
]
