"""The command lever: suspend and unsuspend by running the operator's own program.

Shared by the providers that have no suspend API (LES.NET, Asterisk / FreePBX):
`suspend_command`/`unsuspend_command` are argv lists run without a shell, with
the service's values filled into `{placeholder}`s. A non-zero exit status, a
missing or non-executable program, or the server's `timeout_s` passing is a
failure; otherwise the command's output (its first 500 characters) is the answer.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from voipctl.errors import ProviderError, ProviderUnavailable


def run_command(
    server: str,
    template: list[str] | None,
    values: Mapping[str, str],
    action: str,
    timeout_s: float,
) -> str:
    """Run `template` with `values` ("{peer}" -> "D4E3") filled in; return what it said."""
    argv = []
    for arg in template or []:
        for placeholder, value in values.items():
            arg = arg.replace(placeholder, value)
        argv.append(arg)
    if not argv:
        raise ProviderError(server, f"no {action}_command configured")
    try:
        done = subprocess.run(  # noqa: S603 - an argv list from the operator's config, no shell
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise ProviderError(server, f"{action} command not found: {argv[0]}") from None
    except PermissionError:
        raise ProviderError(server, f"{action} command not executable: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise ProviderUnavailable(
            server, f"{action} command {argv[0]} timed out after {timeout_s}s"
        ) from None
    output = (done.stdout or "").strip()
    if done.returncode != 0:
        detail = ((done.stderr or "").strip() or output).splitlines()
        last = detail[-1][:200] if detail else ""
        raise ProviderError(
            server,
            f"{action} command {argv[0]} exited {done.returncode}" + (f": {last}" if last else ""),
        )
    return output[:500] or f"{action} command {argv[0]} exited 0"
