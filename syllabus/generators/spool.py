"""Rows on disk while a run makes them, so a run's memory does not grow with its size.

The pipeline hands each finished row to the spool; the filters and the writers read
them back, in taxonomy order, a chunk at a time. The spool is scratch space, not a
record: the request cache is what makes a run resumable, so the spool skips journaling
and syncing, and is deleted when the run ends (a killed run's leftover is removed by
the next one).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PREFIX = ".rows-"
COMMIT_EVERY = 2000  # rows per transaction: inserts stay cheap, the page cache stays small


class RowSpool:
    def __init__(self, folder: Path):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(f"{PREFIX}*.sqlite*"):  # left by a killed run
            _remove_if_orphaned(stale)
        self.path = folder / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.sqlite"
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE rows (node INTEGER, idx INTEGER, body TEXT, PRIMARY KEY (node, idx))")
        self._pending = 0
        self._count = 0
        self._db.execute("BEGIN")

    def add(self, node: int, index: int, row: dict[str, Any]) -> None:
        """Store a finished row under its place in the taxonomy order (node, question index)."""
        self._db.execute(
            "INSERT OR REPLACE INTO rows VALUES (?, ?, ?)", (node, index, json.dumps(row, ensure_ascii=False))
        )
        self._count += 1
        self._pending += 1
        if self._pending >= COMMIT_EVERY:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
            self._pending = 0

    def __len__(self) -> int:
        return self._count

    def chunks(self, size: int) -> Iterator[list[tuple[tuple[int, int], dict[str, Any]]]]:
        """Every row with its key, in taxonomy order, `size` at a time."""
        self._flush()
        cursor = self._db.execute("SELECT node, idx, body FROM rows ORDER BY node, idx")
        while batch := cursor.fetchmany(size):
            yield [((node, idx), json.loads(body)) for node, idx, body in batch]

    def rows(self, keys: Iterable[tuple[int, int]]) -> Iterator[dict[str, Any]]:
        """The rows under `keys`, in the order given."""
        self._flush()
        for node, idx in keys:
            (body,) = self._db.execute("SELECT body FROM rows WHERE node = ? AND idx = ?", (node, idx)).fetchone()
            yield json.loads(body)

    def _flush(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._pending = 0

    def close(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> RowSpool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _remove_if_orphaned(path: Path) -> None:
    """Delete a spool whose process is gone (its pid is in the name); leave a live run's alone."""
    try:
        pid = int(path.name[len(PREFIX) :].split("-", 1)[0])
    except ValueError:
        return
    if pid == os.getpid():
        return  # this process's own spool (a run keeps two)
    try:
        os.kill(pid, 0)
        return  # still running: another run in this folder
    except ProcessLookupError:
        pass
    except PermissionError:
        return
    path.unlink(missing_ok=True)
