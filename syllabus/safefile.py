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
        raise UserError(
            f"expected a {what}, found a special file (FIFO, socket or device)",
            where=path,
            hint="give the path of a regular file",
        )
    return path


def read_bytes(path: Path, *, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes: a larger one is refused from its
    size before anything is read, and a file that grows while read stops at the limit."""
    path = require_regular_file(path, what)
    size = path.stat().st_size
    if size > limit:
        raise _too_large(path, size, limit)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UserError(f"cannot read this {what}: {exc.strerror or exc}", where=path) from None
    if len(data) > limit:
        raise _too_large(path, len(data), limit)
    return data


def _too_large(path: Path, size: int, limit: int) -> UserError:
    return UserError(
        f"{path.name} is {size / 2**20:.1f} MiB, more than the limit of {limit / 2**20:g} MiB",
        where=path,
        hint="it should be a short hand-written file: keep documents and large "
        "question sets out of it, and check the path",
    )


def read_text(path: Path, *, limit: int, what: str = "file") -> str:
    """UTF-8 text of a regular file of at most `limit` bytes."""
    data = read_bytes(path, limit=limit, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"this {what} is not UTF-8 text (byte {exc.start})", where=path) from None
