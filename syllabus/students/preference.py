"""How much a draft helps this student as an in-context example (ARTE).

The student answers a node's preference items with the draft (question and rationale)
as its only example. A draft's score is how far that moves the student from answering
alone: per item, the mean log-probability of the reference answer (teacher-forced,
batched, deterministic) with the draft minus without it; and, since the items are
graded, how many it then gets right. Scoring goes through the same backend interface as
the examination, so a local student fills its batches and a server its concurrency.

The noise floor is measured, not assumed: the zero-shot baseline is scored twice, once
with every item in one batch and once one item a request, and the largest difference is
what batching alone moves a score. A difference between drafts smaller than that says
nothing about the drafts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..backends.base import ChatRequest
from .examine import grade
from .probes import Probe


@dataclass(frozen=True)
class InContext:
    logprobs: tuple[float, ...]  # per item: mean log-probability of its reference
    correct: tuple[bool | None, ...]  # per item: graded answer (None: not gradable)

    @property
    def mean(self) -> float:
        return sum(self.logprobs) / len(self.logprobs)

    @property
    def accuracy(self) -> float | None:
        graded = [c for c in self.correct if c is not None]
        return sum(graded) / len(graded) if graded else None


def with_example(question: str, rationale: str, item: str) -> list[dict[str, str]]:
    """The item's prompt with one worked example before it, as earlier chat turns."""
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": rationale},
        {"role": "user", "content": item},
    ]


def alone(item: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": item}]


class InContextScorer:
    """Scores drafts on one node's preference items through a student backend."""

    def __init__(self, backend, items: Sequence[Probe], *, max_tokens: int = 40, grade_answers: bool = True):
        if not items:
            raise ValueError("no preference items")
        self.backend = backend
        self.items = list(items)
        self.max_tokens = max_tokens
        self.grade_answers = grade_answers

    async def _score(self, prompt_of: Callable[[str], list[dict[str, str]]], *, batched: bool = True) -> InContext:
        async def one(item: Probe) -> tuple[float, bool | None]:
            prompt = prompt_of(item.question)
            score_call = self.backend.score(prompt, [item.answer])
            if not self.grade_answers:
                (score,) = await score_call
                return score.mean, None
            request = ChatRequest.from_messages(prompt, temperature=0.0, max_tokens=self.max_tokens)
            scores, reply = await asyncio.gather(score_call, self.backend.complete(request))
            return scores[0].mean, grade(item.answer, reply.text, item.question)[1]

        if batched:
            results = await asyncio.gather(*(one(item) for item in self.items))
        else:
            results = [await one(item) for item in self.items]
        return InContext(tuple(r[0] for r in results), tuple(r[1] for r in results))

    async def baseline(self) -> InContext:
        return await self._score(alone)

    async def draft(self, question: str, rationale: str) -> InContext:
        return await self._score(lambda item: with_example(question, rationale, item))

    async def noise_floor(self, baseline: InContext) -> float:
        """The largest change of an item's score between the batched baseline and one scored alone."""
        scorer = InContextScorer(self.backend, self.items, grade_answers=False)
        again = await scorer._score(alone, batched=False)
        return max(abs(a - b) for a, b in zip(baseline.logprobs, again.logprobs))
