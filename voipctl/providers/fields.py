"""The product fields, as operators already write them in ictVoIP (docs/providers.md).

Each provider's plugin parses its own two fields (`Plugin.parse_fields`,
`Plugin.forms`) with the helpers here. Across server types the columns mean
the same thing: `dids` are the DIDs of the domain field, `main_did` the first
of them, and `extensions` the entries of the billed field (the extensions,
DIDs or numbers whose calls are billed). An empty billed field means "the
whole tenant" on a PBX, and "the domain DID" on a carrier.
"""

from __future__ import annotations

import re
from typing import Any

from voipctl.errors import UsageError
from voipctl.providers.plugin import FieldForm

TENANT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
DID = re.compile(r"\+?[0-9]{3,20}")
EXTENSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.*#+-]{0,31}")
_MAX_SHOWN = 80


def __getattr__(name: str) -> Any:
    # Built from the registry when first asked for: the plugins import this module.
    from voipctl import providers

    if name == "SERVER_TYPES":
        return providers.server_types()
    if name == "FORMS":
        return {
            (p.type, which): form for p in providers.plugins() for which, form in p.forms.items()
        }
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _shown(text: str) -> str:
    # Operator input goes back into a one-line message: keep it short and printable.
    shown = text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."
    return repr(shown)


def refuse(server_type: str, which: str, text: str, why: str) -> UsageError:
    from voipctl import providers

    form = providers.plugin(server_type).forms[which]
    return UsageError(
        f"{form.label} {_shown(text)} does not parse ({why}): "
        f'expected "{form.form}", e.g. "{form.example}"'
    )


def split_field(text: str) -> list[str]:
    """Split a product field on `|`; spaces around the bars are optional."""
    return [part.strip() for part in text.split("|")]


def check(server_type: str, which: str, text: str, part: str, pattern: re.Pattern, what: str):
    if not part:
        raise refuse(server_type, which, text, f"{what} is empty")
    if not pattern.fullmatch(part):
        raise refuse(server_type, which, text, f"{what} {_shown(part)} is not valid")
    return part


def billed_entries(server_type: str, text: str, pattern: re.Pattern, what: str) -> list[str]:
    if not text.strip():
        return []
    entries = [
        check(server_type, "billed", text, part, pattern, what) for part in split_field(text)
    ]
    if len(set(entries)) != len(entries):
        raise refuse(server_type, "billed", text, f"an {what} is listed twice")
    return entries


def parse_fields(server_type: str, domain: str, billed: str | None = "") -> dict[str, Any]:
    """Parse the domain and billed fields of a service on a server of `server_type`.

    Returns the Service columns `tenant`, `peer_id`, `main_did`, `dids` and
    `extensions` (every key present, None or [] where the type has none).
    Raises UsageError (exit 2) naming the expected form and its example.

    Example: parse_fields(server.type, "mcon.wat7.ictvoip.ca | 5192229000", "2112 | 2113")
    """
    from voipctl import providers

    if server_type not in providers.PLUGINS:
        raise UsageError(
            f"unknown server type {server_type!r} "
            f"(expected one of {', '.join(providers.server_types())})"
        )
    columns: dict[str, Any] = {
        "tenant": None,
        "peer_id": None,
        "main_did": None,
        "dids": [],
        "extensions": [],
    }
    columns.update(providers.plugin(server_type).parse_fields(domain or "", billed or ""))
    return columns


def expected_forms(server_type: str) -> str:
    """The forms of both fields of a server type, for help texts and errors."""
    from voipctl import providers

    forms = providers.plugin(server_type).forms
    domain, billed = forms["domain"], forms["billed"]
    return (
        f'domain "{domain.form}" (e.g. "{domain.example}"), '
        f'billed "{billed.form}" (e.g. "{billed.example}")'
    )


__all__ = ["FieldForm", "billed_entries", "check", "parse_fields", "refuse", "split_field"]
