"""Atomic file writes: a crash or a kill never leaves a half-written file behind.

Every file the project writes goes through here: the content lands in a temporary
file in the same folder, is flushed to disk, and replaces the target in one rename.
The temporary file is made 0600 by `mkstemp`; it gets the mode the file would have had
otherwise (the old file's, or what the umask gives a new one) before anything is written,
so an edit never makes a shared file private, nor a private one readable.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def jsonl_text(rows: Iterable[Any]) -> str:
    """Rows as JSON Lines, one object a line, non-ASCII kept readable."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def atomic_write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    """Replace `path` with `rows` as JSON Lines in one step: a reader never sees half a file."""
    atomic_write_text(path, jsonl_text(rows))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path, binary=True) as handle:
        handle.write(data)


@contextmanager
def atomic_writer(path: Path, *, binary: bool = False) -> Iterator[IO]:
    """A file to write (UTF-8 text, or bytes) that appears at `path` only when the block ends
    without an error; on any error (or a kill) the target is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        exc.filename = str(path)  # the error names the file the user knows, not our temporary one
        raise
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), _mode_for(path))
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and (exc.filename == tmp or (exc.filename is None and exc.errno in _FULL)):
            exc.filename = str(path)  # the error names the file the user knows, not our temporary one
        raise


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write or flush that found no room: it was this file's


def _mode_for(path: Path) -> int:
    """The permission bits `path` keeps (its current ones), or those a new file gets (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS tells it (Linux: /proc/self/status);
    elsewhere set and restored at once, under a lock, since a umask is process-wide."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _umask_lock:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def replace_dir(staging: Path, target: Path) -> None:
    """Put the finished folder `staging` at `target`, replacing an older one with two renames."""
    import shutil
    import uuid

    target = Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
