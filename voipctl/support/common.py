"""Lookups and display helpers shared by the support views."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voipctl.errors import DataError
from voipctl.store.models import Client

UTC_ZONE = ZoneInfo("UTC")


def client_zone(client: Client) -> ZoneInfo:
    """The client's IANA time zone (clients.timezone); a bad name is a data error."""
    name = (client.timezone or "UTC").strip() or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DataError(
            f"client {client.id}: clients.timezone {name!r} is not an IANA time zone "
            "(e.g. America/Toronto); fix it with `voipctl client set`"
        ) from None


def local_time(value: datetime | None, zone: ZoneInfo) -> str | None:
    """A UTC time as the client reads it, with its offset so a repeated DST hour stays distinct.

    `2026-11-01 01:30:00-04:00` and `2026-11-01 01:30:00-05:00` are two different calls.
    """
    if value is None:
        return None
    return value.astimezone(zone).isoformat(sep=" ")


def utc_iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as JSON shows times."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
