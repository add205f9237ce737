"""A client for WHMCS's API: `POST {url}/includes/api.php`, form-encoded, JSON answers.

Credentials (`identifier`, `secret`, optional `accesskey`) come from the
environment and are never logged nor put in an error: every message names the
action and, when there is one, the client, and is scrubbed of the credentials
in case WHMCS ever echoes them.

Retries: a read-only action is retried on connection errors, timeouts and 5xx.
A write (AddCredit, CreateInvoice, SendEmail) is retried only when the request
surely never reached WHMCS (the connection could not be opened); any other
failure of a write is `WhmcsOutcomeUnknown`, because WHMCS may have committed
it, and the caller decides from its own records (see `voipctl.billing.whmcs`).
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx

from voipctl.config import WhmcsConfig, secret
from voipctl.errors import BillingBackendError, ConfigError

log = logging.getLogger(__name__)

API_PATH = "/includes/api.php"
RETRY_STATUS = {429, 500, 502, 503, 504}
# Actions that change nothing, or set a value (UpdateClient): safe to send twice.
IDEMPOTENT = frozenset(
    {
        "GetClients",
        "GetClientsDetails",
        "GetClientsProducts",
        "GetInvoices",
        "GetInvoice",
        "GetCredits",
        "UpdateClient",
    }
)
PAGE_SIZE = 100


class WhmcsOutcomeUnknown(BillingBackendError):
    """A write was sent but its answer was lost: WHMCS may or may not have done it."""


class WhmcsApi:
    """One WHMCS installation. `transport` is injectable for unit tests."""

    def __init__(
        self,
        config: WhmcsConfig,
        *,
        retries: int | None = None,
        backoff_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ):
        if not config.url:
            raise ConfigError('whmcs.url: required with [billing] backend = "whmcs"')
        if not (config.identifier_env and config.secret_env):
            raise ConfigError(
                "whmcs.identifier_env and whmcs.secret_env: name the environment variables "
                "holding the API credentials (WHMCS: Setup > Staff Management > Manage API "
                "Credentials)"
            )
        self._auth = {
            "identifier": secret(config.identifier_env, what="whmcs.identifier_env") or "",
            "secret": secret(config.secret_env, what="whmcs.secret_env") or "",
        }
        accesskey = secret(config.accesskey_env, what="whmcs.accesskey_env")
        if accesskey:
            self._auth["accesskey"] = accesskey
        self.retries = config.retries if retries is None else retries
        self.backoff_s = backoff_s
        base = config.url.rstrip("/")
        # Both "https://billing.example.com" and ".../includes/api.php" are taken.
        self.url = base if base.endswith(API_PATH) else base + API_PATH
        self.client = httpx.Client(
            timeout=httpx.Timeout(config.timeout_s, connect=min(config.timeout_s, 10.0)),
            verify=config.verify_tls,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self.client.close()

    def _scrub(self, text: str) -> str:
        for value in self._auth.values():
            if value and len(value) >= 4:
                text = text.replace(value, "***")
        return text

    def _fail(self, what: str, message: str, cls=BillingBackendError) -> BillingBackendError:
        return cls(self._scrub(f"WHMCS {what}: {message}"))

    def call(self, action: str, params: Mapping[str, Any] | None = None, **kw: Any) -> dict:
        """Run one API action; return its JSON answer (result = success).

        `kw` may carry `client_id` (named in errors). Raises BillingBackendError
        naming the action and client; WhmcsOutcomeUnknown when a write may have happened.
        """
        client_id = kw.get("client_id")
        what = action if client_id is None else f"{action} for client {client_id}"
        data = {k: _form_value(v) for k, v in (params or {}).items()}
        data.update(self._auth, action=action, responsetype="json")
        idempotent = action in IDEMPOTENT
        last = ""
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self.client.post(self.url, data=data)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # The request never left: safe to send again, even a write.
                last = f"cannot connect to {self._host()} ({type(exc).__name__})"
            except httpx.TimeoutException:
                last = "timed out waiting for the answer"
                if not idempotent:
                    raise self._fail(
                        what, last + "; it may have been done", WhmcsOutcomeUnknown
                    ) from None
            except httpx.TransportError as exc:
                last = f"the connection failed ({type(exc).__name__})"
                if not idempotent:
                    raise self._fail(
                        what, last + "; it may have been done", WhmcsOutcomeUnknown
                    ) from None
            else:
                if response.status_code not in RETRY_STATUS:
                    return self._answer(what, response)
                last = f"HTTP {response.status_code}"
                if not idempotent:
                    raise self._fail(what, last + "; it may have been done", WhmcsOutcomeUnknown)
            if attempt < self.retries:
                log.info("WHMCS %s: %s; retrying (%d/%d)", what, last, attempt + 1, self.retries)
                time.sleep(self.backoff_s * (2**attempt))
        raise self._fail(what, f"{last} (after {self.retries + 1} attempts)")

    def _host(self) -> str:
        return httpx.URL(self.url).host

    def _answer(self, what: str, response: httpx.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("result") == "error":
            message = str(body.get("message") or "error without a message")
            hint = ""
            if message.startswith("Invalid IP"):
                hint = (
                    " (add this host's address under Setup > General Settings > Security > "
                    "API IP Access Restriction, or set whmcs.accesskey_env)"
                )
            elif "Authentication Failed" in message:
                hint = " (check the API identifier and secret, and the API role's permissions)"
            raise self._fail(what, message + hint)
        if response.status_code >= 400:
            raise self._fail(what, f"HTTP {response.status_code}")
        if not isinstance(body, dict) or body.get("result") != "success":
            snippet = response.text[:80].replace("\n", " ")
            raise self._fail(what, f"answered with something that is not WHMCS JSON: {snippet!r}")
        log.debug("WHMCS %s -> %s", what, self._scrub(response.text[:500]))
        return body

    def paged(
        self,
        action: str,
        params: Mapping[str, Any],
        list_key: str,
        item_key: str,
        *,
        client_id: int | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[dict]:
        """Every record of a listing action, page by page (limitstart/limitnum) until the
        `numreturned` of the pages add up to `totalresults`."""
        start = 0
        while True:
            body = self.call(
                action,
                {**params, "limitstart": start, "limitnum": page_size},
                client_id=client_id,
            )
            items = records(body, list_key, item_key)
            yield from items
            returned = int(body.get("numreturned") or len(items))
            total = int(body.get("totalresults") or 0)
            start += returned
            if returned == 0 or start >= total:
                return


def records(body: Mapping[str, Any], list_key: str, item_key: str) -> list[dict]:
    """The records of a listing, in either shape WHMCS's API reference shows.

    Nested (`{"invoices": {"invoice": [...]}}`, the GetInvoices example), with an empty
    listing answered by an empty list or string instead of the object; or flattened into
    one key per value (`"credits[credit][0][id]": "1"`, the GetCredits example at
    https://developers.whmcs.com/api-reference/getcredits/). Flattened records come back
    in index order.
    """
    outer = body.get(list_key)
    if isinstance(outer, dict):
        inner = outer.get(item_key)
        if isinstance(inner, dict):  # one record, not wrapped in a list (seen with XML bridges)
            return [inner]
        if isinstance(inner, list):
            return [item for item in inner if isinstance(item, dict)]
    return _flattened(body, list_key, item_key)


def _flattened(body: Mapping[str, Any], list_key: str, item_key: str) -> list[dict]:
    pattern = re.compile(rf"{re.escape(list_key)}\[{re.escape(item_key)}\]\[(\d+)\]\[([^\]]+)\]")
    found: dict[int, dict] = {}
    for key, value in body.items():
        match = pattern.fullmatch(str(key))
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return [found[index] for index in sorted(found)]


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def php_serialize(data: Mapping[str | int, str]) -> str:
    """PHP's `serialize()` of an array of strings keyed by int or str (UpdateClient
    `customfields`, SendEmail `customvars`). String lengths are in bytes, as PHP counts."""
    parts = [f"a:{len(data)}:{{"]
    for key, value in data.items():
        parts.append(f"i:{key};" if isinstance(key, int) else _php_string(key))
        parts.append(_php_string(value))
    parts.append("}")
    return "".join(parts)


def _php_string(text: str) -> str:
    return f's:{len(text.encode())}:"{text}";'


def encode_customfields(values: Mapping[int, str]) -> str:
    """The `customfields` parameter of UpdateClient: base64 of a PHP-serialized array."""
    return base64.b64encode(php_serialize(dict(values)).encode()).decode()
