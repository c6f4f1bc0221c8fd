"""The teacher as the pipeline sees it: every request goes through the cache, and is counted.

A cached answer is returned without touching the backend; identical requests in
flight at once share one call (a weak teacher repeats questions, and their answer
requests are then identical); a new answer is stored the moment it arrives; a request that fails for good is recorded with its reason and
returns None so the run goes on. `fetch` says where each answer came from and leaves
the counting to its caller (the stage runner, `stages.py`, owns a run's counts);
`ask` is `fetch` counted into this teacher's own per-stage stats, for callers that
are not stages (taxonomy expansion).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from ..backends.base import Backend, ChatRequest, Completion, RequestFailed
from ..progress import NoProgress, Progress
from .cache import RequestCache, request_key

log = logging.getLogger(__name__)


@dataclass
class StageStats:
    requested: int = 0
    cached: int = 0
    answered: int = 0  # new answers from the backend in this run
    parsed: int = 0
    kept: int = 0
    failed: Counter = field(default_factory=Counter)  # request failures by reason
    unparsed: Counter = field(default_factory=Counter)  # parse failures by reason
    redrawn: Counter = field(default_factory=Counter)  # draws asked again, by why the one before was refused
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def record(self, fetched: Fetched) -> None:
        """Count one request by where its answer came from: the one counting rule for requests."""
        self.requested += 1
        if fetched.completion is None:
            self.failed[fetched.reason] += 1
        elif fetched.source == BACKEND:
            self.answered += 1
            self.prompt_tokens += fetched.completion.prompt_tokens
            self.completion_tokens += fetched.completion.completion_tokens
        else:  # from the cache, or shared with an identical request in flight
            self.cached += 1

    def as_dict(self) -> dict:
        return {
            "requested": self.requested,
            "from_cache": self.cached,
            "answered": self.answered,
            "parsed": self.parsed,
            "kept": self.kept,
            "failed": dict(self.failed),
            "unparsed": dict(self.unparsed),
            "redrawn": dict(self.redrawn),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


CACHE, SHARED, BACKEND, FAILED = "cache", "shared", "backend", "failed"


@dataclass(frozen=True)
class Fetched:
    """One request's outcome: the completion (None when it failed) and where it came from."""

    completion: Completion | None
    source: str  # CACHE | SHARED | BACKEND | FAILED
    reason: str = ""  # why it failed


class CachedTeacher:
    def __init__(self, backend: Backend, cache: RequestCache, progress: Progress | None = None):
        self.backend = backend
        self.cache = cache
        self.progress = progress or NoProgress()
        self.stats: dict[str, StageStats] = {}
        self._in_flight: dict[str, asyncio.Future] = {}  # identical requests share one call

    def stage(self, name: str) -> StageStats:
        return self.stats.setdefault(name, StageStats())

    async def ask(self, stage: str, request: ChatRequest, template_version: str) -> Completion | None:
        """`fetch`, counted into `self.stats` and this teacher's progress."""
        try:
            fetched = await self.fetch(stage, request, template_version)
            self.stage(stage).record(fetched)
            return fetched.completion
        finally:
            self.progress.advance(stage)

    async def fetch(self, stage: str, request: ChatRequest, template_version: str) -> Fetched:
        """The answer to `request` from the cache, a call in flight, or the backend; counts nothing."""
        identity = getattr(self.backend, "cache_identity", None) or self.backend.model  # see LocalBackend
        key = request_key(self.backend.kind, identity, request, template_version)
        cached = self.cache.get(key)
        if cached is not None:
            return Fetched(cached, CACHE)
        if key in self._in_flight:  # the same request is on its way: share its outcome
            completion, reason = await asyncio.shield(self._in_flight[key])
            return Fetched(completion, SHARED) if completion is not None else Fetched(None, FAILED, reason)
        future = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        outcome: tuple[Completion | None, str] = (None, "cancelled")
        try:
            outcome = await self._send(stage, key, request)
        finally:
            future.set_result(outcome)
            del self._in_flight[key]
        completion, reason = outcome
        return Fetched(completion, BACKEND) if completion is not None else Fetched(None, FAILED, reason)

    async def _send(self, stage: str, key: str, request: ChatRequest) -> tuple[Completion | None, str]:
        """(completion, "") or (None, failure reason)."""
        try:
            completion = await self.backend.complete(request)
        except RequestFailed as exc:
            self.cache.record_failure(key, stage, exc.reason, exc.detail)
            # %r: the detail is the server's text, and its newlines must not forge log lines.
            log.warning("stage %s: a request failed for good (%s): %r", stage, exc.reason, exc.detail)
            return None, exc.reason
        self.cache.put(key, stage, completion, request)
        return completion, ""

    @property
    def failed(self) -> int:
        return sum(sum(s.failed.values()) for s in self.stats.values())
