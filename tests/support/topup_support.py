"""A charge program for the auto-topup tests, and the clients they top up.

The program is a real executable run by voipctl the way an operator's would
be. It behaves as `MODE` (a file beside it) says: ok, decline, exit3, hang,
slow (charge, then take 30 s to answer). It is idempotent by reference, as
docs/topup.md asks of a real one: a reference already charged answers 0 at once
and charges nothing. Every call is a line `call REF AMOUNT CLIENT` in `calls`,
every real charge a line `charge REF AMOUNT` in `charges`.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from tests.support.billing_data import add_client, add_product, add_service, topup
from voipctl.store.models import Client, LedgerEntry, OutboxEmail, TopupAttempt

SCRIPT = """#!{python}
import os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
client, amount, ref = sys.argv[1:4]
with open(os.path.join(here, "calls"), "a") as f:
    f.write(f"call {{ref}} {{amount}} {{client}}\\n")
mode = open(os.path.join(here, "MODE")).read().strip()
done = os.path.join(here, "charged-" + ref)
if os.path.exists(done):
    print("already charged " + ref)
    sys.exit(0)
if mode == "decline":
    print("gateway: checking card", file=sys.stderr)
    print("card declined: insufficient funds", file=sys.stderr)
    sys.exit(1)
if mode == "exit3":
    print("gateway unreachable", file=sys.stderr)
    sys.exit(3)
if mode == "hang":
    time.sleep(60)
with open(os.path.join(here, "charges"), "a") as f:
    f.write(f"charge {{ref}} {{amount}}\\n")
    f.flush()
    os.fsync(f.fileno())
open(done, "w").close()
if mode == "slow":
    time.sleep(30)
print("approved txn-" + ref)
"""


class ChargeProgram:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.path = directory / "charge-card"
        self.path.write_text(SCRIPT.format(python=sys.executable))
        self.path.chmod(0o755)
        self.mode("ok")

    def mode(self, mode: str) -> None:
        (self.dir / "MODE").write_text(mode)

    def _lines(self, name: str) -> list[list[str]]:
        path = self.dir / name
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    @property
    def calls(self) -> list[list[str]]:
        return self._lines("calls")

    @property
    def charges(self) -> list[list[str]]:
        return self._lines("charges")


def write_local_config(path: Path, program: ChargeProgram, extra: str = "") -> Path:
    path.write_text(
        f"""
[email]
capture_dir = "{path.parent / "mail"}"
operator = "noc@example.net"

[topup]
command = ["{program.path}", "{{client_id}}", "{{amount}}", "{{reference}}"]
timeout_s = 5
{extra}
"""
    )
    return path


def add_topup_client(
    store, client_id: int = 42, *, amount: str = "25.00", credit: str = "3.50", **fields
):
    """A client with CC Auth on File (authorised 10 days ago), threshold 5.00, and `credit`."""
    values = {
        "first_name": "Grace",
        "low_balance_threshold": Decimal("5.00"),
        "auto_topup_amount": Decimal(amount),
        "cc_auth_on_file": True,
        "cc_auth_date": date.today() - timedelta(days=10),
    }
    values.update(fields)
    with store.transaction() as s:
        add_client(s, client_id, **values)
        product = add_product(s, f"Metered{client_id}")
        service = add_service(s, client_id, product.id)
        topup(s, client_id, credit, f"manual-{client_id}")
    return service


def spend(store, client_id: int, amount: str, reference: str) -> None:
    """Lower the client's credit by `amount` (an adjustment in the ledger)."""
    from voipctl.billing import ledger

    with store.transaction() as s:
        ledger.post(
            s, client_id=client_id, kind="adjustment", amount=-Decimal(amount), reference=reference
        )


def attempts(store, client_id: int = 42) -> list[tuple[str, str, str]]:
    with store.transaction() as s:
        return [
            (a.reference, a.status, a.detail)
            for a in s.scalars(
                select(TopupAttempt)
                .where(TopupAttempt.client_id == client_id)
                .order_by(TopupAttempt.id)
            )
        ]


def topups(store, client_id: int = 42) -> list[tuple[str, Decimal]]:
    """The automatic top-ups in the ledger: (reference, amount)."""
    with store.transaction() as s:
        return [
            (e.reference, e.amount)
            for e in s.scalars(
                select(LedgerEntry)
                .where(
                    LedgerEntry.client_id == client_id,
                    LedgerEntry.reference.like("auto-topup-%"),
                )
                .order_by(LedgerEntry.id)
            )
        ]


def emails(store) -> list[tuple[str, str, str]]:
    """(template, recipient, subject) of every email decided, in order."""
    with store.transaction() as s:
        return [
            (e.template, e.recipient, e.subject)
            for e in s.scalars(select(OutboxEmail).order_by(OutboxEmail.id))
        ]


def latched(store, client_id: int = 42) -> bool:
    with store.transaction() as s:
        return s.get(Client, client_id).auto_topup_latched
