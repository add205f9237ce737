"""FusionPBX's caches, cleared the way FusionPBX clears them when it toggles the same rows.

FusionPBX's Lua XML handler serves FreeSWITCH `sofia.conf` (the gateways) and the
`directory` (the extensions) from a cache; FusionPBX's web UI deletes the entry
after it writes the row (`app/gateways/resources/classes/gateways.php` toggle:
`gethostname():configuration:sofia.conf`; `app/extensions/resources/classes/
extension.php` toggle: `directory:EXT@USER_CONTEXT`), through
`resources/classes/cache.php`:

- `cache/method = memcache`: the event socket's `memcache delete KEY` (the key as
  it is, colons kept); FreeSWITCH's mod_memcache answers `+OK` or
  `-ERR NOT FOUND` when nothing was cached;
- `cache/method = file` (the default): the file `cache/location/KEY` with every
  `:` made a `.`, and `KEY.tmp` beside it.

The method, the location and `switch/sip_profiles` are read from
`v_default_settings`. A non-empty `switch/sip_profiles` means FusionPBX also writes
each enabled gateway as an XML file there (`save_gateway_xml()`,
`resources/switch.php`), which voipctl does not write: the gateway lever is
refused on such an install.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection

from voipctl.errors import ProviderError
from voipctl.providers.fusionpbx.config import FusionPBXServer
from voipctl.providers.fusionpbx.esl import EslClient

log = logging.getLogger(__name__)

# FusionPBX's defaults (core/default_settings/app_config.php; cache.php's constructor).
DEFAULT_METHOD = "file"
DEFAULT_LOCATION = "/var/cache/fusionpbx"


@dataclass(frozen=True)
class CacheSettings:
    """What v_default_settings says about the cache and the gateway XML files."""

    method: str = DEFAULT_METHOD
    location: str = DEFAULT_LOCATION
    sip_profiles: str = ""


def read_settings(conn: Connection) -> CacheSettings | None:
    """The enabled cache/method, cache/location and switch/sip_profiles; None without the table."""
    present = conn.execute(
        text(
            "SELECT data_type FROM information_schema.columns WHERE table_schema ="
            " current_schema() AND table_name = 'v_default_settings'"
            " AND column_name = 'default_setting_enabled'"
        )
    ).scalar()
    if present is None:
        return None
    # The flag is boolean since FusionPBX 5.x, the text 'true'/'false' before.
    enabled = (
        "default_setting_enabled" if present == "boolean" else "default_setting_enabled = 'true'"
    )
    rows = conn.execute(
        text(
            "SELECT default_setting_category, default_setting_subcategory,"
            " default_setting_value FROM v_default_settings"
            f" WHERE {enabled} AND ("  # noqa: S608 - one of two fixed texts
            " (default_setting_category = 'cache'"
            "  AND default_setting_subcategory IN ('method', 'location'))"
            " OR (default_setting_category = 'switch'"
            "  AND default_setting_subcategory = 'sip_profiles'))"
            " ORDER BY default_setting_order NULLS FIRST"
        )
    ).all()
    values = {(row[0], row[1]): (row[2] or "").strip() for row in rows}
    return CacheSettings(
        method=values.get(("cache", "method")) or DEFAULT_METHOD,
        location=values.get(("cache", "location")) or DEFAULT_LOCATION,
        sip_profiles=values.get(("switch", "sip_profiles"), ""),
    )


def refusal(name: str, config: FusionPBXServer, settings: CacheSettings | None) -> str | None:
    """Why this install's levers cannot take effect at once (one line), or None."""
    if settings is None:
        return None
    where = f"servers.{name}"
    if config.suspend == "gateway" and settings.sip_profiles:
        return (
            f'{where}: suspend = "gateway" is refused: FusionPBX writes its gateways as XML '
            f"files in {settings.sip_profiles} (switch/sip_profiles in v_default_settings; "
            "save_gateway_xml()), which voipctl cannot write, so a rescan would bring a "
            'suspended gateway back; disable that setting or use suspend = "domain"'
        )
    if config.suspend == "domain":
        return None
    if settings.method == "memcache":
        return None
    if settings.method != "file":
        return f"{where}: FusionPBX's cache/method {settings.method!r} is neither memcache nor file"
    if not config.cache_dir:
        return (
            f"{where}.cache_dir: FusionPBX caches in files at {settings.location} "
            "(cache/location); set cache_dir to that directory as voipctl sees it "
            "(same host or a mount), or switch FusionPBX's cache/method to memcache"
        )
    if not Path(config.cache_dir).is_dir():
        return f"{where}.cache_dir: {config.cache_dir} is not a directory"
    return None


class CacheClearer:
    """Deletes the cache entries a lever made stale; `esl` is connected when needed."""

    def __init__(self, name: str, config: FusionPBXServer, settings: CacheSettings):
        self.name = name
        self.config = config
        self.settings = settings
        self._names: dict[str, str] = {}

    def _switch_name(self, esl: EslClient, which: str) -> str:
        # The Lua handler that reads the cache keys sofia.conf by FreeSWITCH's
        # `hostname`; FusionPBX's older PHP cleared it by `switchname`.
        if which not in self._names:
            self._names[which] = esl.api(which).strip()
        return self._names[which]

    def _key(self, esl: EslClient, template: str, **values: str) -> str:
        for which in ("hostname", "switchname"):
            if "{" + which + "}" in template:
                values[which] = self._switch_name(esl, which)
        return template.format(**values)

    def sofia_conf(self, esl: EslClient) -> str:
        """Clear the cached sofia.conf; a short note of what was done."""
        return self._delete(esl, [self._key(esl, self.config.sofia_cache_key)])

    def directory(self, esl: EslClient, extensions: list[tuple[str, str]]) -> str:
        """Clear the cached directory entries of (extension, user_context) pairs."""
        keys = [
            self._key(esl, self.config.directory_cache_key, extension=ext, user_context=ctx)
            for ext, ctx in extensions
        ]
        return self._delete(esl, keys)

    def _delete(self, esl: EslClient, keys: list[str]) -> str:
        if self.settings.method == "memcache":
            for key in keys:
                try:
                    esl.api(f"memcache delete {key}")
                except ProviderError as exc:
                    if "NOT FOUND" not in str(exc):
                        raise
            return f"memcache cleared: {', '.join(keys)}"
        root = Path(self.config.cache_dir or self.settings.location)
        for key in keys:
            path = root / key.replace(":", ".").replace("/", "_").replace("\\", "_")
            for victim in (path, path.with_name(path.name + ".tmp")):
                try:
                    victim.unlink(missing_ok=True)
                except OSError as exc:
                    raise ProviderError(
                        self.name, f"cannot clear FusionPBX's cache file {victim}: {exc.strerror}"
                    ) from None
        return f"file cache cleared: {', '.join(keys)}"
