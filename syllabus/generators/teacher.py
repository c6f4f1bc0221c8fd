"""The teacher as the pipeline sees it: every request goes through the cache, and is counted.

A cached answer is returned without touching the backend; identical requests in
flight at once share one call (a weak teacher repeats questions, and their answer
requests are then identical); a new answer is stored the moment it arrives; a request that fails for good is recorded with its reason and
returns None so the run goes on. The counts feed the closing summary per stage.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from ..backends.base import Backend, ChatRequest, Completion, RequestFailed
from .cache import RequestCache, request_key


@dataclass
class StageStats:
    requested: int = 0
    cached: int = 0
    answered: int = 0  # new answers from the backend in this run
    parsed: int = 0
    kept: int = 0
    failed: Counter = field(default_factory=Counter)  # request failures by reason
    unparsed: Counter = field(default_factory=Counter)  # parse failures by reason
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict:
        return {
            "requested": self.requested,
            "from_cache": self.cached,
            "answered": self.answered,
            "parsed": self.parsed,
            "kept": self.kept,
            "failed": dict(self.failed),
            "unparsed": dict(self.unparsed),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class Progress(Protocol):
    def add_total(self, stage: str, count: int) -> None: ...

    def advance(self, stage: str, count: int = 1) -> None: ...


class NoProgress:
    def add_total(self, stage: str, count: int) -> None:
        pass

    def advance(self, stage: str, count: int = 1) -> None:
        pass


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
        stats = self.stage(stage)
        stats.requested += 1
        key = request_key(self.backend.kind, self.backend.model, request, template_version)
        try:
            cached = self.cache.get(key)
            if cached is not None:
                stats.cached += 1
                return cached
            if key in self._in_flight:  # the same request is on its way: share its outcome
                completion, reason = await asyncio.shield(self._in_flight[key])
                if completion is None:
                    stats.failed[reason] += 1
                else:
                    stats.cached += 1
                return completion
            future = asyncio.get_running_loop().create_future()
            self._in_flight[key] = future
            outcome: tuple[Completion | None, str] = (None, "cancelled")
            try:
                outcome = await self._send(stage, stats, key, request)
                return outcome[0]
            finally:
                future.set_result(outcome)
                del self._in_flight[key]
        finally:
            self.progress.advance(stage)

    async def _send(self, stage: str, stats: StageStats, key: str,
                    request: ChatRequest) -> tuple[Completion | None, str]:
        """(completion, "") or (None, failure reason)."""
        try:
            completion = await self.backend.complete(request)
        except RequestFailed as exc:
            stats.failed[exc.reason] += 1
            self.cache.record_failure(key, stage, exc.reason, exc.detail)
            return None, exc.reason
        self.cache.put(key, stage, completion, request)
        stats.answered += 1
        stats.prompt_tokens += completion.prompt_tokens
        stats.completion_tokens += completion.completion_tokens
        return completion, ""

    @property
    def failed(self) -> int:
        return sum(sum(s.failed.values()) for s in self.stats.values())
