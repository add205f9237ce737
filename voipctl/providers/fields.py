"""The product fields, as operators already write them in ictVoIP (docs/providers.md).

| server    | domain field                   | billed field                  |
|-----------|--------------------------------|-------------------------------|
| FusionPBX | `tenant | main DID`            | extensions `2112 | 2113`      |
| Vodia     | `tenant | DID | DID ...`       | DID or extension `8300`       |
| LES.NET   | `peer | DID`                   | DID `12046664021`             |

`parse_fields` turns them into Service columns. Across server types the
columns mean the same thing: `dids` are the DIDs of the domain field, `main_did`
the first of them, and `extensions` the entries of the billed field (the
extensions, DIDs or numbers whose calls are billed). An empty billed field
means "the whole tenant" on FusionPBX and Vodia, and "the domain DID" on
LES.NET.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from voipctl.errors import UsageError

SERVER_TYPES = ("fusionpbx", "vodia", "lesnet")

_TENANT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_DID = re.compile(r"\+?[0-9]{3,20}")
_EXTENSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.*#+-]{0,31}")
_PEER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_MAX_SHOWN = 80


@dataclass(frozen=True)
class FieldForm:
    """How one field of one server type is written: form and example (docs/providers.md)."""

    label: str
    form: str
    example: str


FORMS: dict[tuple[str, str], FieldForm] = {
    ("fusionpbx", "domain"): FieldForm(
        "FusionPBX domain field", "tenant | main DID", "mcon.wat7.ictvoip.ca | 5192229000"
    ),
    ("fusionpbx", "billed"): FieldForm(
        "FusionPBX billed field", "extension | extension ...", "2112 | 2113 | 2114"
    ),
    ("vodia", "domain"): FieldForm(
        "Vodia domain field",
        "tenant | DID | DID ...",
        "rucken.wat1.ictvoip.ca | 5484815577 | 5197830020 | 8300",
    ),
    ("vodia", "billed"): FieldForm("Vodia billed field", "DID or extension", "8300"),
    ("lesnet", "domain"): FieldForm(
        "LES.NET domain field", "peer | DID", "D4E3CD2BFC791 | 12046664021"
    ),
    ("lesnet", "billed"): FieldForm("LES.NET billed field", "DID", "12046664021"),
}


def _shown(text: str) -> str:
    # Operator input goes back into a one-line message: keep it short and printable.
    shown = text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."
    return repr(shown)


def _refuse(server_type: str, which: str, text: str, why: str) -> UsageError:
    form = FORMS[(server_type, which)]
    return UsageError(
        f"{form.label} {_shown(text)} does not parse ({why}): "
        f'expected "{form.form}", e.g. "{form.example}"'
    )


def split_field(text: str) -> list[str]:
    """Split a product field on `|`; spaces around the bars are optional."""
    return [part.strip() for part in text.split("|")]


def _check(server_type: str, which: str, text: str, part: str, pattern: re.Pattern, what: str):
    if not part:
        raise _refuse(server_type, which, text, f"{what} is empty")
    if not pattern.fullmatch(part):
        raise _refuse(server_type, which, text, f"{what} {_shown(part)} is not valid")
    return part


def _billed_entries(server_type: str, text: str, pattern: re.Pattern, what: str) -> list[str]:
    if not text.strip():
        return []
    entries = [
        _check(server_type, "billed", text, part, pattern, what) for part in split_field(text)
    ]
    if len(set(entries)) != len(entries):
        raise _refuse(server_type, "billed", text, f"an {what} is listed twice")
    return entries


def _fusionpbx(domain: str, billed: str) -> dict[str, Any]:
    parts = split_field(domain)
    if len(parts) != 2:
        raise _refuse("fusionpbx", "domain", domain, f"{len(parts)} part(s), not 2")
    tenant = _check("fusionpbx", "domain", domain, parts[0], _TENANT, "tenant")
    did = _check("fusionpbx", "domain", domain, parts[1], _DID, "main DID")
    extensions = _billed_entries("fusionpbx", billed, _EXTENSION, "extension")
    return {"tenant": tenant, "main_did": did, "dids": [did], "extensions": extensions}


def _vodia(domain: str, billed: str) -> dict[str, Any]:
    parts = split_field(domain)
    if len(parts) < 2:
        raise _refuse("vodia", "domain", domain, "no DID after the tenant")
    tenant = _check("vodia", "domain", domain, parts[0], _TENANT, "tenant")
    dids = [_check("vodia", "domain", domain, part, _DID, "DID") for part in parts[1:]]
    extensions = _billed_entries("vodia", billed, _EXTENSION, "entry")
    return {"tenant": tenant, "main_did": dids[0], "dids": dids, "extensions": extensions}


def _lesnet(domain: str, billed: str) -> dict[str, Any]:
    parts = split_field(domain)
    if len(parts) != 2:
        raise _refuse("lesnet", "domain", domain, f"{len(parts)} part(s), not 2")
    peer = _check("lesnet", "domain", domain, parts[0], _PEER, "peer")
    did = _check("lesnet", "domain", domain, parts[1], _DID, "DID")
    billed_parts = split_field(billed) if billed.strip() else [did]
    if len(billed_parts) != 1:
        raise _refuse("lesnet", "billed", billed, "one DID expected")
    billed_did = _check("lesnet", "billed", billed, billed_parts[0], _DID, "DID")
    return {"peer_id": peer, "main_did": did, "dids": [did], "extensions": [billed_did]}


_PARSERS = {"fusionpbx": _fusionpbx, "vodia": _vodia, "lesnet": _lesnet}


def parse_fields(server_type: str, domain: str, billed: str | None = "") -> dict[str, Any]:
    """Parse the domain and billed fields of a service on a server of `server_type`.

    Returns the Service columns `tenant`, `peer_id`, `main_did`, `dids` and
    `extensions` (every key present, None or [] where the type has none).
    Raises UsageError (exit 2) naming the expected form and its example.

    Example: parse_fields("fusionpbx", "mcon.wat7.ictvoip.ca | 5192229000", "2112 | 2113")
    """
    parser = _PARSERS.get(server_type)
    if parser is None:
        raise UsageError(
            f"unknown server type {server_type!r} (expected one of {', '.join(SERVER_TYPES)})"
        )
    columns: dict[str, Any] = {
        "tenant": None,
        "peer_id": None,
        "main_did": None,
        "dids": [],
        "extensions": [],
    }
    columns.update(parser(domain or "", billed or ""))
    return columns


def expected_forms(server_type: str) -> str:
    """The forms of both fields of a server type, for help texts and errors."""
    domain = FORMS[(server_type, "domain")]
    billed = FORMS[(server_type, "billed")]
    return (
        f'domain "{domain.form}" (e.g. "{domain.example}"), '
        f'billed "{billed.form}" (e.g. "{billed.example}")'
    )
