"""Files and directories voipctl creates are private, whatever the umask.

The database, captured emails and imported templates hold client names, numbers
and balances: files are created 0600 and directories 0700 (docs/install.md,
"Files and secrets"). Directories that already exist are left as they are.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Create `path` and any missing parents, each created one 0700; existing ones untouched."""
    path = Path(path).expanduser()
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by another run: theirs
        os.chmod(directory, DIR_MODE)  # mkdir's mode is masked by the umask


def write_private(path: Path, data: bytes) -> None:
    """Write `path` whole (through a temporary file beside it), mode 0600."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a run that died: its mode is not ours to keep
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is masked by the umask
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
    finally:
        if fd >= 0:
            os.close(fd)
    os.replace(tmp, path)


@contextmanager
def private_umask() -> Iterator[None]:
    """Run the block with umask 077: files a library creates (SQLite's) come out private."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)
