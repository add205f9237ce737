"""Set-up shared by the FusionPBX adapter tests: tenants, a service on them, a db-mode server."""

from __future__ import annotations

from voipctl.config import FusionPBXServer
from voipctl.providers.base import ServiceInfo

TENANT = "mcon.wat7.ictvoip.ca"
OTHER = "other.wat7.ictvoip.ca"


def service(**overrides) -> ServiceInfo:
    """Service 7 of client 42 on fusion1: TENANT, extensions 2112 and 2113, DID 5192229000."""
    values = {
        "id": 7,
        "client_id": 42,
        "server": "fusion1",
        "tenant": TENANT,
        "main_did": "5192229000",
        "dids": ("5192229000",),
        "extensions": ("2112", "2113"),
    }
    return ServiceInfo(**{**values, **overrides})


def db_mode_config(monkeypatch, url: str, **overrides) -> FusionPBXServer:
    """fusion1 in `mode = "db"`, its database URL in the environment as an operator sets it."""
    monkeypatch.setenv("FUSION1_DB_URL", url)
    values = {"type": "fusionpbx", "mode": "db", "db_url_env": "FUSION1_DB_URL", **overrides}
    return FusionPBXServer(**values)
