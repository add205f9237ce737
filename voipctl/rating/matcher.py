"""Longest-prefix match over one direction of a deck version plus the product's overrides.

The rows live in a dict keyed by prefix; a lookup tries the prefix lengths the
deck actually has, longest first, so a 100,000-row deck costs at most a handful
of dict probes per call and no database round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class RateRow(NamedTuple):
    """A rate as rating uses it: money in integer units, increment resolved to A/B.

    `factor` is the markup over `cost.MARKUP_DENOMINATOR` (deck rows) or exactly
    the denominator (override rows, which take no markup).
    """

    prefix: str
    description: str
    rate: int
    connect_fee: int
    a: int
    b: int
    source: str  # "deck" or "override"
    version_id: int | None
    factor: int
    increment: str = ""  # "A/B", filled in by PrefixMatcher


class PrefixMatcher:
    """Longest-prefix lookup; on the same prefix an override replaces the deck row."""

    __slots__ = ("_lengths", "_rows")

    def __init__(self, rows: Iterable[RateRow] = (), overrides: Iterable[RateRow] = ()):
        self._rows: dict[str, RateRow] = {}
        for group in (rows, overrides):  # overrides last: they win on the same prefix
            for row in group:
                if not row.increment:
                    row = row._replace(increment=f"{row.a}/{row.b}")
                self._rows[row.prefix] = row
        self._lengths = tuple(sorted({len(p) for p in self._rows}, reverse=True))

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self) -> list[RateRow]:
        """Every row, sorted by prefix (overrides in place of deck rows on the same prefix)."""
        return sorted(self._rows.values(), key=lambda r: r.prefix)

    def match(self, number: str) -> RateRow | None:
        """The row with the longest prefix that starts `number`, or None."""
        get = self._rows.get
        size = len(number)
        for length in self._lengths:
            if length <= size:
                row = get(number[:length])
                if row is not None:
                    return row
        return None

    def candidates(self, number: str) -> list[str]:
        """The prefixes a lookup tries for `number`, longest first (for explanations)."""
        return [number[:length] for length in self._lengths if length <= len(number)]
