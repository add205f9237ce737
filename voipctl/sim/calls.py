"""Deterministic, realistic calls for the provider simulator.

The same seed and the same window give the same calls, so tests and trial
runs can count on them: NANP and international destinations, answered and
unanswered calls, inbound and outbound, a few internal calls, and now and then
two identical calls in the same second (which a LES.NET file cannot tell apart).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime

# Area codes and international prefixes the generator dials (exit code 011).
AREA_CODES = ("212", "416", "519", "604", "647", "204", "905", "613", "514", "303", "415", "613")
INTERNATIONAL = ("4420", "331", "4930", "612", "5255", "9122", "632", "8610", "3906", "2712")
TOLL_FREE = ("800", "888", "877")
HANGUPS_UNANSWERED = (
    ("NO_ANSWER", "no_answer"),
    ("USER_BUSY", "busy"),
    ("ORIGINATOR_CANCEL", "cancelled"),
)
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class SimCall:
    """One generated call; times are epoch seconds (with fractions, as PBXs log them)."""

    seq: int
    uuid: str
    direction: str  # outbound | inbound | local
    start: float
    answer: float | None
    end: float
    caller: str
    called: str  # outbound: dialled number; inbound: the DID; local: the other extension
    extension: str  # the tenant's extension that placed or took the call
    did: str  # the tenant/peer DID involved
    hangup_cause: str
    status: str

    @property
    def billsec(self) -> int:
        if self.answer is None:
            return 0
        return max(0, int(self.end - self.answer + 0.999999))


def _nanp(rng: random.Random) -> str:
    return (
        rng.choice(AREA_CODES)
        + str(rng.randint(2, 9))
        + f"{rng.randint(0, 99):02d}"
        + f"{rng.randint(0, 9999):04d}"
    )


def _destination(rng: random.Random) -> str:
    pick = rng.random()
    if pick < 0.55:
        return _nanp(rng)  # 10 digits
    if pick < 0.8:
        return "1" + _nanp(rng)  # 1 + 10 digits
    if pick < 0.85:
        return "1" + rng.choice(TOLL_FREE) + f"{rng.randint(2000000, 9999999)}"
    return "011" + rng.choice(INTERNATIONAL) + f"{rng.randint(1000000, 99999999)}"


def generate(
    *,
    seed: int,
    key: str,
    start: datetime,
    days: int,
    calls_per_day: int,
    extensions: tuple[str, ...],
    dids: tuple[str, ...],
    local_calls: bool = True,
) -> list[SimCall]:
    """The calls of one tenant or peer (`key`) over `days` days from `start`, by start time.

    Each day's calls depend only on (seed, key, day), so a longer window keeps
    the calls of the shorter one.
    """
    calls: list[SimCall] = []
    day0 = int(start.timestamp())
    seq = 0
    for day in range(days):
        rng = random.Random(f"{seed}:{key}:{day}")
        day_start = day0 + day * SECONDS_PER_DAY
        offsets = sorted(rng.uniform(0, SECONDS_PER_DAY - 4000) for _ in range(calls_per_day))
        for i, offset in enumerate(offsets):
            seq += 1
            call_start = round(day_start + offset, 3)
            pick = rng.random()
            extension = rng.choice(extensions) if extensions else ""
            did = rng.choice(dids) if dids else ""
            if local_calls and pick < 0.08 and len(extensions) > 1:
                direction = "local"
                caller = extension
                called = rng.choice([e for e in extensions if e != extension])
            elif pick < 0.65:
                direction, caller, called = "outbound", did or extension, _destination(rng)
            else:
                direction, caller, called = "inbound", _nanp(rng), did
            if rng.random() < 0.75:
                ring = round(rng.uniform(2, 20), 3)
                talk = min(3600.0, round(rng.expovariate(1 / 150) + 1, 3))
                answer = round(call_start + ring, 3)
                end = round(answer + talk, 3)
                hangup, status = "NORMAL_CLEARING", "answered"
            else:
                answer = None
                end = round(call_start + rng.uniform(5, 40), 3)
                hangup, status = rng.choice(HANGUPS_UNANSWERED)
            call = SimCall(
                seq=seq,
                uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                direction=direction,
                start=call_start,
                answer=answer,
                end=end,
                caller=caller,
                called=called,
                extension=extension,
                did=did,
                hangup_cause=hangup,
                status=status,
            )
            calls.append(call)
            if i % 50 == 49 and direction == "outbound" and answer is not None:
                # Two identical calls in one second: different calls all the same.
                seq += 1
                calls.append(
                    SimCall(
                        **{
                            **call.__dict__,
                            "seq": seq,
                            "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{seed}:{key}:{seq}")),
                        }
                    )
                )
    return calls
