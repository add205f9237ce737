"""Vodia PBX over its REST API.

Authentication is `basic` (HTTP Basic, PBX 58 and later) or `session`
(`PUT /rest/system/session`, then the cookie `session=ID`, logged in again once
when the PBX answers 401). Every fact about Vodia's CDR payload lives in
`_to_call_record`, `_direction` and the constants below. The item keys are
configuration (`[servers.X.cdr_format] columns`), defaulting to the names of
Vodia's documented webcdr record (https://doc.vodia.com/docs/webcdr): `callid`,
`from`, `to`, float `start`/`connect`/`end`. The listing path, its paging and
the `extensions`/`trunks` lists are not in any public document found
(docs/providers.md, "Vodia: facts and sources").
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx

from voipctl import money
from voipctl.config import secret
from voipctl.errors import ProviderAuthError, ProviderDataError, ProviderError
from voipctl.providers.base import (
    CallRecord,
    LeverState,
    ProviderAdapter,
    Rejected,
    ServiceInfo,
    digest,
    reason_of,
)
from voipctl.providers.http import HttpClient
from voipctl.providers.matching import did_key, did_keys, sip_user
from voipctl.providers.vodia.config import VodiaServer
from voipctl.redact import redact_url

log = logging.getLogger(__name__)

PAGE_SIZE = 500
MAX_BILLSEC = 2**31 - 1
SESSION_PATH = "/rest/system/session"
CHECK_PATH = "/rest/system/domaininfo"


class VodiaAdapter(ProviderAdapter):
    """One Vodia PBX: CDRs of a tenant, suspend by trunk or by extension."""

    type = "vodia"
    # The dedupe key of calls stored before the key was recorded per server.
    legacy_dedupe_key = "id"
    # Seconds before the first retry (doubling each time); tests make it tiny.
    backoff_s = 0.5

    def __init__(
        self,
        name: str,
        config: VodiaServer,
        *,
        transport: httpx.BaseTransport | None = None,
    ):
        super().__init__(name, config)
        self._password = secret(config.password_env, what=f"servers.{name}.password_env") or ""
        auth = (config.username, self._password) if config.auth == "basic" else None
        self.http = HttpClient.for_server(
            name, config, auth=auth, transport=transport, backoff_s=self.backoff_s
        )
        self._session: str | None = None
        self.columns = config.cdr_format.columns

    @property
    def dedupe_key(self) -> str:
        """The CDR key that is this server's dedupe key (fixed once calls are stored)."""
        return self.columns["id"]

    def close(self) -> None:
        self.http.close()

    # -- requests ---------------------------------------------------------------

    def _login(self) -> str:
        digest = hashlib.md5(self._password.encode(), usedforsecurity=False).hexdigest()
        answer = self.http.json(
            "PUT",
            SESSION_PATH,
            json={"name": "auth", "value": f"{self.config.username} {digest}"},
            log_body=False,  # the answer is the session id: a credential
        )
        if not isinstance(answer, str) or not answer.strip():
            raise ProviderAuthError(
                self.name, f"the credentials were refused (no session id from PUT {SESSION_PATH})"
            )
        self._session = answer.strip()
        return self._session

    def _call(self, method: str, path: str, *, as_json: bool = True, **kwargs) -> Any:
        """One API call; with session auth, logs in when needed and once more on a 401."""
        fresh = False
        for _ in range(2):
            headers = {}
            if self.config.auth == "session":
                if self._session is None:
                    self._login()
                    fresh = True
                headers["Cookie"] = f"session={self._session}"
            try:
                if as_json:
                    return self.http.json(method, path, headers=headers, exact=True, **kwargs)
                return self.http.request(method, path, headers=headers, **kwargs)
            except ProviderAuthError:
                if self.config.auth != "session" or fresh:
                    raise
                log.info("%s: session expired; logging in again", self.name)
                self._session = None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- contract ---------------------------------------------------------------

    def check(self) -> str:
        """Log in (session auth) and list the tenants; return what was reached."""
        domains = self._call("GET", CHECK_PATH)
        count = len(domains) if isinstance(domains, list | dict) else "?"
        shown = redact_url(self.config.url)
        return f"Vodia PBX at {shown}: {self.config.auth} auth accepted, {count} tenants"

    def fetch_cdrs(
        self, service: ServiceInfo, since: datetime, until: datetime
    ) -> Iterator[CallRecord]:
        """The service's calls that started in [since, until), page by page."""
        tenant = self._tenant(service)
        path = f"/rest/domain/{quote(tenant, safe='')}/cdrs"
        zone = ZoneInfo(self.config.timezone)
        # The query takes whole days in the PBX's own zone: ask one more on each side
        # and keep calls by their epoch times.
        first = since.astimezone(zone).date() - timedelta(days=1)
        last = until.astimezone(zone).date() + timedelta(days=1)
        page = 1
        previous_first_id = None
        while True:
            items = self._call("GET", path, params=_page_params(first, last, page))
            if not isinstance(items, list):
                raise ProviderDataError(
                    self.name,
                    f"GET {path} page {page}: expected a JSON list, got {type(items).__name__}",
                )
            if items and isinstance(items[0], dict):
                if page > 1 and items[0].get(self.columns["id"]) == previous_first_id:
                    raise ProviderDataError(
                        self.name, f"GET {path}: page {page} repeats page {page - 1}"
                    )
                previous_first_id = items[0].get(self.columns["id"])
            for item in items:
                record = self._item(item, service)
                if record is not None and (
                    record.__class__ is Rejected or since <= record.start < until
                ):
                    yield record
            if len(items) < PAGE_SIZE:
                return
            page += 1

    def _item(self, item: Any, service: ServiceInfo) -> CallRecord | Rejected | None:
        """One item of a page; one that cannot be read is set aside (by its id, or
        a digest of its JSON when it has no usable id)."""
        try:
            return self._to_call_record(item, service)
        except ProviderDataError as exc:
            raw = json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str)
            ident = item.get(self.columns["id"]) if isinstance(item, dict) else None
            usable = isinstance(ident, int | str) and not isinstance(ident, bool)
            text = str(ident).strip() if usable else ""
            locator = text if text and text.isprintable() and len(text) <= 200 else digest(raw)
            return Rejected(locator, reason_of(exc), raw)

    def reparse(self, services: list[ServiceInfo], raw: str) -> Iterator[CallRecord | Rejected]:
        """A set-aside CDR item (its JSON) read again."""
        record = self._item(json.loads(raw), services[0])
        if record is not None:
            yield record

    def suspend(self, service: ServiceInfo, reason: str) -> str:
        """Disable the service's trunk or billed extensions (per `suspend` in the config)."""
        return self._set_disabled(service, True)

    def unsuspend(self, service: ServiceInfo) -> str:
        """Enable the service's trunk or billed extensions again."""
        return self._set_disabled(service, False)

    # -- helpers ----------------------------------------------------------------

    def _tenant(self, service: ServiceInfo) -> str:
        if not service.tenant:
            raise ProviderError(self.name, f"service {service.id} has no tenant")
        return service.tenant

    def state(self, service: ServiceInfo) -> LeverState:
        """The trunk lever as the PBX shows it: the trunk's `dis` setting.

        Read with `GET /rest/domain/TENANT/edit_trunk/ID`, the read the trunk lever
        confirms itself with. The extension lever is not read back (no documented
        read of an extension's disabled flag was found): unknown.
        """
        if self.config.suspend != "trunk":
            return LeverState(None, "vodia cannot read the extension lever back")
        dis = self._trunk_dis(service)
        where = f"trunk {service.trunk_id}: dis"
        if dis is None:
            return LeverState(None, f"trunk {service.trunk_id}: no dis setting in the answer")
        if dis == "true":
            return LeverState(True, f"{where} = true")
        if dis in ("false", ""):
            # An unset flag (shown "") is Vodia's default: the trunk is enabled.
            return LeverState(False, f"{where} = {dis or '(unset)'}")
        return LeverState(None, f"{where} = {dis[:40]!r}, neither true nor false")

    def _trunk_path(self, service: ServiceInfo) -> str:
        if not service.trunk_id:
            raise ProviderError(
                self.name,
                f"service {service.id} has no trunk id "
                f"(voipctl service set {service.id} --trunk ID)",
            )
        tenant = quote(self._tenant(service), safe="")
        return f"/rest/domain/{tenant}/edit_trunk/{quote(service.trunk_id, safe='')}"

    def _trunk_dis(self, service: ServiceInfo) -> str | None:
        """The trunk's `dis` as text, lower case; None when the answer has none."""
        answer = self._call("GET", self._trunk_path(service))
        if not isinstance(answer, dict):
            raise ProviderDataError(
                self.name,
                f"trunk {service.trunk_id}: the trunk's settings are not a JSON object",
            )
        value = answer.get("dis")
        return None if value is None else str(value).strip().lower()

    def _set_disabled(self, service: ServiceInfo, disabled: bool) -> str:
        tenant = quote(self._tenant(service), safe="")
        value = "true" if disabled else "false"
        verb = "disabled" if disabled else "enabled"
        answers = []
        if self.config.suspend == "trunk":
            if not service.trunk_id:
                raise ProviderError(
                    self.name,
                    f"service {service.id} has no trunk id "
                    f"(voipctl service set {service.id} --trunk ID)",
                )
            targets = [(f"edit_trunk/{quote(service.trunk_id, safe='')}", {"dis": value})]
            self._trunk_path(service)  # the same checks as the read-back
            what = [f"trunk {service.trunk_id}"]
        else:
            if not service.extensions:
                raise ProviderError(self.name, f"service {service.id} has no billed extension")
            targets = [
                (f"user_settings/{quote(ext, safe='')}", {"disabled": value})
                for ext in service.extensions
            ]
            what = [f"extension {ext}" for ext in service.extensions]
        for (target, body), label in zip(targets, what, strict=True):
            response = self._call(
                "PUT", f"/rest/domain/{tenant}/{target}", json=body, as_json=False
            )
            text = response.text.strip()[:200]
            answers.append(
                f"{label} {verb}: HTTP {response.status_code}{' ' + text if text else ''}"
            )
        if self.config.suspend == "trunk":
            # Confirm by observation: the trunk's setting as the PBX reads it now.
            dis = self._trunk_dis(service)
            if (dis or "false") != value:
                raise ProviderError(
                    self.name,
                    f"trunk {service.trunk_id}: the PUT answered HTTP {response.status_code}, "
                    f"but the trunk reads dis = {dis!r}; recorded as before, the next run "
                    "acts again",
                )
            answers.append(f"reads dis = {value}")
        return "; ".join(answers)

    def _to_call_record(self, item: Any, service: ServiceInfo) -> CallRecord | None:
        """One Vodia CDR item -> CallRecord, or None when it is not this service's call.

        Keys per `cdr_format.columns` (defaults: webcdr's "callid", "from", "to",
        "start", "connect", "end" as epoch seconds, numbers or text, connect empty
        or absent when unanswered; "extensions" and "trunks" lists, unverified).
        """
        keys = self.columns
        ident = item.get(keys["id"], "?") if isinstance(item, dict) else "?"
        # Shown in one-line errors: a line break in it would forge a second error line.
        ident = " ".join(str(ident).split())[:80]
        try:
            if not isinstance(item, dict):
                raise TypeError("not a JSON object")
            ident_value = item[keys["id"]]
            if isinstance(ident_value, bool) or not isinstance(ident_value, int | str):
                raise TypeError(f"{keys['id']} {ident_value!r} is not a number or text")
            provider_id = str(ident_value).strip()
            if not provider_id:
                # An empty id would make every such call one call to the unique key.
                raise ValueError(f"empty {keys['id']}")
            caller = sip_user(item.get(keys["caller"]))
            to_raw = item.get(keys["number"]) or ""
            called = sip_user(to_raw)
            start = _epoch(item[keys["start"]])
            connect = _epoch(item.get(keys["connect"]))
            end = _epoch(item.get(keys["end"]))
            trunks = item.get(keys["trunks"]) or []
            extensions = item.get(keys["extensions"]) or []
            if not isinstance(trunks, list) or not isinstance(extensions, list):
                raise TypeError(f"{keys['trunks']}/{keys['extensions']} are not lists")
        except KeyError as exc:
            raise ProviderDataError(self.name, f"CDR {ident}: missing {exc.args[0]!r}") from None
        except (TypeError, ValueError, InvalidOperation) as exc:
            raise ProviderDataError(self.name, f"CDR {ident}: {exc}") from None
        if start is None:
            raise ProviderDataError(self.name, f"CDR {ident}: empty {keys['start']} time")

        legs = [str(e).strip() for e in extensions]
        direction, extension = _direction(called, str(to_raw), legs, bool(trunks), service)
        if direction is None:
            return None
        billsec = 0
        if connect is not None and end is not None and end > connect:
            billsec = math.ceil(end - connect)
            if billsec > MAX_BILLSEC:
                # cdrs.billsec is 32-bit: PostgreSQL would refuse the whole chunk.
                raise ProviderDataError(
                    self.name, f"CDR {ident}: connect {connect} to end {end} is not a call"
                )
        return CallRecord(
            provider_id=provider_id,
            direction=direction,
            start=_utc(start),
            billsec=billsec,
            number=called or None,
            caller=caller or None,
            extension=extension,
            answer=_utc(connect) if connect is not None else None,
            end=_utc(end) if end is not None else None,
            hangup_cause="answered" if connect is not None else "no_answer",
            raw=item,
        )


def _direction(
    called: str, to_raw: str, legs: list[str], has_trunk: bool, service: ServiceInfo
) -> tuple[str | None, str | None]:
    """(direction, extension) per docs/providers.md, first match wins; None: not this service's.

    `from` is not used: Vodia documents it as descriptive only. What decides is
    whether a trunk leg took part, the `to` party, and the extension legs.
    """
    billed = set(service.extensions)
    mine = [leg for leg in legs if not billed or leg in billed]
    first = mine[0] if mine else None
    if not has_trunk:
        if not billed or mine or called in billed:
            return "local", first or (called if called in billed else None)
        return None, None
    search = (service.inbound_search or "").strip().lower()
    if did_key(called) in did_keys(service.dids) or (search and search in to_raw.lower()):
        return "inbound", first
    if not billed or mine:
        # A trunk call to none of the service's DIDs went out, from one of its extensions
        # (an empty billed field is the whole tenant).
        return "outbound", first
    return None, None


def _epoch(value: Any) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise TypeError(f"time {value!r} is not epoch seconds")
    if isinstance(value, str):
        # One plain syntax in text too: no exponent, underscore or other script's digits.
        try:
            epoch = money.plain(value, field="time")
        except money.NumberError:
            raise ValueError(f"time {value!r} is not epoch seconds") from None
    elif isinstance(value, int | float | Decimal):
        epoch = Decimal(str(value))
    else:
        raise TypeError(f"time {value!r} is not epoch seconds")
    # Below 2**33 (year 2242): later times are garbage, and past year 9999 datetime overflows.
    if not epoch.is_finite() or not 0 <= epoch < 2**33:
        raise ValueError(f"time {value!r} is not epoch seconds")
    return epoch


def _utc(epoch: Decimal) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


def _page_params(first: date, last: date, page: int) -> dict[str, Any]:
    return {
        "start": first.strftime("%Y%m%d"),
        "end": last.strftime("%Y%m%d"),
        "page": page,
        "size": PAGE_SIZE,
    }
