"""The one request helper every HTTP adapter uses.

Timeouts on every request; retries with backoff on connection errors, timeouts,
429 and 5xx, never on other 4xx; 401/403 become ProviderAuthError naming the
server. Error messages carry the method and path only: query strings can hold
API keys (FusionPBX export) and are never shown.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx

from voipctl.errors import ProviderAuthError, ProviderError, ProviderUnavailable

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}
BODY_LOG_LIMIT = 500


class _GuardedStream(httpx.SyncByteStream):
    """A response body read through HttpClient.guard (streamed downloads)."""

    def __init__(self, client: HttpClient, inner: Any, started: float):
        self._client = client
        self._inner = inner
        self._started = started

    def __iter__(self) -> Iterator[bytes]:
        yield from self._client.guard(iter(self._inner), self._started)

    def close(self) -> None:
        self._inner.close()


class HttpClient:
    """An httpx.Client bound to one server, with voipctl's error and retry rules.

    `transport` is injectable (respx or httpx.MockTransport in unit tests).
    """

    def __init__(
        self,
        server: str,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        verify: bool | str = True,
        auth: httpx.Auth | tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        backoff_s: float = 0.5,
        min_rate_bps: int = 0,
        rate_window_s: float = 30.0,
        max_request_s: float | None = None,
    ):
        self.server = server
        self.min_rate_bps = min_rate_bps
        self.rate_window_s = rate_window_s
        self.max_request_s = max_request_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            verify=verify,
            auth=auth,
            headers=dict(headers or {}),
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def for_server(cls, name: str, config: Any, base_url: str | None = None, **kwargs):
        """Build from a server's config section (timeout_s, retries, verify_tls, ca_bundle)."""
        verify: bool | str = config.verify_tls
        if verify and getattr(config, "ca_bundle", None):
            verify = str(config.ca_bundle)
        return cls(
            name,
            base_url if base_url is not None else getattr(config, "url", ""),
            timeout_s=config.timeout_s,
            retries=config.retries,
            verify=verify,
            min_rate_bps=getattr(config, "min_rate_bps", 0),
            rate_window_s=getattr(config, "rate_window_s", 30.0),
            max_request_s=getattr(config, "max_request_s", None),
            **kwargs,
        )

    def close(self) -> None:
        self.client.close()

    def _what(self, method: str, url: str) -> str:
        try:
            path = httpx.URL(url).path if "://" in url else url.split("?", 1)[0]
        except httpx.InvalidURL:
            path = url.split("?", 1)[0]
        return f"{method} {path}"

    def _bad_url(self, what: str) -> ProviderError:
        # A host name that cannot be encoded ("https://...") fails inside the socket
        # layer with a bare UnicodeError; no retry can help, so say so at once.
        return ProviderError(self.server, f"not a valid URL on {what} (check the host name)")

    def _check_status(self, response: httpx.Response, what: str) -> None:
        status = response.status_code
        if status in (401, 403):
            raise ProviderAuthError(
                self.server, f"the credentials were refused (HTTP {status} on {what})"
            )
        if status >= 400:
            raise ProviderError(self.server, f"HTTP {status} on {what}")

    def _sleep(self, attempt: int, response: httpx.Response | None) -> None:
        delay = self.backoff_s * (2**attempt)
        if response is not None:
            retry_after = response.headers.get("retry-after", "")
            if retry_after.isdigit():
                delay = min(float(retry_after), 30.0)
        time.sleep(delay)

    def guard(self, chunks: Iterator[bytes], started: float) -> Iterator[bytes]:
        """Pass body chunks through, failing the server on a stalled or endless transfer.

        A read timeout alone does not end a body that trickles one byte a second;
        this checks the bytes received over each rate window and the total time.
        """
        window_start = started
        window_bytes = 0
        for chunk in chunks:
            now = time.monotonic()
            if self.max_request_s is not None and now - started > self.max_request_s:
                raise ProviderError(
                    self.server,
                    f"transfer longer than {self.max_request_s:g} s "
                    f"(servers.{self.server}.max_request_s)",
                )
            window_bytes += len(chunk)
            if now - window_start >= self.rate_window_s:
                if self.min_rate_bps and window_bytes / (now - window_start) < self.min_rate_bps:
                    raise ProviderError(
                        self.server,
                        f"transfer slower than {self.min_rate_bps} B/s over "
                        f"{self.rate_window_s:g} s (servers.{self.server}.min_rate_bps)",
                    )
                window_start, window_bytes = now, 0
            yield chunk

    def _read_guarded(self, method: str, url: str, **kwargs) -> httpx.Response:
        started = time.monotonic()
        with self.client.stream(method, url, **kwargs) as response:
            try:
                response.content  # noqa: B018 - already read: a canned answer (respx)
            except httpx.ResponseNotRead:
                pass
            else:
                return response
            body = b"".join(self.guard(response.iter_raw(), started))
        # Content-Encoding still applies: the new response decodes the raw body.
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=body,
            request=response.request,
        )

    def request(self, method: str, url: str, *, log_body: bool = True, **kwargs) -> httpx.Response:
        """Send a request with retries; return a 2xx/3xx response or raise a ProviderError.

        `log_body=False` keeps the answer out of the DEBUG log (a login's session id).
        """
        what = self._what(method, url)
        last: str = ""
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self._read_guarded(method, url, **kwargs)
            except httpx.TimeoutException:
                last = f"timed out on {what}"
            except httpx.TransportError as exc:
                last = f"cannot connect ({type(exc).__name__}) on {what}"
            except (httpx.InvalidURL, UnicodeError):
                raise self._bad_url(what) from None
            else:
                if response.status_code not in RETRY_STATUS:
                    log.debug(
                        "%s: %s -> %s %s",
                        self.server,
                        what,
                        response.status_code,
                        response.text[:BODY_LOG_LIMIT] if log_body else "(body not logged)",
                    )
                    self._check_status(response, what)
                    return response
                last = f"HTTP {response.status_code} on {what}"
            if attempt < self.retries:
                log.info("%s: %s; retrying (%d/%d)", self.server, last, attempt + 1, self.retries)
                self._sleep(attempt, response)
        raise ProviderUnavailable(self.server, f"{last} (after {self.retries + 1} attempts)")

    @contextmanager
    def stream(self, method: str, url: str, **kwargs) -> Iterator[httpx.Response]:
        """A streamed response (large files), with the same retries until the body starts."""
        what = self._what(method, url)
        last = ""
        for attempt in range(self.retries + 1):
            try:
                with self.client.stream(method, url, **kwargs) as response:
                    if response.status_code not in RETRY_STATUS:
                        self._check_status(response, what)
                        started = time.monotonic()
                        response.stream = _GuardedStream(self, response.stream, started)
                        yield response
                        return
                    last = f"HTTP {response.status_code} on {what}"
            except httpx.TimeoutException:
                last = f"timed out on {what}"
            except httpx.TransportError as exc:
                last = f"cannot connect ({type(exc).__name__}) on {what}"
            except (httpx.InvalidURL, UnicodeError):
                raise self._bad_url(what) from None
            if attempt < self.retries:
                self._sleep(attempt, None)
        raise ProviderUnavailable(self.server, f"{last} (after {self.retries + 1} attempts)")

    def json(self, method: str, url: str, *, exact: bool = False, **kwargs) -> Any:
        """`request` and parse JSON; a body that is not JSON is a ProviderDataError.

        With `exact`, a JSON number with a fraction or exponent is read as a
        Decimal (not a float: Vodia's epochs keep their digits), and NaN or
        Infinity, which are not JSON, make the body non-JSON.
        """
        from voipctl.errors import ProviderDataError

        response = self.request(method, url, **kwargs)
        try:
            if exact:
                return json.loads(
                    response.content, parse_float=Decimal, parse_constant=_not_a_number
                )
            return response.json()
        except RecursionError:
            # Nested deeper than Python's parser goes: the page as a whole is unreadable.
            raise ProviderDataError(
                self.server, f"{self._what(method, url)} answered with JSON nested too deep to read"
            ) from None
        except ValueError:
            snippet = response.text[:80].replace("\n", " ")
            raise ProviderDataError(
                self.server, f"{self._what(method, url)} answered with non-JSON: {snippet!r}"
            ) from None


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
