"""The kept text of a set-aside record: control characters escaped, reversibly, and bounded.

Backslash becomes `\\\\`; C0 and C1 controls, DEL, line and paragraph separators,
bidi controls and lone surrogates become `\\xNN` / `\\uNNNN`. `unescape` gives the
text back exactly (so `--retry-rejected` reads what the provider sent), unless it
was cut at RAW_MAX characters, which `CUT_MARK` at its end says.
"""

from __future__ import annotations

import re

RAW_MAX = 4000
CUT_MARK = "\\[cut]"

_UNSAFE = re.compile(
    "[\\\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _one(match: re.Match) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """The text with its unsafe characters escaped, at most RAW_MAX characters."""
    out = _UNSAFE.sub(_one, text)
    if len(out) > RAW_MAX:
        cut = out[: RAW_MAX - len(CUT_MARK)]
        # Never end inside an escape.
        tail = cut.rfind("\\", len(cut) - 6)
        if tail != -1 and not _ESCAPE.fullmatch(cut[tail:]):
            cut = cut[:tail]
        out = cut + CUT_MARK
    return out


def was_cut(kept: str) -> bool:
    return kept.endswith(CUT_MARK)


def unescape(kept: str) -> str:
    """The original text of `escape(text)` (when it was not cut)."""

    def back(match: re.Match) -> str:
        body = match.group(1)
        return "\\" if body == "\\" else chr(int(body[1:], 16))

    return _ESCAPE.sub(back, kept)
