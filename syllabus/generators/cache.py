"""The request cache, which is also the resume mechanism.

Every request is stored under a content hash of everything that determines its
answer: backend kind, model, messages, sampling settings, sample index and the
template version. Concurrency, paths and timeouts are deliberately not in it. A
rerun after a crash finds every finished answer here and sends only the rest.
SQLite in WAL mode: each answer is committed as it arrives, and a kill -9 loses at
most the requests that were in flight. Within an event loop the answers that arrive in
one turn of the loop share one transaction (committed at the end of that turn, before any
further reply is read): a commit costs more than an insert (about 60 of 110 µs here), and
at high concurrency several replies land in each turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from pathlib import Path

from ..backends.base import ChatRequest, Completion

KEY_VERSION = 1  # bump when the key's recipe changes, so old entries are not misread


def request_key(backend_kind: str, model: str, request: ChatRequest, template_version: str) -> str:
    payload = {
        "v": KEY_VERSION,
        "backend": backend_kind,
        "model": model,
        "messages": request.messages,
        "sampling": request.sampling(),
        "sample_index": request.sample_index,
        "template": template_version,
    }
    return payload_key(payload)


def payload_key(payload: dict) -> str:
    """The content hash of a request's payload: `request_key`'s for chat requests; other requests
    (a served teacher's top-k, students/served_teacher.py) hash their own payload, with its own keys."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, stage TEXT, text TEXT, finish_reason TEXT,"
            " prompt_tokens INTEGER, completion_tokens INTEGER, created REAL, request TEXT)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS failures (key TEXT PRIMARY KEY, stage TEXT, reason TEXT, detail TEXT,"
            " attempts INTEGER, updated REAL)"
        )
        # Keys with a recorded failure (few): an answer clears its failure without a second
        # statement, so storing an answer is one commit.
        self._failed = {key for (key,) in self._db.execute("SELECT key FROM failures")}
        self._commit_soon = False  # a transaction is open and a commit is scheduled on the loop
        self._failed_commit: sqlite3.Error | None = None  # raised to the next caller (disk full ...)

    def _write(self, sql: str, params: tuple) -> None:
        """Run one write: in the open transaction of this loop turn, or committed at once
        when no event loop runs (a synchronous caller)."""
        self._raise_failed_commit()
        if not self._commit_soon:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._db.execute(sql, params)
                return
            self._db.execute("BEGIN")
            self._commit_soon = True
            loop.call_soon(self.commit)
        self._db.execute(sql, params)

    def commit(self) -> None:
        """End the open transaction, if any (at the end of the loop turn that opened it). A commit
        that fails (a full disk) is rolled back and its error raised by the next call to the cache,
        so it ends the run as the same write would have without the batching: a callback on the
        loop has no caller to raise to."""
        if self._commit_soon:
            self._commit_soon = False
            try:
                if self._db.in_transaction:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._failed_commit = exc
                if self._db.in_transaction:
                    try:
                        self._db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the connection is closed with the run; the error above is what counts

    def _raise_failed_commit(self) -> None:
        if self._failed_commit is not None:
            raise self._failed_commit

    def get(self, key: str) -> Completion | None:
        self._raise_failed_commit()
        row = self._db.execute(
            "SELECT text, finish_reason, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
        ).fetchone()
        return Completion(row[0], row[1], row[2], row[3]) if row else None

    def put(self, key: str, stage: str, completion: Completion, request: ChatRequest | None = None) -> None:
        """Store an answer; with `request`, also what was asked (messages and sampling), for audits."""
        asked = None
        if request is not None:
            asked = request.json_with({**request.sampling(), "sample_index": request.sample_index})
        self._write(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                stage,
                completion.text,
                completion.finish_reason,
                completion.prompt_tokens,
                completion.completion_tokens,
                time.time(),
                asked,
            ),
        )
        if key in self._failed:
            self._write("DELETE FROM failures WHERE key = ?", (key,))
            self._failed.discard(key)

    def record_failure(self, key: str, stage: str, reason: str, detail: str) -> None:
        self._write(
            "INSERT INTO failures VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET"
            " reason = excluded.reason, detail = excluded.detail, attempts = attempts + 1, updated = excluded.updated",
            (key, stage, reason, detail, time.time()),
        )
        self._failed.add(key)

    def count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._db.close()
        self._raise_failed_commit()
