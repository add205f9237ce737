"""FreeSWITCH's `memcache`, `hostname` and `switchname` api commands, for FakeEslServer.

Pass `MemcacheFake(...).replies()` as FakeEslServer's `replies`. The reply texts:

- `memcache delete KEY`: `+OK\\n` when the key was there, `-ERR NOT FOUND\\n` when not
  (source: signalwire/freeswitch src/mod/applications/mod_memcache/mod_memcache.c,
  memcache_function(): `+OK\\n` on MEMCACHED_SUCCESS, else `-ERR %s\\n` with
  memcached_strerror(), which is "NOT FOUND" for MEMCACHED_NOTFOUND, the text
  FusionPBX's resources/functions/cache.lua Cache.del() compares with);
- `hostname` / `switchname`: the name with no line break (source: signalwire/freeswitch
  src/mod/applications/mod_commands/mod_commands.c, hostname_api_function() and
  switchname_api_function(), `"%s"`).
"""

from __future__ import annotations

from collections.abc import Callable


class MemcacheFake:
    """A memcache the fake event socket's `memcache delete` acts on."""

    def __init__(self, entries: dict[str, str], hostname: str, switchname: str | None = None):
        self.entries = dict(entries)
        self.hostname = hostname
        self.switchname = switchname or hostname
        self.deleted: list[str] = []

    def _memcache(self, command: str) -> str:
        _, sub, *args = command.split(" ")
        if sub == "delete" and args:
            self.deleted.append(args[0])
            if self.entries.pop(args[0], None) is None:
                return "-ERR NOT FOUND\n"
            return "+OK\n"
        return "-ERR\n"

    def replies(self, keys: list[str]) -> dict[str, str | Callable[[str], str]]:
        """Replies for `memcache delete` of each of `keys`, `hostname` and `switchname`."""
        found: dict[str, str | Callable[[str], str]] = {
            "hostname": self.hostname,
            "switchname": self.switchname,
        }
        for key in keys:
            found[f"memcache delete {key}"] = self._memcache
        return found
