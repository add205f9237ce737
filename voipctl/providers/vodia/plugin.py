"""Vodia's plugin: its server table, product fields and the trunk / caller extras."""

from __future__ import annotations

from typing import Any, ClassVar

from voipctl.providers.fields import DID, EXTENSION, TENANT, billed_entries, check, refuse
from voipctl.providers.fields import split_field as split
from voipctl.providers.plugin import Extra, FieldForm, Plugin


class VodiaPlugin(Plugin):
    type = "vodia"
    config_model = "voipctl.providers.vodia.config:VodiaServer"
    forms: ClassVar[dict[str, FieldForm]] = {
        "domain": FieldForm(
            "Vodia domain field",
            "tenant | DID | DID ...",
            "rucken.wat1.ictvoip.ca | 5484815577 | 5197830020 | 8300",
        ),
        "billed": FieldForm("Vodia billed field", "DID or extension", "8300"),
    }
    extras = (
        Extra(
            key="trunk_id",
            option="--trunk",
            metavar="ID",
            help="Vodia: trunk id.",
            whmcs_key="trunk",
            whmcs_field="Trunk ID",
            shown="trunk",
            label="trunk",
        ),
        Extra(
            key="first_name",
            option="--first-name",
            metavar="NAME",
            help="Vodia: first name.",
            whmcs_key="first_name",
            whmcs_field="First Name",
            shown="first_name",
            label="first name",
        ),
        Extra(
            key="inbound_search",
            option="--inbound-search",
            metavar="S",
            help="Vodia: inbound search string.",
            whmcs_key="inbound_search",
            whmcs_field="Inbound Search",
            shown="inbound_search",
            label="inbound search",
        ),
    )
    lever_extras: ClassVar[dict[str, str]] = {"trunk": "trunk_id"}

    @staticmethod
    def parse_fields(domain: str, billed: str) -> dict[str, Any]:
        # `tenant | DID | DID ...`, and the billed DIDs or extensions.
        parts = split(domain)
        if len(parts) < 2:
            raise refuse("vodia", "domain", domain, "no DID after the tenant")
        tenant = check("vodia", "domain", domain, parts[0], TENANT, "tenant")
        dids = [check("vodia", "domain", domain, part, DID, "DID") for part in parts[1:]]
        extensions = billed_entries("vodia", billed, EXTENSION, "entry")
        return {"tenant": tenant, "main_did": dids[0], "dids": dids, "extensions": extensions}
