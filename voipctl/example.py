"""The shipped example configuration, config.example.toml, as `voipctl init` uses it.

The example file is the one source of the server tables: `init` copies its general
sections and, for each server asked for, the example table of that type, renamed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from voipctl.errors import ConfigError, UsageError

EXAMPLE_NAME = "config.example.toml"
# A server name is a TOML bare key, and the start of its secrets' variable names.
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_HEADER = re.compile(r"^\[([^\]]+)\]\s*(#.*)?$")


def example_path() -> Path:
    """The example beside the package (a source checkout), else where a wheel put it
    (share/voipctl under the environment's prefix, or the user's for `pip install --user`)."""
    import site

    candidates = (
        Path(__file__).resolve().parent.parent / EXAMPLE_NAME,
        Path(sys.prefix) / "share" / "voipctl" / EXAMPLE_NAME,
        Path(site.USER_BASE or "~/.local").expanduser() / "share" / "voipctl" / EXAMPLE_NAME,
    )
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"{EXAMPLE_NAME} not found (looked in {', '.join(map(str, candidates))})")


@dataclass(frozen=True)
class Chunk:
    """A table of the example: its header line and the lines up to the next header."""

    table: str  # "" for the lines before the first header
    text: str

    @property
    def server(self) -> str | None:
        parts = self.table.split(".")
        return parts[1] if parts[0] == "servers" and len(parts) > 1 else None


def chunks(text: str) -> list[Chunk]:
    found: list[Chunk] = []
    table, lines = "", []
    for line in text.splitlines(keepends=True):
        match = _HEADER.match(line)
        if match:
            found.append(Chunk(table, "".join(lines)))
            table, lines = match.group(1).strip(), []
        lines.append(line)
    found.append(Chunk(table, "".join(lines)))
    return found


def env_prefix(name: str) -> str:
    """The start of a server's variable names: `fusion1` -> `FUSION1_`, `pbx-a` -> `PBX_A_`."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_"


def parse_server_spec(spec: str) -> tuple[str, str]:
    """`TYPE:NAME` of `init --server`; raises UsageError naming the option."""
    from voipctl.providers import server_types

    kind, sep, name = spec.partition(":")
    if not sep or kind not in server_types() or not _NAME.match(name):
        raise UsageError(
            f"init: --server {spec!r}: expected TYPE:NAME, TYPE one of "
            f"{', '.join(server_types())}, NAME of letters, digits, _ and -"
        )
    return kind, name


def server_block(example: list[Chunk], kind: str, name: str) -> str:
    """The example's table of type `kind` (with its subtables), renamed to `name`."""
    source = next(
        (c.server for c in example if c.server and re.search(rf'^type = "{kind}"', c.text, re.M)),
        None,
    )
    if source is None:
        raise ConfigError(f"{EXAMPLE_NAME}: no example server of type {kind!r}")
    old_prefix, new_prefix = env_prefix(source), env_prefix(name)
    out = []
    for chunk in example:
        if chunk.server != source:
            continue
        text = chunk.text.replace(f"[servers.{source}", f"[servers.{name}", 1)
        text = re.sub(
            rf'^(\w+_env\s*=\s*"){re.escape(old_prefix)}', rf"\g<1>{new_prefix}", text, flags=re.M
        )
        if re.search(r'^mode = "db"', text, re.M):
            # Keys the example marks "export mode:" are unused in db mode: their secret too.
            text = re.sub(r"^(\w+ = .*#\s*export mode:)", r"# \1", text, flags=re.M)
        out.append(text)
    return "".join(out)


def render_config(servers: list[tuple[str, str]], *, db_url: str | None = None) -> str:
    """The text of a voipctl.toml: the example's general tables and the servers named."""
    example = chunks(example_path().read_text(encoding="utf-8"))
    parts = []
    quoted = (db_url or "").replace("\\", "\\\\").replace('"', '\\"')
    for chunk in example:
        if chunk.server is not None:
            continue
        text = chunk.text
        if chunk.table == "database" and db_url:
            text = re.sub(r'^url = ".*"$', lambda _: f'url = "{quoted}"', text, flags=re.M)
        parts.append(text)
    body = "".join(parts).rstrip("\n") + "\n"
    for kind, name in servers:
        body += "\n" + server_block(example, kind, name).rstrip("\n") + "\n"
    return body


def named_secrets(text: str) -> list[tuple[str, str, str]]:
    """The secrets a configuration text names: (dotted key, variable, the key's comment)."""
    from voipctl.config import Config

    config = Config.model_validate(tomllib.loads(text))
    sections: list[tuple[str, object]] = [("email", config.email)]
    if config.billing.backend == "whmcs":
        sections.append(("whmcs", config.whmcs))
    sections += [(f"servers.{n}", s) for n, s in config.servers.items()]
    found = []
    for prefix, section in sections:
        for key, value in section:
            if key.endswith("_env") and value:
                comment = re.search(rf'^{key}\s*=\s*"{re.escape(value)}"\s*#\s*(.*)$', text, re.M)
                found.append((f"{prefix}.{key}", value, comment.group(1) if comment else ""))
    return found


def render_env(secrets: list[tuple[str, str, str]], config_name: str) -> str:
    lines = [
        f"# The secrets {config_name} names. Fill in each value and remove the leading '#':",
        "# a line left commented is unset, and `voipctl doctor` names it.",
    ]
    for key, name, comment in secrets:
        lines += ["", f"# {key}" + (f": {comment}" if comment else ""), f"#{name}="]
    return "\n".join(lines) + "\n"
