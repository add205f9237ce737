"""FusionPBX's plugin: its server table, product fields and the gateway extra."""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from voipctl.errors import ConfigError, UsageError
from voipctl.providers.fields import DID, EXTENSION, TENANT, billed_entries, check, refuse
from voipctl.providers.fields import split_field as split
from voipctl.providers.plugin import Extra, FieldForm, Plugin


def _gateway(value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise UsageError(f"--gateway: {value!r} is not a UUID") from None


class FusionPBXPlugin(Plugin):
    type = "fusionpbx"
    config_model = "voipctl.providers.fusionpbx.config:FusionPBXServer"
    forms: ClassVar[dict[str, FieldForm]] = {
        "domain": FieldForm(
            "FusionPBX domain field", "tenant | main DID", "mcon.wat7.ictvoip.ca | 5192229000"
        ),
        "billed": FieldForm(
            "FusionPBX billed field", "extension | extension ...", "2112 | 2113 | 2114"
        ),
    }
    extras = (
        Extra(
            key="gateway_uuid",
            option="--gateway",
            metavar="UUID",
            help="FusionPBX: gateway uuid.",
            whmcs_key="gateway",
            whmcs_field="Gateway UUID",
            shown="gateway",
            label="gateway",
            check=_gateway,
        ),
    )
    lever_extras: ClassVar[dict[str, str]] = {"gateway": "gateway_uuid"}

    @staticmethod
    def parse_fields(domain: str, billed: str) -> dict[str, Any]:
        # `tenant | main DID`, and the billed extensions (none: the whole tenant).
        parts = split(domain)
        if len(parts) != 2:
            raise refuse("fusionpbx", "domain", domain, f"{len(parts)} part(s), not 2")
        tenant = check("fusionpbx", "domain", domain, parts[0], TENANT, "tenant")
        did = check("fusionpbx", "domain", domain, parts[1], DID, "main DID")
        extensions = billed_entries("fusionpbx", billed, EXTENSION, "extension")
        return {"tenant": tenant, "main_did": did, "dids": [did], "extensions": extensions}

    def check_config(self, server: Any, where: str) -> None:
        if server.mode == "db" and not server.db_url_env:
            raise ConfigError(f'{where}.db_url_env: required with mode = "db"')
        if server.mode == "export" and not (server.url and server.api_key_env):
            raise ConfigError(f'{where}: mode = "export" needs url and api_key_env')
        if not server.db_url_env:
            raise ConfigError(
                f'{where}.db_url_env: required: suspend = "{server.suspend}" writes '
                "FusionPBX's database (v_gateways / v_domains / v_extensions)"
            )

    def where(self, server: Any) -> str:
        if server.mode == "db":
            return f"database (${server.db_url_env})"
        return super().where(server)
