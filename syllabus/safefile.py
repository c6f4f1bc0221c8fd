"""Reading the files people hand us, without hanging or running out of memory.

A path from a project or an option can be a folder, a FIFO (reading it blocks forever),
a device, or a file of gigabytes. Every reader of user files goes through here, so each
of those is one clear error naming the file, not a hang, a MemoryError or a traceback.
"""

from __future__ import annotations

import stat
from pathlib import Path

from .errors import UserError


def require_regular_file(path: Path, what: str = "file") -> Path:
    """`path` if it is a regular file (a symlink to one counts); else a UserError saying what it is."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{what} not found", where=path) from None
    except OSError as exc:
        raise UserError(f"cannot read this {what}: {exc.strerror or exc}", where=path) from None
    if stat.S_ISDIR(mode):
        raise UserError(f"expected a {what}, found a folder", where=path)
    if not stat.S_ISREG(mode):
        raise UserError(f"expected a {what}, found a special file (FIFO, socket or device)", where=path,
                        hint="give the path of a regular file")
    return path


def read_bytes(path: Path, *, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes."""
    path = require_regular_file(path, what)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UserError(f"cannot read this {what}: {exc.strerror or exc}", where=path) from None
    if len(data) > limit:
        raise UserError(f"this {what} is larger than {limit // (1 << 20) or 1} MiB", where=path,
                        hint="it should be a short hand-written file; check the path")
    return data


def read_text(path: Path, *, limit: int, what: str = "file") -> str:
    """UTF-8 text of a regular file of at most `limit` bytes."""
    data = read_bytes(path, limit=limit, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"this {what} is not UTF-8 text (byte {exc.start})", where=path) from None
