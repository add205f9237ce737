"""The `[servers.<name>]` table of a FusionPBX server (config.example.toml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from voipctl.config import PlainInt, ServerBase


class FusionPBXServer(ServerBase):
    type: Literal["fusionpbx"]
    mode: Literal["db", "export"] = "db"
    db_url_env: str | None = None
    url: str = ""
    api_key_env: str | None = None
    esl_host: str = "127.0.0.1"
    esl_port: PlainInt = Field(8021, ge=1, le=65535)
    esl_password_env: str | None = None
    suspend: Literal["gateway", "domain", "extensions"] = "gateway"
    # FusionPBX's cache keys, cleared after a lever writes (docs/providers.md, "FusionPBX:
    # export and caches"). {hostname} / {switchname} are asked of FreeSWITCH.
    sofia_cache_key: str = "{hostname}:configuration:sofia.conf"
    directory_cache_key: str = "directory:{extension}@{user_context}"
    # FusionPBX's file cache directory (cache/location) as voipctl sees it.
    cache_dir: str | None = None

    @field_validator("sofia_cache_key", "directory_cache_key")
    @classmethod
    def _cache_key(cls, value: str, info) -> str:
        import string

        allowed = (
            {"hostname", "switchname"}
            if info.field_name == "sofia_cache_key"
            else {"hostname", "switchname", "extension", "user_context"}
        )
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a key template ({exc})") from None
        unknown = sorted(names - allowed)
        if unknown or not value.strip() or any(c.isspace() for c in value):
            raise ValueError(
                f"{value!r}: a key without spaces, with only "
                + ", ".join("{" + n + "}" for n in sorted(allowed))
            )
        return value
