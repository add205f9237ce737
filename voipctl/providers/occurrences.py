"""Occurrence numbers of identical records, for feeds whose rows carry no id.

A feed that writes two identical rows for two real calls (LES.NET's CDR file,
Asterisk's Master.csv without uniqueid) is told apart by numbering them: the
dedupe key is the row's digest and how many identical rows came before it.
"""

from __future__ import annotations


class OutOfOrder(Exception):
    """A start earlier than the one before it, met while remembering one second only."""


class Occurrences:
    """Occurrence numbers of row digests: how many identical rows came before.

    Identical rows share their start (it is part of the digest), so while the
    starts do not go backwards only the current second's digests are kept
    (`bounded`): a sorted million-row file holds a handful, not a million. A
    start that goes backwards raises `OutOfOrder` then, since the rows of the
    earlier seconds are forgotten. Unbounded, every digest is kept.
    """

    def __init__(self, *, bounded: bool):
        self.bounded = bounded
        self.second: int | None = None
        # A set (most rows occur once) and a dict for the repeated ones: a
        # million-row file unbounded is ~80 MB, not ~90 in one dict.
        self.seen: set[bytes] = set()
        self.repeats: dict[bytes, int] = {}

    def number(self, start: int, digest: bytes) -> int:
        """0 for the first row with this digest, 1 for the next identical one, ..."""
        if self.bounded and start != self.second:
            if self.second is not None and start < self.second:
                raise OutOfOrder
            self.second = start
            self.seen.clear()
            self.repeats.clear()
        if digest in self.seen:
            occurrence = self.repeats.get(digest, 1)
            self.repeats[digest] = occurrence + 1
            return occurrence
        self.seen.add(digest)
        return 0
