"""Set-up shared by the WHMCS tests: a started fake WHMCS and a voipctl config pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tests.fakes.whmcs_server import FakeWhmcs

IDENTIFIER_ENV = "WHMCS_TEST_IDENTIFIER"
SECRET_ENV = "WHMCS_TEST_SECRET"

# The fake's custom client field ids, as an operator would map them (WHMCS's API gives ids).
FIELDS = """
[whmcs.fields]
has_voip_service = "id:11"
low_balance_threshold = "id:12"
voip_suspended = "id:13"
manual_voip_suspend = "id:14"
credit_limit = "id:15"
timezone = "id:16"
suspension_state = "id:13"
"""


def start_fake(monkeypatch) -> Iterator[FakeWhmcs]:
    """Start a fake WHMCS and put its credentials in the environment."""
    fake = FakeWhmcs().start()
    monkeypatch.setenv(IDENTIFIER_ENV, fake.identifier)
    monkeypatch.setenv(SECRET_ENV, fake.secret)
    try:
        yield fake
    finally:
        fake.stop()


def write_config(
    path: Path,
    fake: FakeWhmcs,
    *,
    post_usage: str = "credit",
    emails: str = "whmcs",
    extra: str = "",
) -> Path:
    """A voipctl.toml with backend whmcs, two servers (vodia1, les1) and the field ids."""
    path.write_text(
        f"""
[billing]
backend = "whmcs"
currency = "CAD"  # the fake's clients pay in CAD (GetClientsDetails currency_code)

[email]
capture_dir = "{path.parent / "mail"}"

[whmcs]
url = "{fake.url}"
identifier_env = "{IDENTIFIER_ENV}"
secret_env = "{SECRET_ENV}"
timeout_s = 5
retries = 1
post_usage = "{post_usage}"
emails = "{emails}"
{FIELDS}
[servers.vodia1]
type = "vodia"
url = "https://vodia.example.com"

[servers.les1]
type = "lesnet"
{extra}
"""
    )
    return path
