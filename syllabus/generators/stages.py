"""Stages, and the one runner that asks them.

A stage is one kind of request to the teacher, described as data: its template, its
sampling settings, how many samples each item gets, a function from an item to the
template's variables, and a parser for the reply (plus, where one item's samples are
merged, how). `StageRunner` does the rest for every stage alike: it renders, asks
through the cached teacher, parses, and owns every count (requested, cached,
answered, parsed, kept, failed and unparsed by reason) and the progress bar. Nothing
else counts, so the numbers in the summary cannot drift from what was asked.
Adding a stage is one `Stage(...)` plus one template (and its sampling defaults in
`project.STAGE_SAMPLING`). `estimate` prices a stage from the same definition, so a
dry run plans exactly what a run would ask.

Sample i of an item is sent with `sample_index = first_sample(item) + i`: the
sample index is part of the cache key, so n samples of one prompt are n requests
(a server that returns one choice for n > 1 makes no difference), and the same item
asks the same requests on every run.

A draw whose reply does not parse, or that the stage's cheap `check` refuses (an answer
cut at max_tokens, one that restates the question), is drawn again, up to `redraws`
times (`generation.stages.<stage>.redraws`): redraw r of sample i has
`sample_index = first + i + r * REDRAW_STRIDE`, its own cached request, so a rerun asks
nothing again and the same draws win. A small teacher's refused draw is a sample to draw
again, not a lost row (distilabel's num_generations, rejection sampling). The last draw
is used whatever it is: a refused one goes on to the filters, which drop it with its
reason, as without redraws.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..backends.base import ChatRequest, Completion
from ..progress import NoProgress, Progress
from ..prompts import Templates
from .parsers import ParseError
from .teacher import CachedTeacher, StageStats

ItemT = TypeVar("ItemT")  # an item, whatever the stage reads
T = TypeVar("T")  # a parsed reply


REDRAW_STRIDE = 1_000_000  # redraws' sample indices, apart from any item's first ones


def _first_sample(item: Any) -> int:
    return 0


@dataclass(frozen=True)
class Stage(Generic[ItemT, T]):
    name: str  # the key of its counts, its progress bar and its cache records
    template: str  # a prompts/ template name
    sampling: Any  # temperature, top_p, max_tokens (project.StageSampling)
    variables: Callable[[ItemT], dict[str, Any]]  # the template's variables for one item
    parse: Callable[[str], T]  # the reply's text -> value; raises ParseError with a short reason
    samples: int = 1  # requests per item
    first_sample: Callable[[ItemT], int] = _first_sample  # sample_index of an item's first request
    combine: Callable[[list[T]], list[Any]] | None = None  # an item's results from its parsed samples
    # Why a parsed draw is not worth keeping (drawn again while redraws last), or None.
    check: Callable[[ItemT, T, Completion], str | None] | None = None

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"stage '{self.name}': samples must be >= 1, got {self.samples}")

    def request(self, messages: list[dict[str, str]], sample_index: int) -> ChatRequest:
        s = self.sampling
        return ChatRequest.from_messages(
            messages,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            frequency_penalty=s.frequency_penalty,
            sample_index=sample_index,
        )


@dataclass(frozen=True)
class StageOutput(Generic[T]):
    """What one item got from a stage."""

    values: list[T]  # the parsed samples, in sample order
    replies: list[Completion]  # their completions (finish_reason, tokens), aligned with `values`
    results: list[Any]  # `combine(values)`, or the values themselves; each one counts as kept
    refused: list[str | None] = field(default_factory=list)  # per value: why `check` refused its last draw
    failed: int = 0  # samples whose request failed for good (asked again by the next run)

    @property
    def first(self) -> Any | None:
        return self.results[0] if self.results else None


class StageRunner:
    """Runs stages through one cached teacher; owns their counts and progress bars."""

    def __init__(
        self,
        teacher: CachedTeacher,
        templates: Templates,
        progress: Progress | None = None,
        stages: Iterable[Stage] = (),
    ):
        self.teacher = teacher
        self.templates = templates
        self.progress = progress or NoProgress()
        self.stats: dict[str, StageStats] = {}
        self._expected: Counter = Counter()  # requests whose bar total is already added
        for stage in stages:
            self.add(stage)

    def add(self, stage: Stage) -> StageStats:
        """Register a stage: its counts exist (zeros) and its bar is shown, in the order added."""
        return self.counts(stage.name)

    def counts(self, name: str) -> StageStats:
        """The counts of the stage called `name` (registered now if new), for a parser that
        reports what it left out of a reply it otherwise parsed."""
        if name not in self.stats:
            self.stats[name] = StageStats()
            self.progress.add_total(name, 0)
        return self.stats[name]

    def expect(self, stage: Stage, items: int) -> None:
        """Show `items` items on the bar now, ahead of `run`; only for items that will surely run."""
        self.add(stage)
        count = items * stage.samples
        self._expected[stage.name] += count
        self.progress.add_total(stage.name, count)

    async def run(self, stage: Stage[ItemT, T], item: ItemT) -> StageOutput[T]:
        stats = self.add(stage)
        if self._expected[stage.name] >= stage.samples:
            self._expected[stage.name] -= stage.samples
        else:
            self.progress.add_total(stage.name, stage.samples)
        messages = self.templates.render(stage.template, **stage.variables(item))
        version = self.templates.get(stage.template).version
        first = stage.first_sample(item)

        redraws = getattr(stage.sampling, "redraws", 0)
        failed = 0

        async def ask(index: int) -> Completion | None:
            try:
                fetched = await self.teacher.fetch(stage.name, stage.request(messages, index), version)
                stats.record(fetched)
                return fetched.completion
            finally:
                self.progress.advance(stage.name)

        async def one(i: int) -> tuple[Completion, T, str | None] | None:
            """Sample i: its first draw, and while one is refused and redraws last, another."""
            nonlocal failed
            for r in range(redraws + 1):
                if r:
                    self.progress.add_total(stage.name, 1)
                reply = await ask(first + i + r * REDRAW_STRIDE)
                if reply is None:
                    failed += 1
                    return None  # a failed request is counted as failed; the next run asks it again
                try:
                    value = stage.parse(reply.text)
                except ParseError as exc:
                    if r < redraws:
                        stats.redrawn[str(exc)] += 1
                        continue
                    stats.unparsed[str(exc)] += 1
                    return None
                why = stage.check(item, value, reply) if stage.check is not None else None
                if why is None or r == redraws:
                    return reply, value, why
                stats.redrawn[why] += 1
            return None  # pragma: no cover - the loop returns on its last draw

        if stage.samples == 1:
            drawn = [await one(0)]
        else:
            drawn = await asyncio.gather(*(one(i) for i in range(stage.samples)))
        kept = [d for d in drawn if d is not None]
        values = [value for _, value, _ in kept]
        stats.parsed += len(values)
        results = stage.combine(values) if stage.combine is not None else values
        stats.kept += len(results)
        return StageOutput(values, [reply for reply, _, _ in kept], results, [why for _, _, why in kept], failed)

    async def run_all(self, stage: Stage[ItemT, T], items: list[ItemT]) -> list[StageOutput[T]]:
        self.expect(stage, len(items))
        return list(await asyncio.gather(*(self.run(stage, item) for item in items)))

    @property
    def failed(self) -> int:
        """Requests that failed for good, over every stage."""
        return sum(sum(s.failed.values()) for s in self.stats.values())

    def summary(self) -> dict[str, dict]:
        return {name: stats.as_dict() for name, stats in self.stats.items()}


@dataclass
class Estimate:
    """Requests and token bounds of one stage, for a dry run."""

    requests: int = 0
    prompt_tokens: int = 0
    max_completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "max_completion_tokens": self.max_completion_tokens,
        }


@dataclass
class Plan:
    """Estimates per stage, in the order stages were first named."""

    stages: dict[str, Estimate] = field(default_factory=dict)

    @classmethod
    def of(cls, stages: Iterable[Stage]) -> Plan:
        """A plan listing `stages` in this order, each at zero until priced."""
        return cls({stage.name: Estimate() for stage in stages})

    def add(self, stage: Stage, templates: Templates, item: Any, items: int) -> None:
        """`items` items like `item`: each renders its template once and asks `stage.samples` requests.
        Prompt tokens are estimated at 4 characters a token."""
        estimate = self.stages.setdefault(stage.name, Estimate())
        if items <= 0:
            return
        requests = items * stage.samples
        chars = sum(len(m["content"]) for m in templates.render(stage.template, **stage.variables(item)))
        estimate.requests += requests
        estimate.prompt_tokens += requests * (chars // 4 + 8)
        estimate.max_completion_tokens += requests * stage.sampling.max_tokens

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {name: estimate.as_dict() for name, estimate in self.stages.items()}
