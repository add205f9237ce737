"""Credentials in URLs are secrets: user-info and query strings are masked in every
log line, message and default output; `service show --show-secrets` prints them."""

from __future__ import annotations

import json

import pytest

from voipctl.redact import redact_url

PEER, DID = "D4E3CD2BFC791", "12046664021"
SECRET = "s3cretpw"
TOKEN = "tok3n"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://user:{SECRET}@host/file.txt?token={TOKEN}", "http://***@host/file.txt?***"),
        ("https://portal.les.net:8443/cdr/1.txt", "https://portal.les.net:8443/cdr/1.txt"),
        (f"https://{SECRET}@h/p#{TOKEN}", "https://***@h/p#***"),
        (f"file:///srv/cdr.txt?key={TOKEN}", "file:///srv/cdr.txt?***"),
        (f"https://[::1/x?k={TOKEN}", "https://[::1/x?***"),  # does not parse: masked by hand
        ("/srv/cdr.txt", "/srv/cdr.txt"),
        (None, None),
    ],
)
def test_redact_url_masks_user_info_and_query(url, shown):
    assert redact_url(url) == shown


def _setup(cli, tmp_path, link: str):
    config = tmp_path / "voipctl.toml"
    config.write_text('[servers.lesnet]\ntype = "lesnet"\n')
    for argv in (
        ["product", "add", "std"],
        ["client", "add", "1", "--first-name", "A", "--last-name", "B", "--email", "a@example.com"],
    ):
        result = cli(*argv, config=config)
        assert result.exit_code == 0, result.output
    return config


def test_service_add_show_and_list_mask_the_cdr_link(cli, tmp_path):
    link = f"http://user:{SECRET}@cdr.example.com/file.txt?token={TOKEN}"
    config = _setup(cli, tmp_path, link)
    added = cli(
        "service", "add", "--client", "1", "--product", "std", "--server", "lesnet",
        "--domain", f"{PEER} | {DID}", "--cdr-link", link, config=config,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "CDR link" in added.stdout and "http://***@cdr.example.com/file.txt?***" in added.stdout
    for argv in (
        ["service", "show", "1"],
        ["service", "show", "1", "--format", "json"],
        ["service", "show", "1", "--format", "csv"],
        ["service", "list"],
        ["service", "list", "--format", "json"],
        ["service", "list", "--format", "csv"],
    ):
        result = cli(*argv, config=config)
        assert result.exit_code == 0, result.output
        assert SECRET not in result.stdout + result.stderr, argv
        assert TOKEN not in result.stdout + result.stderr, argv
    shown = json.loads(cli("service", "show", "1", "--format", "json", config=config).stdout)
    assert shown["cdr_link"] == "http://***@cdr.example.com/file.txt?***"
    whole = cli("service", "show", "1", "--show-secrets", "--format", "json", config=config)
    assert whole.exit_code == 0
    assert json.loads(whole.stdout)["cdr_link"] == link


def test_a_refused_cdr_link_is_named_masked(cli, tmp_path):
    config = _setup(cli, tmp_path, "")
    result = cli(
        "service", "add", "--client", "1", "--product", "std", "--server", "lesnet",
        "--domain", f"{PEER} | {DID}", "--cdr-link", f"ftp://u:{SECRET}@h/c.txt?k={TOKEN}",
        config=config,
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "voipctl: error: --cdr-link ftp://***@h/c.txt?***: ftp:// links are not read "
        "(https://, http://, file:///PATH or a local path)"
    )


def test_pull_cdrs_verbose_log_masks_the_cdr_link(cli, tmp_path):
    feed = tmp_path / "cdrs.txt"
    feed.write_text(
        f"date,src,dst,duration,peer,did\n2026-11-20 09:15:00,{DID},15195550100,65,{PEER},{DID}\n"
    )
    link = f"file://{feed}?token={TOKEN}"
    config = _setup(cli, tmp_path, link)
    added = cli(
        "service", "add", "--client", "1", "--product", "std", "--server", "lesnet",
        "--domain", f"{PEER} | {DID}", "--cdr-link", link, config=config,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    result = cli("-v", "pull-cdrs", "--since", "2026-11-01", "--until", "2026-12-01", config=config)
    assert result.exit_code == 0, result.output
    assert f"lesnet: link:file://{feed}?*** read up to" in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_a_missing_cdr_file_is_named_masked(cli, tmp_path):
    link = f"file://{tmp_path}/absent.txt?token={TOKEN}"
    config = _setup(cli, tmp_path, link)
    added = cli(
        "service", "add", "--client", "1", "--product", "std", "--server", "lesnet",
        "--domain", f"{PEER} | {DID}", "--cdr-link", link, config=config,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    result = cli("pull-cdrs", "--since", "2026-11-01", "--until", "2026-12-01", config=config)
    assert result.exit_code == 1
    assert f"CDR link file://{tmp_path}/absent.txt?***: cannot read" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
