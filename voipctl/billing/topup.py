"""Taking an automatic top-up's money (docs/topup.md): the request, its outcome, and
the local backend's charge command.

An outcome is "paid" (charged; the credit is posted with the request's
reference), "declined" (not charged) or "unknown" (maybe charged: the request
is only ever tried again under the same reference).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from decimal import Decimal

from voipctl import money
from voipctl.config import Config
from voipctl.errors import ConfigError

PAID = "paid"
DECLINED = "declined"
UNKNOWN = "unknown"
PENDING = "pending"

# What is kept of a command's stderr or stdout line.
DETAIL_MAX = 500


@dataclass(frozen=True)
class TopupRequest:
    """One recorded attempt, as the backend sees it."""

    attempt_id: int
    client_id: int
    reference: str
    amount: Decimal
    step: str | None = None
    external_id: str | None = None


@dataclass(frozen=True)
class TopupOutcome:
    status: str  # paid | declined | unknown
    detail: str = ""


def check_command(config: Config) -> list[str]:
    """The configured charge command; ConfigError (exit 2) before any decision if unusable."""
    command = config.topup.command
    where = f"{config.source}: topup.command"
    if not command:
        raise ConfigError(
            f'{where}: required to take top-ups with [billing] backend = "local" '
            '(e.g. command = ["/usr/local/sbin/charge-card", "{client_id}", "{amount}", '
            '"{reference}"])'
        )
    program = command[0]
    if os.sep in program and not os.access(program, os.X_OK):
        raise ConfigError(f"{where}: {program} is not an executable file")
    return command


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:DETAIL_MAX] if lines else ""


def run_command(config: Config, request: TopupRequest) -> TopupOutcome:
    """Run the charge command for one request: exit 0 paid, 1 declined, anything else unknown."""
    command = check_command(config)
    values = {
        "client_id": str(request.client_id),
        "amount": money.fmt(request.amount, 2),
        "reference": request.reference,
    }
    argv = [arg.format(**values) for arg in command]
    timeout = config.topup.timeout_s
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return TopupOutcome(UNKNOWN, f"the charge command timed out after {timeout:g} s")
    except OSError as exc:
        return TopupOutcome(UNKNOWN, f"the charge command could not be run: {exc.strerror}")
    if done.returncode == 0:
        return TopupOutcome(PAID, _last_line(done.stdout))
    if done.returncode == 1:
        return TopupOutcome(DECLINED, _last_line(done.stderr) or "declined (exit 1)")
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        why = f"the charge command was killed by {name}"
    else:
        why = f"the charge command exited {done.returncode}"
    last = _last_line(done.stderr)
    return TopupOutcome(UNKNOWN, f"{why}: {last}" if last else why)
