"""Exclude and suppress patterns (docs/rating.md §3).

Patterns are written as ictVoIP writes them: comma-separated, `x` is any one
digit, every other character is literal, and a pattern matches a whole number,
never a prefix. `911,1800xxxxxxx,*xx` excludes `911`, `18005550100` and `*97`,
but not `9110` or `1800555010`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RAW_KEEP = re.compile(r"[^0-9*#]")


def split_patterns(text: str | None) -> tuple[str, ...]:
    """The non-empty patterns of a comma-separated list, spaces trimmed."""
    if not text:
        return ()
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _to_regex(pattern: str) -> str:
    return "".join(r"\d" if ch in "xX" else re.escape(ch) for ch in pattern)


@dataclass(frozen=True)
class PatternSet:
    """A compiled list of patterns; `match` tells whether a number is covered."""

    patterns: tuple[str, ...]

    def __post_init__(self) -> None:
        regex = "|".join(f"(?:{_to_regex(p)})" for p in self.patterns)
        object.__setattr__(self, "_regex", re.compile(regex) if regex else None)

    @classmethod
    def parse(cls, text: str | None) -> PatternSet:
        return cls(split_patterns(text))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, raw: str | None, normalized: str | None) -> bool:
        """True when the raw number (digits and `*#` only) or the normalised one matches."""
        regex = self._regex  # type: ignore[attr-defined]
        if regex is None:
            return False
        if raw and regex.fullmatch(raw_digits(raw)):
            return True
        return bool(normalized) and regex.fullmatch(normalized) is not None

    def which(self, value: str | None) -> str | None:
        """The first pattern that matches `value` as a whole, for explanations."""
        if not value:
            return None
        for pattern in self.patterns:
            if re.fullmatch(_to_regex(pattern), value):
                return pattern
        return None


def raw_digits(raw: str) -> str:
    """The raw number reduced to what patterns look at: digits, `*` and `#`."""
    return _RAW_KEEP.sub("", raw)
