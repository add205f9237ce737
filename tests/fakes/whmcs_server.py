"""A fake WHMCS API: a real HTTP server on 127.0.0.1 answering `/includes/api.php`.

It keeps clients (with custom client fields by id), products/services with
their custom fields, invoices with their payments, the credit log and the emails
sent, and answers with the JSON shapes of WHMCS's API reference
(github:WHMCS/developer-docs, `api-reference/<action>.md`, published at
https://developers.whmcs.com/api-reference/<action>/): listings nested as
`invoices.invoice[]`, errors as `{"result": "error", "message": ...}`. Each
action below names the page its answer is read from. `credits_shape` chooses
between GetCredits' two shapes: "flat" (the page's example, the default) and
"nested" (`credits.credit[]`, the shape of the other listings' examples).

Automatic top-ups: `CapturePayment` charges the client's stored card (`card`:
"ok" pays, "decline" answers the docs' "Payment Attempt Failed") and records
the invoice in `captures` (the card was charged); `UpdateInvoice` sets a status.
`delay_after_s[action]` does the action, then waits before answering (a kill
of voipctl lands after WHMCS did it and before voipctl heard).

Faults for tests: `bad_secret` (any request fails "Authentication Failed"),
`allowed_ips` (others get "Invalid IP ..."), and `inject(action, fault, times)`
with fault "500" (answer HTTP 500, nothing done), "drop" (close the connection
before doing anything) or "drop_after_commit" (do it, then close the connection
without answering: the lost response of exactly-once tests).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

CENT = Decimal("0.01")


def _cents(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


@dataclass
class FakeClient:
    id: int
    firstname: str
    lastname: str
    email: str
    companyname: str = ""
    currency_code: str = "CAD"
    credit: Decimal = Decimal("0.00")
    status: str = "Active"
    customfields: dict[int, str] = field(default_factory=dict)
    card: str = "ok"  # what CapturePayment does with the stored card: "ok" or "decline"


@dataclass
class FakeService:
    id: int
    clientid: int
    name: str  # the product's name
    servername: str
    customfields: dict[str, str] = field(default_factory=dict)  # name -> value
    status: str = "Active"
    pid: int = 1
    groupname: str = "VoIP"
    domain: str = ""


@dataclass
class FakeInvoice:
    id: int
    userid: int
    total: Decimal
    duedate: str
    status: str = "Unpaid"
    notes: str = ""
    credit: Decimal = Decimal("0.00")
    date: str = ""
    items: list[dict[str, str]] = field(default_factory=list)
    payments: list[Decimal] = field(default_factory=list)  # AddInvoicePayment amounts

    @property
    def balance(self) -> Decimal:
        """GetInvoice's `balance`, "the amount left to pay on the invoice"."""
        return self.total - self.credit - sum(self.payments, Decimal(0))


@dataclass
class CreditEntry:
    id: int
    clientid: int
    date: str
    description: str
    amount: Decimal  # signed, as GetCredits shows it


class FakeWhmcs:
    """State and faults of one fake WHMCS; `start()` serves it, `url` is its base URL."""

    def __init__(self, identifier: str = "api-ident", secret: str = "api-s3cret-Value"):
        self.identifier = identifier
        self.secret = secret
        self.accesskey: str | None = None
        self.bad_secret = False
        self.allowed_ips: set[str] | None = None
        self.clients: dict[int, FakeClient] = {}
        self.services: dict[int, FakeService] = {}
        self.invoices: dict[int, FakeInvoice] = {}
        self.credit_log: list[CreditEntry] = []
        self.emails: list[dict[str, Any]] = []
        self.templates = {"Low Balance Alert", "VoIP Zero Balance"}
        self.credits_shape = "flat"  # GetCredits: "flat" (the docs' example) or "nested"
        self.requests: list[tuple[str, dict[str, str]]] = []  # (action, params without auth)
        self.faults: dict[str, list[str]] = {}
        self.delay_s: dict[str, float] = {}  # action -> seconds to wait before doing it
        self.delay_after_s: dict[str, float] = {}  # action -> seconds between doing and answering
        self.captures: list[int] = []  # invoice ids whose payment CapturePayment charged
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._ids = {"invoice": 1000, "credit": 0, "service": 500}
        self.custom_field_ids = {
            "Has VoIP Service": 11,
            "Low Balance Threshold": 12,
            "VoIP Suspended": 13,
            "Manual VoIP Suspend": 14,
            "Credit Limit": 15,
            "Time Zone": 16,
        }

    # --- set-up helpers -------------------------------------------------------------------

    def add_client(self, client_id: int, *, credit: str = "0.00", **fields: Any) -> FakeClient:
        """A client; custom fields by their names in `custom_field_ids` (`fields["custom"]`)."""
        custom = fields.pop("custom", {})
        client = FakeClient(
            id=client_id,
            firstname=fields.pop("firstname", f"First{client_id}"),
            lastname=fields.pop("lastname", f"Last{client_id}"),
            email=fields.pop("email", f"client{client_id}@example.com"),
            credit=Decimal(credit),
            **fields,
        )
        for name, value in custom.items():
            client.customfields[self.custom_field_ids[name]] = value
        with self.lock:
            self.clients[client_id] = client
        return client

    def set_custom(self, client_id: int, name: str, value: str) -> None:
        with self.lock:
            self.clients[client_id].customfields[self.custom_field_ids[name]] = value

    def custom(self, client_id: int, name: str) -> str:
        with self.lock:
            return self.clients[client_id].customfields.get(self.custom_field_ids[name], "")

    def add_service(self, clientid: int, name: str, servername: str, **customfields: str):
        with self.lock:
            self._ids["service"] += 1
            service = FakeService(
                id=self._ids["service"],
                clientid=clientid,
                name=name,
                servername=servername,
                customfields=dict(customfields),
            )
            self.services[service.id] = service
        return service

    def add_invoice(self, userid: int, total: str, duedate: str, status: str = "Unpaid"):
        with self.lock:
            self._ids["invoice"] += 1
            inv = FakeInvoice(self._ids["invoice"], userid, Decimal(total), duedate, status)
            self.invoices[inv.id] = inv
        return inv

    def pay(self, invoice_id: int, amount: str) -> None:
        """A payment on an invoice, as AddInvoicePayment records it (a partial one when
        `amount` is below the balance)."""
        with self.lock:
            self._add_payment(self.invoices[invoice_id], Decimal(amount))

    def _add_payment(self, inv: FakeInvoice, amount: Decimal) -> None:
        inv.payments.append(amount)
        if inv.balance <= 0:
            inv.status = "Paid"

    def inject(self, action: str, fault: str, times: int = 1) -> None:
        """The next `times` requests of `action` fail with `fault` ("500", "drop", ...)."""
        with self.lock:
            self.faults.setdefault(action, []).extend([fault] * times)

    def removals(self, client_id: int | None = None) -> list[CreditEntry]:
        """AddCredit type=remove entries of the credit log (negative amounts)."""
        with self.lock:
            return [
                e
                for e in self.credit_log
                if e.amount < 0
                and not e.description.startswith("Credit Applied")
                and (client_id is None or e.clientid == client_id)
            ]

    # --- serving --------------------------------------------------------------------------

    def start(self) -> FakeWhmcs:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                form = {
                    k: v[0]
                    for k, v in parse_qs(
                        self.rfile.read(length).decode(), keep_blank_values=True
                    ).items()
                }
                if self.path.split("?")[0] != "/includes/api.php":
                    self._send(404, {"result": "error", "message": "Not Found"})
                    return
                fake._handle(self, form)

            def _send(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                # The client may be gone (a killed voipctl): nothing to answer then.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(raw)

            def _drop(self) -> None:
                self.close_connection = True
                self.wfile.flush()
                self.connection.close()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, handler, form: dict[str, str]) -> None:
        action = form.get("action", "")
        public = {k: v for k, v in form.items() if k not in ("identifier", "secret", "accesskey")}
        with self.lock:
            self.requests.append((action, public))
            fault = self.faults.get(action, [None]).pop(0) if self.faults.get(action) else None
        if self.delay_s.get(action):
            time.sleep(self.delay_s[action])
        if fault == "drop":
            handler._drop()
            return
        if fault == "500":
            handler._send(500, {"result": "error", "message": "Internal Server Error"})
            return
        ip = handler.client_address[0]
        allowed = self.allowed_ips is None or ip in self.allowed_ips
        if not allowed and not (self.accesskey and form.get("accesskey") == self.accesskey):
            handler._send(403, {"result": "error", "message": f"Invalid IP {ip}"})
            return
        if (
            self.bad_secret
            or form.get("identifier") != self.identifier
            or form.get("secret") != self.secret
        ):
            handler._send(403, {"result": "error", "message": "Authentication Failed"})
            return
        if form.get("responsetype") != "json":
            handler._send(400, {"result": "error", "message": "responsetype json expected"})
            return
        method = getattr(self, f"_api_{action}", None)
        if method is None:
            handler._send(200, {"result": "error", "message": "Command Not Found"})
            return
        with self.lock:
            body = method(form)
        if fault == "drop_after_commit":
            handler._drop()
            return
        if self.delay_after_s.get(action):
            time.sleep(self.delay_after_s[action])
        handler._send(200, body)

    # --- the API actions ------------------------------------------------------------------

    @staticmethod
    def _error(message: str) -> dict:
        return {"result": "error", "message": message}

    def _client(self, form: dict[str, str], key: str = "clientid") -> FakeClient | None:
        try:
            return self.clients.get(int(form.get(key) or 0))
        except ValueError:
            return None

    @staticmethod
    def _page(form: dict[str, str], rows: list) -> tuple[list, dict]:
        start = int(form.get("limitstart") or 0)
        num = int(form.get("limitnum") or 25)
        page = rows[start : start + num]
        return page, {
            "totalresults": len(rows),
            "startnumber": start,
            "numreturned": len(page),
        }

    def _api_GetClients(self, form):  # noqa: N802 - WHMCS action names
        rows = [
            {
                "id": c.id,
                "firstname": c.firstname,
                "lastname": c.lastname,
                "companyname": c.companyname,
                "email": c.email,
                "datecreated": "2020-01-01",
                "groupid": 0,
                "status": c.status,
            }
            for c in sorted(self.clients.values(), key=lambda c: c.id)
        ]
        page, meta = self._page(form, rows)
        return {"result": "success", **meta, "clients": {"client": page}}

    # source: api-reference/getclientsdetails.md (https://developers.whmcs.com/api-reference/
    # getclientsdetails/): `client` with `currency` (an id) and `currency_code`, `credit` as a
    # string of 2 decimals, custom fields as `customfields[]` of id/value and `customfieldsN`.
    # `stats` (only when asked for) is not modelled: voipctl never asks for it.
    def _api_GetClientsDetails(self, form):  # noqa: N802
        client = self._client(form)
        if client is None:
            return self._error("Client Not Found")
        fields = [{"id": fid, "value": value} for fid, value in sorted(client.customfields.items())]
        details = {
            "client_id": client.id,
            "userid": client.id,
            "id": client.id,
            "firstname": client.firstname,
            "lastname": client.lastname,
            "fullname": f"{client.firstname} {client.lastname}",
            "companyname": client.companyname,
            "email": client.email,
            "status": client.status,
            "credit": _cents(client.credit),
            "currency": 1,
            "currency_code": client.currency_code,
            "customfields": fields,
        }
        for fid, value in client.customfields.items():
            details[f"customfields{fid}"] = value
        return {"result": "success", "client": details}

    def _api_GetClientsProducts(self, form):  # noqa: N802
        rows = []
        wanted = int(form["clientid"]) if form.get("clientid") else None
        for s in sorted(self.services.values(), key=lambda s: s.id):
            if wanted is not None and s.clientid != wanted:
                continue
            fields = [
                {"id": 100 + i, "name": name, "translated_name": name, "value": value}
                for i, (name, value) in enumerate(sorted(s.customfields.items()))
            ]
            rows.append(
                {
                    "id": s.id,
                    "clientid": s.clientid,
                    "pid": s.pid,
                    "name": s.name,
                    "translated_name": s.name,
                    "groupname": s.groupname,
                    "domain": s.domain,
                    "servername": s.servername,
                    "status": s.status,
                    "customfields": {"customfield": fields},
                    "configoptions": {"configoption": []},
                }
            )
        page, meta = self._page(form, rows)
        return {"result": "success", "clientid": wanted, **meta, "products": {"product": page}}

    # source: api-reference/getinvoices.md (https://developers.whmcs.com/api-reference/
    # getinvoices/): `invoices.invoice[]` with `subtotal`, `credit`, `total` and no balance:
    # payments made on an invoice do not show in this listing. That `total` is net of the
    # credit applied is not shown by the example (its credit is 0.00): unverified.
    def _api_GetInvoices(self, form):  # noqa: N802
        rows = []
        for inv in sorted(self.invoices.values(), key=lambda i: i.id):
            if form.get("userid") and inv.userid != int(form["userid"]):
                continue
            if form.get("status") and inv.status != form["status"]:
                continue
            owner = self.clients.get(inv.userid)
            currency = owner.currency_code if owner else "CAD"
            rows.append(
                {
                    "id": inv.id,
                    "userid": inv.userid,
                    "firstname": owner.firstname if owner else "",
                    "lastname": owner.lastname if owner else "",
                    "companyname": owner.companyname if owner else "",
                    "invoicenum": "",
                    "date": inv.date or inv.duedate,
                    "duedate": inv.duedate,
                    "datepaid": "0000-00-00 00:00:00",
                    "subtotal": _cents(inv.total),
                    "credit": _cents(inv.credit),
                    "tax": "0.00",
                    "tax2": "0.00",
                    "total": _cents(inv.total - inv.credit),
                    "taxrate": "0.000",
                    "taxrate2": "0.000",
                    "status": inv.status,
                    "paymentmethod": "paypalcheckout",
                    "notes": inv.notes,
                    "currencycode": currency,
                    "currencyprefix": "$",
                    "currencysuffix": f" {currency}",
                }
            )
        page, meta = self._page(form, rows)
        return {"result": "success", **meta, "invoices": {"invoice": page}}

    # source: api-reference/getcredits.md (https://developers.whmcs.com/api-reference/
    # getcredits/): the example answers the log flattened, one key per value
    # (`"credits[credit][0][id]": "1"`, every value a string); its parameter table says
    # `credits` is an array, the nested `credits.credit[]` of the other listings.
    def _api_GetCredits(self, form):  # noqa: N802
        client = self._client(form)
        if client is None:
            return self._error("Client ID Not Found")
        rows = [
            {
                "id": str(e.id),
                "date": e.date,
                "description": e.description,
                "amount": _cents(e.amount),
                "relid": "0",
            }
            for e in self.credit_log
            if e.clientid == client.id
        ]
        answer: dict[str, Any] = {
            "result": "success",
            "totalresults": str(len(rows)),
            "clientid": str(client.id),
        }
        if self.credits_shape == "nested":
            answer["credits"] = {"credit": rows}
        else:
            for index, row in enumerate(rows):
                for key, value in row.items():
                    answer[f"credits[credit][{index}][{key}]"] = value
        return answer

    def _log_credit(self, client: FakeClient, description: str, amount: Decimal) -> CreditEntry:
        self._ids["credit"] += 1
        entry = CreditEntry(
            self._ids["credit"], client.id, date.today().isoformat(), description, amount
        )
        self.credit_log.append(entry)
        return entry

    def _api_AddCredit(self, form):  # noqa: N802
        client = self._client(form)
        if client is None:
            return self._error("Client ID Not Found")
        if not form.get("description"):
            return self._error("Description is required")
        amount = Decimal(form.get("amount") or "0")
        if amount <= 0:
            return self._error("Amount must be greater than zero")
        if amount != amount.quantize(CENT):
            return self._error("Amount must have at most 2 decimal places")
        sign = -1 if form.get("type", "add") == "remove" else 1
        if sign < 0 and amount > client.credit:
            return self._error("Insufficient Credit Balance")
        client.credit += sign * amount
        self._log_credit(client, form["description"], sign * amount)
        return {"result": "success", "newbalance": _cents(client.credit)}

    def _api_CreateInvoice(self, form):  # noqa: N802
        client = self._client(form, "userid")
        if client is None:
            return self._error("Client ID Not Found")
        items = []
        n = 1
        while f"itemdescription{n}" in form:
            items.append(
                {"description": form[f"itemdescription{n}"], "amount": form[f"itemamount{n}"]}
            )
            n += 1
        total = sum((Decimal(i["amount"]) for i in items), Decimal(0))
        self._ids["invoice"] += 1
        inv = FakeInvoice(
            self._ids["invoice"],
            client.id,
            total,
            form.get("duedate") or date.today().isoformat(),
            status=form.get("status") or "Unpaid",
            notes=form.get("notes", ""),
            date=form.get("date") or date.today().isoformat(),
            items=items,
        )
        if form.get("autoapplycredit") in ("1", "true") and client.credit > 0 and total > 0:
            applied = min(client.credit, total)
            client.credit -= applied
            inv.credit = applied
            self._log_credit(client, f"Credit Applied to Invoice #{inv.id}", -applied)
            if applied == total:
                inv.status = "Paid"
        self.invoices[inv.id] = inv
        return {"result": "success", "invoiceid": inv.id, "status": inv.status}

    # source: api-reference/getinvoice.md (https://developers.whmcs.com/api-reference/
    # getinvoice/): the invoice's fields, `balance` ("the amount left to pay on the
    # invoice"), `items.item[]`, and `transactions` an empty string when there are none. The
    # shape of a non-empty `transactions` is not shown (unverified); voipctl does not read it.
    def _api_GetInvoice(self, form):  # noqa: N802
        inv = self.invoices.get(int(form.get("invoiceid") or 0))
        if inv is None:
            return self._error("Invoice ID Not Found")
        transactions: Any = ""
        if inv.payments:
            transactions = {
                "transaction": [
                    {"invoiceid": inv.id, "amountin": _cents(a), "amountout": "0.00"}
                    for a in inv.payments
                ]
            }
        return {
            "result": "success",
            "invoiceid": inv.id,
            "invoicenum": "",
            "userid": inv.userid,
            "date": inv.date or inv.duedate,
            "duedate": inv.duedate,
            "datepaid": "0000-00-00 00:00:00",
            "lastcaptureattempt": "0000-00-00 00:00:00",
            "subtotal": _cents(inv.total),
            "credit": _cents(inv.credit),
            "tax": "0.00",
            "tax2": "0.00",
            "total": _cents(inv.total - inv.credit),
            "balance": _cents(inv.balance),
            "taxrate": "0.000",
            "taxrate2": "0.000",
            "status": inv.status,
            "paymentmethod": "paypalcheckout",
            "notes": inv.notes,
            "ccgateway": False,
            "items": {"item": [{"id": i, **item} for i, item in enumerate(inv.items)]},
            "transactions": transactions,
        }

    # source: api-reference/addinvoicepayment.md (https://developers.whmcs.com/api-reference/
    # addinvoicepayment/): invoiceid, transid, gateway and date required; `amount` optional
    # (the full amount when left out); answers only `result`.
    def _api_AddInvoicePayment(self, form):  # noqa: N802
        inv = self.invoices.get(int(form.get("invoiceid") or 0))
        if inv is None:
            return self._error("Invoice ID Not Found")
        amount = Decimal(form["amount"]) if form.get("amount") else inv.balance
        self._add_payment(inv, amount)
        return {"result": "success"}

    # source: api-reference/capturepayment.md (https://developers.whmcs.com/api-reference/
    # capturepayment/): "Attempt to capture a payment on an unpaid CC Invoice", invoiceid
    # required, answers only `result`; errors "Invoice Not Found or Not Unpaid" and "Payment
    # Attempt Failed". That a capture pays the invoice's whole balance and marks it Paid is
    # how WHMCS shows a paid invoice (GetInvoice status/balance), not stated there: unverified.
    def _api_CapturePayment(self, form):  # noqa: N802
        inv = self.invoices.get(int(form.get("invoiceid") or 0))
        if inv is None or inv.status != "Unpaid":
            return self._error("Invoice Not Found or Not Unpaid")
        client = self.clients.get(inv.userid)
        if client is None or client.card != "ok":
            return self._error("Payment Attempt Failed")
        self.captures.append(inv.id)
        self._add_payment(inv, inv.balance)
        return {"result": "success"}

    # source: api-reference/updateinvoice.md (https://developers.whmcs.com/api-reference/
    # updateinvoice/): invoiceid required, `status` optional; answers `invoiceid`; error
    # "Invoice ID Not Found". Only the status is modelled (voipctl cancels a declined top-up).
    def _api_UpdateInvoice(self, form):  # noqa: N802
        inv = self.invoices.get(int(form.get("invoiceid") or 0))
        if inv is None:
            return self._error("Invoice ID Not Found")
        if form.get("status"):
            inv.status = form["status"]
        return {"result": "success", "invoiceid": str(inv.id)}

    def _api_SendEmail(self, form):  # noqa: N802
        name = form.get("messagename", "")
        if name not in self.templates:
            return self._error("Email Template not found")
        client = self._client(form, "id")
        if client is None:
            return self._error("Sending Failed. Please see documentation.")
        self.emails.append({"messagename": name, "id": client.id, "email": client.email})
        return {"result": "success"}

    def _api_UpdateClient(self, form):  # noqa: N802
        client = self._client(form)
        if client is None:
            return self._error("Client ID Not Found")
        if form.get("customfields"):
            values = php_unserialize(base64.b64decode(form["customfields"]).decode())
            for key, value in values.items():
                client.customfields[int(key)] = value
        return {"result": "success", "clientid": client.id}


def php_unserialize(text: str) -> dict[str, str]:
    """Just enough of PHP's unserialize() for a flat array of strings (what UpdateClient gets)."""
    raw = text.encode()
    head = re.match(rb"a:(\d+):\{", raw)
    if head is None:
        raise ValueError(f"not a serialized PHP array: {text[:40]!r}")
    pos = head.end()
    out: dict[str, str] = {}

    def scalar() -> str:
        nonlocal pos
        if raw[pos : pos + 2] == b"i:":
            end = raw.index(b";", pos)
            value = raw[pos + 2 : end].decode()
            pos = end + 1
            return value
        if raw[pos : pos + 2] == b"s:":
            colon = raw.index(b":", pos + 2)
            length = int(raw[pos + 2 : colon])
            start = colon + 2  # skip :"
            value = raw[start : start + length].decode()
            if raw[start + length : start + length + 2] != b'";':
                raise ValueError("bad string length in serialized PHP")
            pos = start + length + 2
            return value
        raise ValueError(f"unsupported serialized PHP at byte {pos}")

    for _ in range(int(head.group(1))):
        key = scalar()
        out[key] = scalar()
    if raw[pos : pos + 1] != b"}":
        raise ValueError("serialized PHP array not closed")
    return out
