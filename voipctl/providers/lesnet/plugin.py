"""LES.NET's plugin: its server table, product fields and the CDR link extra."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from voipctl.errors import ConfigError, UsageError
from voipctl.providers.fields import DID, check, refuse
from voipctl.providers.fields import split_field as split
from voipctl.providers.matching import did_key
from voipctl.providers.plugin import Extra, FieldForm, Plugin
from voipctl.redact import redact_url

_PEER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _cdr_link(link: str) -> str:
    """Refuse a CDR link that could never be read (`https://...` pasted from an example).

    Found at `service add` rather than at 2 a.m. in pull-cdrs. The query string is
    never shown: LES.NET links can carry a key there.
    """
    if "://" not in link:
        return link  # a local path
    parts = urlsplit(link)
    scheme = parts.scheme.lower()
    shown = redact_url(link)
    if scheme == "file":
        return link
    if scheme not in ("http", "https"):
        raise UsageError(
            f"--cdr-link {shown}: {parts.scheme}:// links are not read "
            "(https://, http://, file:///PATH or a local path)"
        )
    try:
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        host.encode("idna")
    except (ValueError, UnicodeError):
        host = ""
    if not host or not all(host.split(".")):
        raise UsageError(f"--cdr-link {shown}: not a URL with a host name")
    return link


class LesnetPlugin(Plugin):
    type = "lesnet"
    config_model = "voipctl.providers.lesnet.config:LesnetServer"
    forms: ClassVar[dict[str, FieldForm]] = {
        "domain": FieldForm("LES.NET domain field", "peer | DID", "D4E3CD2BFC791 | 12046664021"),
        "billed": FieldForm("LES.NET billed field", "DID", "12046664021"),
    }
    # LES.NET publishes its CDRs a day at a time: pulled, and checked, daily.
    pull_interval_minutes: ClassVar[int | None] = 24 * 60
    manual_sample: ClassVar[dict[str, str] | None] = {
        "server": "lesnet",
        "instructions": "disable peer D4E3CD2BFC791 in the LES.NET portal",
    }
    extras = (
        Extra(
            key="cdr_link",
            option="--cdr-link",
            metavar="URL",
            help="LES.NET: CDR link.",
            whmcs_key="cdr_link",
            whmcs_field="CDR Link",
            shown="cdr_link",
            label="CDR link",
            check=_cdr_link,
            secret=True,
        ),
    )

    @staticmethod
    def parse_fields(domain: str, billed: str) -> dict[str, Any]:
        # `peer | DID`, and the one billed DID (none: the domain's).
        parts = split(domain)
        if len(parts) != 2:
            raise refuse("lesnet", "domain", domain, f"{len(parts)} part(s), not 2")
        peer = check("lesnet", "domain", domain, parts[0], _PEER, "peer")
        did = check("lesnet", "domain", domain, parts[1], DID, "DID")
        billed_parts = split(billed) if billed.strip() else [did]
        if len(billed_parts) != 1:
            raise refuse("lesnet", "billed", billed, "one DID expected")
        billed_did = check("lesnet", "billed", billed, billed_parts[0], DID, "DID")
        return {"peer_id": peer, "main_did": did, "dids": [did], "extensions": [billed_did]}

    def check_config(self, server: Any, where: str) -> None:
        if server.suspend == "command" and not (
            server.suspend_command and server.unsuspend_command
        ):
            raise ConfigError(
                f'{where}: suspend = "command" needs suspend_command and unsuspend_command'
            )

    def check_inputs(self, store: Any, server_name: str) -> dict[str, Any]:
        # The head of each active service's CDR link is read too.
        if store is None:
            return {"links": []}
        from sqlalchemy import select

        from voipctl.store.models import Service

        with store.transaction() as session:
            services = session.scalars(
                select(Service).where(Service.server == server_name, Service.active.is_(True))
            )
            return {"links": sorted({s.cdr_link for s in services if s.cdr_link})}

    def claims(self, service: Any, others: Sequence[Any]) -> None:
        """A LES.NET peer or DID belongs to one active service of a server.

        Calls are matched by peer, then by DID (`did_key`: digits only, a NANP leading
        1 dropped, so `12045550123`, `+12045550123` and `2045550123` are one number):
        a second service on either would bill calls of the first, or none.
        """
        if service.server_type != "lesnet":
            return
        peer = (service.peer_id or "").casefold()
        mine = {did_key(n): n for n in (*(service.dids or []), *(service.extensions or []))}
        mine.pop("", None)
        for other in others:
            if other.server_type != "lesnet":
                continue
            who = f"service {other.id} (client {other.client_id})"
            where = f"on server {service.server}: calls would be billed twice"
            if peer and (other.peer_id or "").casefold() == peer:
                raise UsageError(f"{who} already bills LES.NET peer {other.peer_id} {where}")
            for number in (*(other.dids or []), *(other.extensions or [])):
                typed = mine.get(did_key(number))
                if typed is None:
                    continue
                same = "" if typed == number else f" (the same number as {typed})"
                raise UsageError(f"{who} already bills DID {number}{same} {where}")
