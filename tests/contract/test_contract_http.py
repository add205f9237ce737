"""The HTTP side of the adapter contract, run by every provider with its own fixtures.

Each provider's kit (server model, service, the URL its pull reads and an empty
answer) is the one of tests/faults/test_provider_faults.py. What every adapter owes
(voipctl/providers/http.py, docs/providers.md): a 4xx other than 401/403/429
is asked once and names the server; refused credentials are named as such, once;
a 429 is retried; no secret of the configuration is ever in a message.
"""

from __future__ import annotations

import httpx
import pytest
import respx

from tests.faults.test_provider_faults import ADAPTERS, SINCE, UNTIL, _env  # noqa: F401 - autouse
from voipctl.errors import ProviderAuthError, ProviderError, ProviderUnavailable

SECRETS = ("pw-never-shown", "k" * 40)


def _pull(kind: str, answer) -> tuple[Exception | None, respx.Route]:
    adapter, service, url, _ok = ADAPTERS[kind]()
    route = respx.get(url__startswith=url).mock(side_effect=answer)
    with adapter:
        try:
            list(adapter.fetch_cdrs(service, SINCE, UNTIL))
        except ProviderError as exc:
            return exc, route
    return None, route


@pytest.mark.parametrize("status", [400, 404, 410])
@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@respx.mock
def test_a_4xx_is_asked_once_and_names_the_server(kind, status):
    err, route = _pull(kind, lambda request: httpx.Response(status, text="no"))
    assert route.call_count == 1
    assert isinstance(err, ProviderError)
    assert not isinstance(err, ProviderUnavailable | ProviderAuthError)
    assert str(err).startswith("srv: ") and f"HTTP {status} on GET /" in str(err)
    assert not any(secret in str(err) for secret in SECRETS)


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@respx.mock
def test_refused_credentials_are_named_once_without_the_secret(kind, status):
    err, route = _pull(kind, lambda request: httpx.Response(status, text="denied"))
    assert route.call_count == 1
    assert isinstance(err, ProviderAuthError)
    assert str(err).startswith(f"srv: the credentials were refused (HTTP {status} on GET /")
    assert not any(secret in str(err) for secret in SECRETS)


@pytest.mark.parametrize("kind", sorted(ADAPTERS))
@respx.mock
def test_a_429_is_retried_and_the_pull_goes_on(kind):
    _adapter, _service, _url, ok = ADAPTERS[kind]()
    err, route = _pull(kind, [httpx.Response(429, headers={"retry-after": "0"}), ok])
    assert err is None
    assert route.call_count == 2
