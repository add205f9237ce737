"""The `[servers.<name>]` table of a Vodia PBX (config.example.toml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from voipctl.config import Section, ServerBase


def _default_vodia_columns() -> dict[str, str]:
    # The webcdr names (https://doc.vodia.com/docs/webcdr); extensions/trunks are guesses.
    return {
        "id": "callid",
        "caller": "from",
        "number": "to",
        "start": "start",
        "connect": "connect",
        "end": "end",
        "extensions": "extensions",
        "trunks": "trunks",
    }


class VodiaCdrFormat(Section):
    # Column map: field -> the key of a Vodia CDR item. `id` is the dedupe key: it is
    # recorded for the server at its first pull and may not change afterwards.
    columns: dict[str, str] = Field(default_factory=_default_vodia_columns)

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        known = _default_vodia_columns()
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(known))})")
        merged = {**known, **value}
        for field, key in merged.items():
            if not isinstance(key, str) or not key.strip():
                raise ValueError(f"{field}: a CDR key name is required")
        return merged


class VodiaServer(ServerBase):
    type: Literal["vodia"]
    url: str
    auth: Literal["basic", "session"] = "basic"
    username: str = "admin"
    password_env: str | None = None
    suspend: Literal["trunk", "extension"] = "trunk"
    cdr_format: VodiaCdrFormat = Field(default_factory=VodiaCdrFormat)
