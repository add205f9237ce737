"""contrib/systemd runs what crontab.example runs: the same command lines, the same times."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import support

ROOT = support.ROOT
UNITS = ROOT / "contrib" / "systemd"
# cron schedule -> the systemd calendar expression that means the same times.
CALENDAR = {"*/5 * * * *": "*:0/5", "30 23 * * *": "*-*-* 23:30:00", "0 9 * * *": "*-*-* 09:00:00"}


def crontab_jobs() -> list[tuple[str, list[list[str]]]]:
    """(schedule, the command lines of the entry) for each active crontab.example line."""
    jobs = []
    for line in (ROOT / "crontab.example").read_text().splitlines():
        if not line.strip() or line.startswith("#") or "=" in line.split()[0]:
            continue
        fields = line.split(None, 5)
        commands = [shlex.split(part) for part in fields[5].split(";")]
        jobs.append((" ".join(fields[:5]), commands))
    return jobs


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def exec_start(service: Path) -> list[str]:
    argv = shlex.split(unit(service)["Service"]["ExecStart"])
    assert argv[0] == "/usr/local/bin/voipctl", service.name  # the crontab's PATH
    return ["voipctl", *argv[1:]]


def test_every_crontab_line_has_a_timer_running_the_same_commands():
    jobs = crontab_jobs()
    assert len(jobs) == 5
    for schedule, commands in jobs:
        first = commands[0][commands[0].index("--env-file") + 2]
        timer = UNITS / f"voipctl-{first}.timer"
        assert unit(timer)["Timer"]["OnCalendar"] == CALENDAR[schedule], timer.name
        service = UNITS / f"voipctl-{first}.service"
        assert exec_start(service) == commands[0]
        # The rest of the line (`; voipctl rate -q`) runs after it, whatever its status.
        after = service
        for command in commands[1:]:
            job = command[command.index("--env-file") + 2]
            section = unit(after)["Unit"]
            assert f"voipctl-{job}.service" in section["Wants"].split()
            assert f"voipctl-{job}.service" in section["Before"].split()
            after = UNITS / f"voipctl-{job}.service"
            assert exec_start(after) == command


def test_every_unit_is_one_of_the_crontab_jobs():
    jobs = {c[c.index("--env-file") + 2] for _, commands in crontab_jobs() for c in commands}
    services = {p.stem.removeprefix("voipctl-") for p in UNITS.glob("*.service")}
    timers = {p.stem.removeprefix("voipctl-") for p in UNITS.glob("*.timer")}
    assert (
        services
        == jobs
        == {
            "pull-cdrs",
            "rate",
            "autobill",
            "low-balance",
            "auto-topup",
            "autosuspend",
            "status",
        }
    )
    # rate runs after each pull and autosuspend after each auto-topup, as on the crontab lines.
    assert timers == jobs - {"rate", "autosuspend"}


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # verify checks that ExecStart exists: point the copies at this environment's voipctl.
    voipctl = str(Path(sys.executable).with_name("voipctl"))
    for path in UNITS.iterdir():
        text = path.read_text().replace("/usr/local/bin/voipctl", voipctl)
        (tmp_path / path.name).write_text(text)
    proc = subprocess.run(
        [analyze, "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_the_readme_crontab_is_crontab_example():
    # The README writes the crontab out: the same lines, in the same order.
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```crontab\n", 1)[1].split("```", 1)[0]
    active = [
        line
        for line in (ROOT / "crontab.example").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "=" not in line.split()[0]
    ]
    assert block.splitlines() == active
