"""Asterisk / FreePBX's plugin: its server table and product fields."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from voipctl.errors import ConfigError, UsageError
from voipctl.providers.fields import DID, EXTENSION, check, refuse
from voipctl.providers.fields import split_field as split
from voipctl.providers.matching import did_key
from voipctl.providers.plugin import FieldForm, Plugin

# FreePBX's extension "accountcode" setting, written in each CDR's accountcode
# column (cdr.accountcode is VARCHAR(80) in FreePBX/framework installlib/SQL/cdr.sql).
_ACCOUNTCODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,79}")


class AsteriskPlugin(Plugin):
    type = "asterisk"
    config_model = "voipctl.providers.asterisk.config:AsteriskServer"
    forms: ClassVar[dict[str, FieldForm]] = {
        "domain": FieldForm("Asterisk domain field", "accountcode | DID", "acme | 12045550100"),
        "billed": FieldForm("Asterisk billed field", "extension | ...", "101 | 102"),
    }
    manual_sample: ClassVar[dict[str, str] | None] = {
        "server": "pbx1",
        "instructions": "disable the outbound routes of accountcode acme on the PBX",
    }

    @staticmethod
    def parse_fields(domain: str, billed: str) -> dict[str, Any]:
        # `accountcode | DID`, and the extensions billed (none: every call of the accountcode).
        parts = split(domain)
        if len(parts) != 2:
            raise refuse("asterisk", "domain", domain, f"{len(parts)} part(s), not 2")
        code = check("asterisk", "domain", domain, parts[0], _ACCOUNTCODE, "accountcode")
        did = check("asterisk", "domain", domain, parts[1], DID, "DID")
        extensions = []
        if billed.strip():
            for part in split(billed):
                extensions.append(check("asterisk", "billed", billed, part, EXTENSION, "extension"))
        return {"peer_id": code, "main_did": did, "dids": [did], "extensions": extensions}

    def check_config(self, server: Any, where: str) -> None:
        if server.source == "csv" and not server.path:
            raise ConfigError(f'{where}: source = "csv" needs path (the Master.csv to read)')
        if server.source == "table" and not server.db_url_env:
            raise ConfigError(
                f'{where}: source = "table" needs db_url_env (the variable holding the '
                "database URL)"
            )
        if server.suspend == "command" and not (
            server.suspend_command and server.unsuspend_command
        ):
            raise ConfigError(
                f'{where}: suspend = "command" needs suspend_command and unsuspend_command'
            )

    def claims(self, service: Any, others: Sequence[Any]) -> None:
        """An accountcode or a DID belongs to one active service of a server.

        Calls are matched by accountcode, then inbound ones by DID: a second service
        on either would bill the calls of the first.
        """
        if service.server_type != "asterisk":
            return
        code = (service.peer_id or "").casefold()
        mine = {did_key(n): n for n in service.dids or []}
        mine.pop("", None)
        for other in others:
            if other.server_type != "asterisk":
                continue
            who = f"service {other.id} (client {other.client_id})"
            where = f"on server {service.server}: calls would be billed twice"
            if code and (other.peer_id or "").casefold() == code:
                raise UsageError(f"{who} already bills accountcode {other.peer_id} {where}")
            for number in other.dids or []:
                if did_key(number) in mine:
                    raise UsageError(f"{who} already bills DID {number} {where}")
