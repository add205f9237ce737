"""What a provider package declares about itself (docs/internals.md, "Providers as plugins").

Each package under `voipctl/providers/<type>/` has a `plugin.py` with one
`Plugin` subclass: the server configuration model, the product-field parser
and the forms shown in errors, the service extras, the inputs of `check()`
and the few lines `server list` shows. This module and the plugins import
nothing heavy (no HTTP or database driver), so the CLI can read every plugin
to build its options while a job still imports only the adapters it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldForm:
    """How one field of one server type is written: form and example (docs/providers.md)."""

    label: str
    form: str
    example: str


@dataclass(frozen=True)
class Extra:
    """One provider-specific field of a service, kept in `Service.extras` under `key`.

    `key` is also the keyword of `service add`/`service set` and the name the
    rest of voipctl reads (`service.gateway_uuid`). `whmcs_key` is its key in
    `[whmcs] service_fields`, `whmcs_field` the default WHMCS product field name,
    `shown` its key in `service show`. `check` turns a typed value into the one
    kept (raising UsageError); `secret` values are masked unless asked for.
    """

    key: str
    option: str
    metavar: str
    help: str
    whmcs_key: str
    whmcs_field: str
    shown: str
    label: str
    check: Callable[[str], str] | None = None
    secret: bool = False


def load(target: str) -> Any:
    """The object named by a `"module:attribute"` string, imported now."""
    module_name, attribute = target.split(":")
    return getattr(importlib.import_module(module_name), attribute)


class Plugin:
    """A provider's description. Subclasses set the class attributes and may override hooks."""

    type: ClassVar[str]
    # "module:Class" of the server's configuration model (a pydantic model with
    # `type: Literal[<type>]`), imported when a configuration is validated.
    config_model: ClassVar[str]
    # `domain` and `billed`: how the two product fields are written.
    forms: ClassVar[dict[str, FieldForm]]
    extras: ClassVar[tuple[Extra, ...]] = ()
    # suspend lever -> the extra it acts on (a service without it cannot be suspended).
    lever_extras: ClassVar[dict[str, str]] = {}
    # A "manual action required" email's `server` and `instructions`, as template
    # previews show them (a plugin with a manual lever gives one).
    manual_sample: ClassVar[dict[str, str] | None] = None
    # Minutes without a successful pull before `voipctl status` calls a server of this
    # type stale; None: the [status] default.
    pull_interval_minutes: ClassVar[int | None] = None

    @staticmethod
    def parse_fields(domain: str, billed: str) -> dict[str, Any]:
        """The Service columns of the two product fields (see providers/fields.py)."""
        raise NotImplementedError

    def check_config(self, server: Any, where: str) -> None:
        """Refuse, with ConfigError, a server table whose keys do not fit together."""

    def check_inputs(self, store: Any, server_name: str) -> dict[str, Any]:
        """Keyword arguments of the adapter's `check()`, read from the store (may be None)."""
        return {}

    def claims(self, service: Any, others: Sequence[Any]) -> None:
        """Refuse (UsageError) a service that would bill calls of another active one.

        `others` are the other active services of the same server, oldest first.
        Tenant overlaps are checked for every type by the catalog.
        """

    def where(self, server: Any) -> str:
        """Where `server list` says the server's calls are read from."""
        return getattr(server, "url", "") or ""
