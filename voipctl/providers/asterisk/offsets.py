"""Reading `Master.csv` from where the last run stopped, whole lines only, rotation seen.

cdr_csv opens the file, appends one record and closes it again for every call
(cdr/cdr_csv.c `writefile`), and never truncates or rotates it: the file grows for
ever unless logrotate (or the operator) moves it aside. So a run remembers where
it stopped, as a `ReadOffset` the caller stores: the file's device and inode, the
byte offset after the last whole line read, how many lines that was, and a digest
of the first line. The next run goes on from there, unless the file is not the
one it was:

- another inode: the file was moved aside and a new one begun. The old file,
  when it is `Master.csv.1` (logrotate's first name) with the remembered inode
  and first line, is read to its end first; then the new file from its start;
- shorter than the offset (truncated, logrotate's copytruncate), or its first
  line changed (rewritten in place): the file is read from its start.

A last line without its newline is being written (or was cut by a crash) and is
left for the next run: the offset stops before it. A moved-aside file gets no
more lines, so its last line is read even without a newline.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from voipctl.errors import DataError

CHUNK = 1 << 16
# cdr/cdr_csv.c csv_log(): a record is built in `char buf[1024]` and not written
# when it does not fit, so no record (with its newline) is longer.
RECORD_MAX = 1024
ROTATED_SUFFIX = ".1"  # logrotate's name for the previous file (no dateext, no compression)


@dataclass(frozen=True, slots=True)
class ReadOffset:
    """Where a read of one file stopped. `first_line` is None until a first line is whole."""

    path: str
    device: int
    inode: int
    offset: int
    lines: int
    first_line: str | None

    def to_text(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> ReadOffset:
        try:
            data = json.loads(text)
            return cls(
                path=str(data["path"]),
                device=int(data["device"]),
                inode=int(data["inode"]),
                offset=int(data["offset"]),
                lines=int(data["lines"]),
                first_line=None if data["first_line"] is None else str(data["first_line"]),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise DataError(f"stored Master.csv offset is not readable ({exc})") from None


@dataclass(frozen=True, slots=True)
class Line:
    """One whole line: the file it is in, its number there (from 1), its text (no newline)."""

    file: str
    lineno: int
    text: str


def _first_line_digest(path: Path) -> str | None:
    with path.open("rb") as f:
        first = f.readline()
    if not first.endswith(b"\n"):
        return None
    return hashlib.sha256(first).hexdigest()


class MasterCsvReader:
    """The new whole lines of one Master.csv since `previous` (None: from the start).

    Iterate `lines()`; `offset` is then where the lines yielded so far end, to be
    stored by the caller once it has kept what they gave. `notes` says what the
    read found on the way (a rotation, a truncation, a moved-aside file not found).
    """

    def __init__(self, path: str | Path, previous: ReadOffset | None = None):
        self.path = Path(path)
        self.previous = previous
        self.notes: list[str] = []
        self.offset: ReadOffset | None = previous

    def lines(self) -> Iterator[Line]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise DataError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise DataError(f"{self.path}: cannot be read ({exc.strerror})") from None
        prev = self.previous
        start, lines = 0, 0
        if prev is not None and prev.offset > 0:
            same_file = (st.st_dev, st.st_ino) == (prev.device, prev.inode)
            if same_file and st.st_size < prev.offset:
                self.notes.append(
                    f"{self.path} is shorter than where the last read stopped "
                    f"(byte {prev.offset}): truncated, read from its start"
                )
            elif same_file and _first_line_digest(self.path) != prev.first_line:
                self.notes.append(f"{self.path} has another first line: read from its start")
            elif same_file:
                start, lines = prev.offset, prev.lines
            else:
                yield from self._rotated(prev)
        yield from self._read(self.path, st, start, lines, final=False)

    def _rotated(self, prev: ReadOffset) -> Iterator[Line]:
        old = self.path.with_name(self.path.name + ROTATED_SUFFIX)
        try:
            st = os.stat(old)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != (prev.device, prev.inode):
            self.notes.append(
                f"{self.path} was replaced and {old.name} is not the file last read: "
                f"lines written to the old file after byte {prev.offset} were not read"
            )
            return
        if _first_line_digest(old) != prev.first_line or st.st_size < prev.offset:
            self.notes.append(f"{old} is not the file last read: not read")
            return
        self.notes.append(f"{self.path} was rotated: {old.name} read to its end first")
        yield from self._read(old, st, prev.offset, prev.lines, final=True)

    def _read(
        self, path: Path, st: os.stat_result, start: int, lines: int, *, final: bool
    ) -> Iterator[Line]:
        # While a moved-aside file is read the offset names it (its inode), so a
        # run stopped half-way goes on in it next time.
        shown = str(path)
        first = self.previous.first_line if start > 0 and self.previous else None
        pos = start
        with path.open("rb") as f:
            f.seek(start)
            tail: list[bytes] = []
            for record, count, closed in _records(_physical_lines(f, tail)):
                if not closed and not final:
                    break  # a record still being written: left for the next run
                pos += len(record) + 1
                lineno = lines + 1
                lines += count
                if first is None:
                    first = _first_line_digest(path)
                self.offset = ReadOffset(str(self.path), st.st_dev, st.st_ino, pos, lines, first)
                yield Line(shown, lineno, record.decode("utf-8", "replace"))
            if final and tail and tail[0]:
                # A moved-aside file gets no more lines: its cut last line is read too.
                pos += len(tail[0])
                lines += 1
                self.offset = ReadOffset(str(self.path), st.st_dev, st.st_ino, pos, lines, first)
                yield Line(shown, lines, tail[0].decode("utf-8", "replace"))
        current = self.offset
        if not final and (
            current is None or (current.device, current.inode) != (st.st_dev, st.st_ino)
        ):
            # Nothing whole in this file yet: remember it from its start.
            self.offset = ReadOffset(str(self.path), st.st_dev, st.st_ino, 0, 0, None)


def _physical_lines(f, tail: list[bytes]) -> Iterator[bytes]:
    """The file's lines that end in a newline (without it); what follows the last goes in `tail`."""
    pending = b""
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            break
        pending += chunk
        parts = pending.split(b"\n")
        pending = parts.pop()
        yield from parts
    tail.append(pending)


def _records(physical: Iterator[bytes]) -> Iterator[tuple[bytes, int, bool]]:
    """Physical lines -> (record, how many lines it spans, closed).

    cdr_csv quotes every text field and doubles a quote inside one, but writes a
    newline inside a field as it is: a line with an odd number of quotes goes on
    on the next line. A record is shorter than cdr_csv's buffer (RECORD_MAX), so
    lines that reach it without closing their quotes are not one record: the
    first is given alone (its reader sets it aside) and the rest read again.
    The lines left open at the end come last, not closed.
    """
    queue: deque[bytes] = deque()
    held: list[bytes] = []
    quotes = size = 0
    while True:
        if queue:
            part = queue.popleft()
        else:
            part = next(physical, None)
            if part is None:
                break
        held.append(part)
        quotes += part.count(b'"')
        size += len(part) + 1
        if quotes % 2 == 0:
            yield b"\n".join(held), len(held), True
        elif size >= RECORD_MAX:
            yield held[0], 1, True
            queue.extendleft(reversed(held[1:]))
        else:
            continue
        held, quotes, size = [], 0, 0
    if held:
        yield b"\n".join(held), len(held), False
