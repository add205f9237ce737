"""What a tired operator types at 2 a.m.: each mistake is one clear line and the right exit status.

Exit statuses are docs/cli.md's: 0 done, 1 failures or data error, 2 usage or configuration,
75 lock held (and 130 for Ctrl-C, as a shell reports it). Never a traceback, never a
half-written row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.providers.lesnet.test_lesnet import make, svc, write
from tests.support import ROOT
from tests.support.rejects import strict
from voipctl.cli import run
from voipctl.cli.app import App
from voipctl.errors import ProviderDataError, ProviderError
from voipctl.providers.http import HttpClient

LESNET = """
[servers.lesnet]
type = "lesnet"
retries = 0
"""


def _config(tmp_path: Path, body: str = LESNET) -> Path:
    path = tmp_path / "voipctl.toml"
    path.write_text(body)
    path.chmod(0o600)
    return path


def _client_and_product(cli) -> None:
    assert cli("product", "add", "Standard").exit_code == 0
    args = ("client", "add", "42", "--first-name", "Ann", "--last-name", "Lee")
    assert cli(*args, "--email", "ann@example.com", "--timezone", "America/Toronto").exit_code == 0


def _no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("https://...", "--cdr-link https://...: not a URL with a host name"),
        ("https://a..b/cdr.txt?key=s3cret", "--cdr-link https://a..b/cdr.txt?***: not a URL"),
        ("ftp://portal.les.net/cdr.txt", "ftp:// links are not read"),
    ],
)
def test_a_cdr_link_that_can_never_be_read_is_refused_at_service_add(cli, tmp_path, link, message):
    # `https://...` copied from an example used to be stored, then crashed
    # `server check` and pull-cdrs with a UnicodeError traceback.
    config = _config(tmp_path)
    _client_and_product(cli)
    result = cli(
        "service", "add", "--client", "42", "--product", "Standard", "--server", "lesnet",
        "--domain", "D4E3CD2BFC791 | 12046664021", "--cdr-link", link, config=config,
    )  # fmt: skip
    assert result.exit_code == 2
    assert message in result.stderr
    assert "s3cret" not in result.stderr
    _no_traceback(result)
    listed = cli("service", "list", "--format", "json", config=config)
    assert listed.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "link", ["https://portal.les.net/cdr/11330_0000.txt", "file:///srv/cdr.txt", "/srv/cdr.txt"]
)
def test_real_cdr_links_are_kept(cli, tmp_path, link):
    config = _config(tmp_path)
    _client_and_product(cli)
    result = cli(
        "service", "add", "--client", "42", "--product", "Standard", "--server", "lesnet",
        "--domain", "D4E3CD2BFC791 | 12046664021", "--cdr-link", link, "--format", "json",
        config=config,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert f'"cdr_link": "{link}"' in result.stdout


def test_an_unencodable_host_is_a_provider_error_without_retries():
    client = HttpClient("lesnet", "", retries=3, backoff_s=60.0)  # a retry would hang the test
    with (
        pytest.raises(ProviderError, match=r"^lesnet: not a valid URL on GET /cdr.txt"),
        client.stream("GET", "https://.../cdr.txt?key=s3cret"),
    ):
        pass
    with pytest.raises(ProviderError, match="not a valid URL"):
        client.request("GET", "https://a..b/x")


def test_a_bad_duration_in_a_lesnet_file_names_the_line_and_the_value(tmp_path):
    path = write(
        tmp_path,
        "2026-11-20 09:15:02,12046664021,15195550100,65,D4E3CD2BFC791,12046664021",
        "2026-11-20 10:15:02,12046664021,15195550101,6x5,D4E3CD2BFC791,12046664021",
    )
    adapter = make()
    with pytest.raises(ProviderDataError) as err:
        strict(adapter, adapter.fetch_cdrs(svc(link=str(path)), *_window()))
    assert str(err.value).endswith("line 3: seconds '6x5' is not a duration (column duration)")


def test_a_bad_epoch_time_in_a_lesnet_file_names_the_value(tmp_path):
    fmt = {"time_format": "epoch"}
    path = write(tmp_path, "17x9,12046664021,15195550100,65,D4E3CD2BFC791,12046664021")
    adapter = make(fmt)
    with pytest.raises(ProviderDataError, match=r"line 2: time '17x9' is not epoch seconds"):
        strict(adapter, adapter.fetch_cdrs(svc(link=str(path)), *_window()))


def _window():
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "argv",
    [
        ("autobill", "--client", "999"),
        ("autobill", "--dry-run", "--client", "999"),
        ("rate", "--client", "999"),
        ("pull-cdrs", "--client", "999"),
        ("invoice", "list", "--client", "999"),
        ("service", "list", "--client", "999"),
    ],
)
def test_a_mistyped_client_id_is_refused_not_a_silent_success(cli, argv):
    result = cli(*argv)
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "voipctl: error: no client 999 (add it with `voipctl client add 999 ...`)"
    )


def test_invoice_list_shows_the_paid_time_in_the_clients_zone_like_invoice_show(cli):
    _client_and_product(cli)
    assert cli("invoice", "add", "42", "3.50", "--number", "1001").exit_code == 0
    shown = cli("invoice", "pay", "1001").stdout
    paid_local = next(line for line in shown.splitlines() if line.startswith("paid_at"))
    paid_local = paid_local.split(":", 1)[1].strip()
    listed = cli("invoice", "list", "--client", "42").stdout
    assert paid_local in listed
    utc = cli("invoice", "list", "--format", "json").stdout
    assert '"paid_at": "' in utc and 'Z"' in utc


def test_a_sqlite_path_that_does_not_exist_is_named_and_not_created(tmp_path, capsys):
    target = tmp_path / "typo" / "voipctl.db"
    code = run(["--db", f"sqlite:///{target}", "balance", "42"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"voipctl: error: the database sqlite:///{target} does not exist: check the URL, "
        "or run `voipctl db upgrade` to create it"
    )
    assert not target.parent.exists()
    # db upgrade is the command that creates it.
    assert run(["--db", f"sqlite:///{target}", "db", "upgrade"]) == 0
    assert target.exists()


def test_an_unreachable_database_is_one_line_naming_it_without_the_password(capsys):
    code = run(["-vv", "--db", "postgresql+psycopg://voipctl:s3cret@127.0.0.1:1/x", "balance", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        "voipctl: error: cannot open the database postgresql+psycopg://voipctl:***@127.0.0.1:1/x:"
        in err
    )
    assert "s3cret" not in err
    assert "Traceback" not in err


def test_ctrl_c_is_interrupted_with_status_130(cli, monkeypatch):
    def interrupted(self, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(App, "store", interrupted)
    result = cli("balance", "42")
    assert result.exit_code == 130
    assert "voipctl: error: interrupted" in result.stderr
    _no_traceback(result)


def test_an_unexpected_error_is_one_line_and_exit_1(cli, monkeypatch):
    def broken(self, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(App, "store", broken)
    result = cli("balance", "42")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "voipctl: error: internal error: RuntimeError: boom (run with -v for the traceback)"
    )
    verbose = cli("-v", "balance", "42")
    assert "Traceback" in verbose.stderr


def test_doctor_counts_each_secret_variable_once(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SHARED_VODIA_PASSWORD", "s3cret")
    body = "".join(
        f'[servers.vodia{n}]\ntype = "vodia"\nurl = "http://127.0.0.1:1"\nretries = 0\n'
        f'timeout_s = 1\npassword_env = "SHARED_VODIA_PASSWORD"\n'
        for n in (1, 2)
    )
    result = cli("doctor", config=_config(tmp_path, body))
    secrets = next(line for line in result.stdout.splitlines() if "secrets" in line)
    assert secrets.split(None, 2)[2].strip() == "1 set: SHARED_VODIA_PASSWORD"
    assert "s3cret" not in result.stdout + result.stderr
    assert os.environ["SHARED_VODIA_PASSWORD"] == "s3cret"


def test_server_check_speaks_json_like_every_command_that_shows_data(cli, tmp_path):
    body = LESNET + '[servers.vodia1]\ntype = "vodia"\nurl = "http://127.0.0.1:1"\nretries = 0\n'
    result = cli("server", "check", "--format", "json", config=_config(tmp_path, body))
    doc = json.loads(result.stdout)
    assert [(d["server"], d["type"], d["ok"]) for d in doc] == [
        ("lesnet", "lesnet", True),
        ("vodia1", "vodia", False),
    ]
    assert doc[1]["detail"].startswith("cannot connect")
    assert result.exit_code == 1


def test_every_crontab_example_line_runs_a_real_job_quietly_with_its_secrets():
    # Cron starts in the home directory: without --env-file the jobs would not
    # find /etc/voipctl/.env and every run would stop with exit 2.
    from voipctl.cli import _hoist_global_flags, load_command

    crontab = ROOT / "crontab.example"
    commands = []
    for line in crontab.read_text().splitlines():
        text = line.lstrip("# ").strip()
        if not text[:1].isdigit() and not text.startswith("*/"):
            continue
        commands += [c.split() for c in " ".join(text.split()[5:]).split(";")]
    assert len(commands) >= 5
    for argv in commands:
        assert argv[0] == "voipctl"
        args = _hoist_global_flags(argv[1:])
        assert args[0] == "-q", argv
        assert args[1:3] == ["--env-file", "/etc/voipctl/.env"], argv
        assert load_command(args[3]) is not None, argv


def test_a_negative_override_rate_is_named_not_taken_for_an_option(cli):
    # Click read "-0.01" as an unknown option "-0" ("No such option '-0'").
    _client_and_product(cli)
    result = cli("rates", "override", "Standard", "1212", "-0.01")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "voipctl: error: an override rate and connect fee must not be negative"
    )
    assert cli("rates", "list", "Standard", "--format", "json").stdout.strip() == "[]"
    misspelt = cli("rates", "override", "Standard", "1212", "0.01", "--incremnt", "6")
    assert misspelt.exit_code == 2
    assert "No such option '--incremnt'" in misspelt.stderr


def test_doctor_accepts_a_capture_dir_that_the_first_email_will_create(cli, tmp_path):
    target = tmp_path / "mail" / "out"
    body = f'[email]\ncapture_dir = "{target}"\n'
    result = cli("doctor", config=_config(tmp_path, body))
    smtp = next(line for line in result.stdout.splitlines() if "smtp" in line)
    assert smtp.startswith("ok"), smtp
    assert "made on first use" in smtp
    blocked = tmp_path / "file"
    blocked.write_text("")
    body = f'[email]\ncapture_dir = "{blocked / "mail"}"\n'
    result = cli("doctor", config=_config(tmp_path, body))
    smtp = next(line for line in result.stdout.splitlines() if "smtp" in line)
    assert smtp.startswith("FAIL"), smtp


def test_ctrl_c_during_a_demo_step_stops_the_demo(monkeypatch, tmp_path):
    # run() turns Ctrl-C into status 130; the demo used to carry on with its next step.
    from voipctl.demo import run_demo

    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    calls: list[list[str]] = []

    def run_command(argv: list[str]) -> int:
        calls.append(argv)
        return 130 if len(calls) == 2 else run(argv)

    try:
        with pytest.raises(KeyboardInterrupt):
            run_demo(run_command, lambda line: None, days=1)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert len(calls) == 2
    assert calls[0][2:] == ["db", "upgrade"]
