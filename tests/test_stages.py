"""The stage runner: a stage defined here alone (a definition and a template) runs through the
same runner as the GLAN stages, with n samples per item, and every count lands in its summary.

The end-to-end test asks the real llama.cpp server; failures by reason come from the fault
server (a real server cannot be told to fail)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from fault_server import MODEL, Fault, fault_server  # noqa: F401  (the fixture)

from syllabus.backends.openai_backend import OpenAIBackend
from syllabus.generators.cache import RequestCache
from syllabus.generators.parsers import ParseError
from syllabus.generators.stages import Plan, Stage, StageRunner
from syllabus.generators.teacher import CachedTeacher
from syllabus.project import StageSampling
from syllabus.prompts import Templates

# The toy stage: one template and one definition, nothing else anywhere -------------------
TOY_TEMPLATE = """[[system]]
You answer with one English word.
[[user]]
Name one colour that {{ thing }} can be. Answer with one word.
"""


def parse_word(text: str) -> str:
    words = re.findall(r"[A-Za-z]+", text)
    if not words:
        raise ParseError("no word")
    return words[0].lower()


def toy_stage(samples: int = 3, parse=parse_word, name: str = "toy") -> Stage:
    return Stage(
        name,
        "toy",
        StageSampling(temperature=0.0, max_tokens=8),
        variables=lambda thing: {"thing": thing},
        parse=parse,
        samples=samples,
        combine=lambda words: sorted(set(words)),
    )  # distinct colours of one item are its results


def rejecting(text: str) -> str:
    raise ParseError("never good enough")


class Bars:
    """A progress sink that remembers every total and advance, per bar."""

    def __init__(self):
        self.total: Counter = Counter()
        self.done: Counter = Counter()
        self.order: list[str] = []

    def add_total(self, stage, count):
        if stage not in self.order:
            self.order.append(stage)
        self.total[stage] += count

    def advance(self, stage, count=1):
        self.done[stage] += count


@pytest.fixture
def toy_templates(tmp_path) -> Templates:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "toy.j2").write_text(TOY_TEMPLATE)
    return Templates(prompts)


def run_stage(base_url: str, model: str, cache_file: Path, templates: Templates, stages, items, bars=None):
    """Each stage over `items` through a fresh teacher on `cache_file`: (outputs per stage, runner)."""

    async def main():
        backend = OpenAIBackend(
            model=model, base_urls=[base_url], api_key=None, concurrency=2, max_retries=0, timeout=60
        )
        cache = RequestCache(cache_file)
        runner = StageRunner(CachedTeacher(backend, cache), templates, bars)
        try:
            return [await runner.run_all(stage, items) for stage in stages], runner
        finally:
            await backend.aclose()
            cache.close()

    return asyncio.run(main())


def asked(cache_file: Path, stage: str) -> list[dict]:
    import sqlite3

    with sqlite3.connect(cache_file) as db:
        return [json.loads(r) for (r,) in db.execute("SELECT request FROM answers WHERE stage = ?", (stage,))]


# Against the real server ----------------------------------------------------------------
@pytest.mark.server
def test_a_toy_stage_runs_with_three_samples_per_item_and_is_counted(llama_server, toy_templates, tmp_path):
    cache_file, items = tmp_path / "cache.sqlite", ["the sky", "grass"]
    before = llama_server.wait_idle(quiet=1.0)
    bars = Bars()
    (outputs, strict), runner = run_stage(
        llama_server.base_url,
        "smollm2",
        cache_file,
        toy_templates,
        [toy_stage(), toy_stage(parse=rejecting, name="strict")],
        items,
        bars,
    )

    # n = 3 is three requests per item (the server returns one choice even for n > 1), told apart by sample_index.
    assert llama_server.wait_idle(quiet=1.0) - before == 6  # the rejecting stage asked the same: from the cache
    requests = asked(cache_file, "toy")
    assert sorted(r["sample_index"] for r in requests) == [0, 0, 1, 1, 2, 2]
    assert {r["messages"][-1]["content"] for r in requests} == {
        f"Name one colour that {thing} can be. Answer with one word." for thing in items
    }

    summary = runner.summary()
    assert list(summary) == ["toy", "strict"]
    toy = summary["toy"]
    assert (toy["requested"], toy["answered"], toy["from_cache"], toy["failed"]) == (6, 6, 0, {})
    assert toy["parsed"] + sum(toy["unparsed"].values()) == 6
    assert toy["parsed"] == sum(len(o.values) for o in outputs) and all(
        len(o.replies) == len(o.values) for o in outputs
    )
    assert toy["kept"] == sum(len(o.results) for o in outputs)  # distinct colours per item
    assert all(o.results == sorted(set(o.values)) for o in outputs)
    assert toy["completion_tokens"] > 0
    # A second stage asking the very same requests is served by the cache; its parser's reason is counted.
    assert summary["strict"]["requested"] == summary["strict"]["from_cache"] == 6
    assert summary["strict"]["answered"] == summary["strict"]["parsed"] == summary["strict"]["kept"] == 0
    assert summary["strict"]["unparsed"] == {"never good enough": 6}
    assert not any(o.results for o in strict)

    # The bars: as many advanced as announced, none patched by hand.
    assert bars.order == ["toy", "strict"]
    assert bars.total == bars.done == Counter({"toy": 6, "strict": 6})

    # The same stage again on the same cache: no request, all from the cache.
    again_before = llama_server.wait_idle(quiet=1.0)
    (again,), rerun = run_stage(llama_server.base_url, "smollm2", cache_file, toy_templates, [toy_stage()], items)
    assert llama_server.wait_idle(quiet=1.0) == again_before
    assert rerun.summary()["toy"]["from_cache"] == 6 and rerun.summary()["toy"]["answered"] == 0
    assert [o.values for o in again] == [o.values for o in outputs]


# Failures by reason -----------------------------------------------------------------------
def test_failed_and_unparsed_samples_are_counted_by_reason(fault_server, toy_templates, tmp_path):
    server = fault_server()
    server.set_faults(Fault("500", first=2))  # the first two requests to arrive fail (no retries here)
    cache_file = tmp_path / "cache.sqlite"
    bars = Bars()
    strict = Stage(
        "strict",
        "toy",
        StageSampling(temperature=0.0, max_tokens=8),
        variables=lambda thing: {"thing": thing},
        parse=rejecting,
        samples=3,
    )
    (outputs,), runner = run_stage(
        server.base_url, MODEL, cache_file, toy_templates, [strict], ["the sea", "a leaf"], bars
    )
    stats = runner.summary()["strict"]
    assert stats["requested"] == 6 and stats["failed"] == {"HTTP 500": 2}
    assert stats["answered"] == 4 and stats["unparsed"] == {"never good enough": 4}
    assert stats["parsed"] == stats["kept"] == 0 and not any(o.results for o in outputs)
    assert runner.failed == 2
    assert bars.total["strict"] == bars.done["strict"] == 6


# The dry run prices a stage from its definition -------------------------------------------
def test_a_plan_prices_a_stage_from_its_definition(toy_templates):
    stage = toy_stage(samples=3)
    plan = Plan.of([stage])
    plan.add(stage, toy_templates, "the sky", 4)
    chars = sum(len(m["content"]) for m in toy_templates.render("toy", thing="the sky"))
    assert plan.as_dict() == {
        "toy": {"requests": 12, "prompt_tokens": 12 * (chars // 4 + 8), "max_completion_tokens": 12 * 8}
    }


def test_a_stage_needs_at_least_one_sample():
    with pytest.raises(ValueError, match="samples must be >= 1"):
        toy_stage(samples=0)


# Redraws ----------------------------------------------------------------------------------
def _redrawing(name: str, parse=parse_word, check=None, redraws: int = 2, samples: int = 1) -> Stage:
    return Stage(
        name,
        "toy",
        StageSampling(temperature=0.9, max_tokens=8, redraws=redraws),
        variables=lambda thing: {"thing": thing},
        parse=parse,
        samples=samples,
        check=check,
    )


@pytest.mark.server
def test_a_refused_draw_is_drawn_again_as_its_own_cached_request_and_a_rerun_asks_nothing(
    llama_server, toy_templates, tmp_path
):
    from syllabus.generators.stages import REDRAW_STRIDE

    cache_file, items = tmp_path / "cache.sqlite", ["the sky", "grass"]
    seen: Counter = Counter()

    def first_refused(thing, word, reply):  # each item's first draw is refused, the next one kept
        seen[thing] += 1
        return "refused once" if seen[thing] == 1 else None

    never = _redrawing("never", check=lambda thing, word, reply: "never kept")
    unparsable = _redrawing("unparsable", parse=rejecting)
    bars = Bars()
    (once, kept_last, nothing), runner = run_stage(
        llama_server.base_url,
        "smollm2",
        cache_file,
        toy_templates,
        [_redrawing("once", check=first_refused), never, unparsable],
        items,
        bars,
    )
    summary = runner.summary()
    # Refused once: two draws an item, the second kept.
    assert summary["once"]["requested"] == 4 and summary["once"]["redrawn"] == {"refused once": 2}
    assert summary["once"]["kept"] == 2 and all(len(o.values) == 1 for o in once)
    indices = sorted(r["sample_index"] for r in asked(cache_file, "once"))
    assert indices == [0, 0, REDRAW_STRIDE, REDRAW_STRIDE]
    # Never passing: the bound holds (1 + 2 draws), and the last draw goes on to the filters.
    assert summary["never"]["requested"] == 6 and summary["never"]["redrawn"] == {"never kept": 4}
    assert summary["never"]["kept"] == 2 and all(len(o.values) == 1 for o in kept_last)
    # Never parsing: the bound holds, the last failure is counted as unparsed.
    assert summary["unparsable"]["redrawn"] == {"never good enough": 4}
    assert summary["unparsable"]["unparsed"] == {"never good enough": 2}
    assert summary["unparsable"]["kept"] == 0 and not any(o.values for o in nothing)
    assert bars.total == bars.done  # every redraw announced on its bar and advanced

    # Again on the same cache, the same checks: every draw from the cache, the same words kept.
    seen.clear()
    before = llama_server.wait_idle(quiet=1.0)
    (again, _, _), rerun = run_stage(
        llama_server.base_url,
        "smollm2",
        cache_file,
        toy_templates,
        [_redrawing("once", check=first_refused), never, unparsable],
        items,
    )
    assert llama_server.wait_idle(quiet=1.0) == before
    assert rerun.summary()["once"]["from_cache"] == 4 and rerun.summary()["once"]["answered"] == 0
    assert [o.values for o in again] == [o.values for o in once]
