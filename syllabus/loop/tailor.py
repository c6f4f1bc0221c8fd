"""Tailor a round to the student's mistakes: its own retries first, the teacher's corrections after.

Which mistakes: up to PICK_FACTOR x a node's budget of its wrong exam answers, in a
seeded order (the same on every run). For each, the student first tries again without a
hint (`self_answers` samples: STaR, RFT): its own right answers are the best rows it can
have, in its own words. Where none of its samples is sound, the teacher is handed the
question, the student's answer and the reference (the correction stage: STaR's
rationalization, Learn-to-Reason's customised rationale); the hint never enters the
training prompt. This module only asks and records; which draft becomes a row is
select.py's decision.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

from ..backends.base import ChatRequest
from ..data.keys import content_hash
from ..generators.corrections import Mistake
from ..generators.stages import Stage, StageRunner
from ..taxonomy.model import Node

PICK_FACTOR = 2  # mistakes tried per row a node may use: about half the drafts of a small teacher miss


def sft_row(question: str, answer: str, node: str, round_index: int, source: str) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": question}],
        "completion": [{"role": "assistant", "content": answer}],
        "taxonomy_path": node,
        "round": round_index,
        "source": source,
        "content_hash": content_hash(question, answer),
    }


def degenerate(answer: str, finish_reason: str) -> str | None:
    """Why the student's answer is no use as a DPO negative, or None."""
    if not answer.strip():
        return "empty"
    if finish_reason == "length":
        return "cut at max_tokens"
    words = re.findall(r"\w+", answer.casefold())
    grams = Counter(tuple(words[i : i + 3]) for i in range(len(words) - 2))
    if grams and grams.most_common(1)[0][1] >= 3:
        return "repeats itself"
    return None


def pick(mistakes: list[dict[str, Any]], budgets: Mapping[str, int], *, seed: int, round_index: int) -> list[dict]:
    """Up to PICK_FACTOR x budget mistakes per node, in a seeded order (the same on every run)."""
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for mistake in mistakes:
        by_node[mistake["node"]].append(mistake)
    chosen = []
    for node in sorted(by_node):
        group = list(by_node[node])
        random.Random(f"tailor:{seed}:{round_index}:{node}").shuffle(group)
        chosen.extend(group[: PICK_FACTOR * budgets.get(node, 0)])
    return chosen


async def self_answers(
    backend, mistakes: list[dict[str, Any]], *, samples: int, temperature: float, max_tokens: int, progress=None
) -> list[dict[str, Any]]:
    """`samples` unhinted answers of the student to each mistake's plain question: {text, finish_reason}."""
    import asyncio

    async def one(mistake: dict[str, Any], index: int) -> dict[str, Any]:
        request = ChatRequest.from_messages(
            [{"role": "user", "content": mistake["question"]}],
            temperature=temperature,
            max_tokens=max_tokens,
            sample_index=index,
        )
        done = await backend.complete(request)
        if progress:
            progress(1)
        return {"text": done.text, "finish_reason": done.finish_reason}

    found = await asyncio.gather(*(one(m, i) for m in mistakes for i in range(samples)))
    return [{**m, "samples": list(found[j * samples : (j + 1) * samples])} for j, m in enumerate(mistakes)]


async def corrections(
    runner: StageRunner, stage: Stage[Mistake, str], mistakes: list[dict[str, Any]], nodes: Mapping[str, Node]
) -> list[dict[str, Any]]:
    """The teacher's hinted drafts for each mistake (question, its wrong answer and the reference)."""
    asked = [Mistake(nodes[m["node"]], m["question"], m["reference"], m["student_answer"]) for m in mistakes]
    outputs = await runner.run_all(stage, asked)
    return [{**m, "drafts": list(output.values)} for m, output in zip(mistakes, outputs)]
