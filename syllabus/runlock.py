"""One run at a time in a run folder: an exclusive lock held for the whole `generate`.

Two runs in one folder would both send every request the cache does not hold yet (they
start from the same cache) and trip over each other's spool and dataset staging. So a
run takes an exclusive `flock` on a lock file inside its folder before anything else and
keeps it until it returns. The kernel drops the lock when the process ends, however it
ends (kill -9 included), so a killed run never blocks the next one and there is no stale
lock to clean up. The holder writes its pid into the file, for the refusal to name.

A second run refuses at once (exit 2) rather than waiting: a run can last hours, a
command that silently waits for another looks hung, and git, apt and terraform refuse
the same way by default. Whoever wants to queue runs can wait for the first to exit.
The lock file stays (removing it would let a third run lock a fresh file while a second
still holds the old one); it is hidden and a few bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError
from .outdir import claim

LOCK_FILE = ".syllabus-lock"
RUN_LEGACY = ("cache.sqlite", "summary.json", "dropped.jsonl")  # what run folders held before the marker


@contextmanager
def run_folder(folder: Path) -> Iterator[Path]:
    """The run folder, claimed (outdir.claim: never a folder the tool did not make) and held
    by this run alone until the block ends; UserError when another run holds it."""
    folder = claim(folder, "run", legacy=RUN_LEGACY, option="--run")
    with hold(folder, what="generate run", option="--run"):
        yield folder


@contextmanager
def hold(folder: Path, *, what: str, option: str) -> Iterator[None]:
    """An exclusive lock on `folder` for the block, or UserError naming the holder's pid."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs there are not guarded
        yield
        return
    path = Path(folder) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise UserError(
                f"another {what} is using this folder ({holder}); two at once would send the same requests twice",
                where=folder,
                hint=f"wait until it ends (rerunning then resumes from the cache), or give {option} another folder",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


def _holder(fd: int) -> str:
    """ "pid N" as the holder wrote it, or a vaguer phrase when it has not written it yet."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return f"pid {text}" if text.isdigit() else "a process that is just starting"
