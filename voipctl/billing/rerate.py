"""Re-rating corrections on the ledger: a billed CDR whose cost changed (docs/rating.md §7)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from voipctl import money
from voipctl.billing import ledger
from voipctl.store.engine import driver_sql


def correct_charge(
    session: Session,
    cursor: Any,
    *,
    cdr_id: int,
    client_id: int,
    service_id: int,
    billed_entry_id: int,
    rerate_count: int,
    old_cost: int,
    new_cost: int,
) -> None:
    """Reverse what a billed CDR was charged and charge its new cost, in the chunk's transaction.

    References are `rerate:<cdr_id>:<n>:reversal|charge` with n the CDR's new re-rate
    count (`rerate_count` is the count before), written in the same transaction
    (`cursor` is the chunk's DBAPI cursor): a crash leaves both or neither, and a
    run after a commit sees the new cost and posts nothing. Costs in integer units.
    """
    n = rerate_count + 1
    note = (
        f"re-rating of CDR {cdr_id}: was {money.fmt(old_cost, 2, units=True)}, "
        f"now {money.fmt(new_cost, 2, units=True)}"
    )
    entry_id = billed_entry_id
    if old_cost:
        posted = ledger.post(
            session,
            client_id=client_id,
            kind="reversal",
            amount=money.from_units(old_cost),
            reference=f"rerate:{cdr_id}:{n}:reversal",
            note=note,
            service_id=service_id,
            cdr_count=1,
            reverses_id=billed_entry_id,
        )
        entry_id = posted.entry.id
    if new_cost:
        posted = ledger.post(
            session,
            client_id=client_id,
            kind="charge",
            amount=-money.from_units(new_cost),
            reference=f"rerate:{cdr_id}:{n}:charge",
            note=note,
            service_id=service_id,
            cdr_count=1,
        )
        entry_id = posted.entry.id
    cursor.executemany(
        driver_sql(session, "UPDATE cdrs SET billed_entry_id = ?, rerate_count = ? WHERE id = ?"),
        [(entry_id, n, cdr_id)],
    )
