"""The `[servers.<name>]` table of a LES.NET account (config.example.toml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from voipctl.config import Section, ServerBase


def _default_lesnet_columns() -> dict[str, str]:
    return {
        "start": "date",
        "caller": "src",
        "number": "dst",
        "seconds": "duration",
        "peer": "peer",
        "did": "did",
    }


class LesnetCdrFormat(Section):
    delimiter: str = ","
    header: bool = True
    # Column map: field -> header name (with a header) or 0-based index as text (without).
    columns: dict[str, str] = Field(default_factory=_default_lesnet_columns)
    time_format: str = "%Y-%m-%d %H:%M:%S"
    timezone: str = "America/Toronto"
    encoding: str = "utf-8"


class LesnetServer(ServerBase):
    type: Literal["lesnet"]
    url: str = "https://api.les.net/v1"
    api_key_env: str | None = None
    id_key_env: str | None = None
    suspend: Literal["manual", "command"] = "manual"
    suspend_command: list[str] | None = None
    unsuspend_command: list[str] | None = None
    cdr_format: LesnetCdrFormat = Field(default_factory=LesnetCdrFormat)
