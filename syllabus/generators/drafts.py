"""Drafts for alignment: K questions per node and R rationales each, before any is kept.

ARTE asks the teacher for draft questions and several rationales per question, each in
a different reasoning strategy, then lets the student say which help. These are the GLAN
question and answer stages, asked through the same runner and cache as a generation, so
a draft is never asked twice and a killed run resumes: rationale r of a question is the
answer stage under the r-th strategy (the strategies of `generation.strategies`, in turn
from the question's index), and drafts are asked in a round of their own, so they never
repeat a generation round's questions.

Each draft keeps the question stage's rendered prompt: a question-level preference pair
is "this prompt, this question over that one", which is what the teacher is trained on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from ..taxonomy.model import Node
from .glan import AnswerItem, GlanGenerator

ALIGN_ROUND = 1000  # the draft round of `syllabus align`; loop rounds are far below it


@dataclass(frozen=True)
class Draft:
    node: str
    question_index: int
    rationale_index: int
    question: str
    rationale: str
    strategy: str
    bloom_level: str
    question_prompt: tuple[tuple[str, str], ...]  # the question stage's messages that asked it
    finish_reason: str = "stop"

    @property
    def id(self) -> str:
        return f"{self.node}#q{self.question_index}r{self.rationale_index}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "question_index": self.question_index,
            "rationale_index": self.rationale_index,
            "question": self.question,
            "rationale": self.rationale,
            "strategy": self.strategy,
            "bloom_level": self.bloom_level,
            "question_prompt": [{"role": r, "content": c} for r, c in self.question_prompt],
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Draft:
        return cls(
            node=row["node"],
            question_index=row["question_index"],
            rationale_index=row["rationale_index"],
            question=row["question"],
            rationale=row["rationale"],
            strategy=row["strategy"],
            bloom_level=row["bloom_level"],
            question_prompt=tuple((m["role"], m["content"]) for m in row["question_prompt"]),
            finish_reason=row.get("finish_reason", "stop"),
        )


async def node_drafts(
    generator: GlanGenerator, node: Node, *, questions: int, rationales: int, strategies: list[str]
) -> list[Draft]:
    """Up to `questions` x `rationales` drafts of `node` (fewer where the teacher's reply did not parse)."""
    subjects = await generator.subjects_for(node)
    subjects = await asyncio.gather(*(generator.syllabus_for(node, s) for s in subjects))
    usable = [s for s in subjects if s.sessions]
    if not usable:
        return []
    stages, runner = generator.stages, generator.runner
    runner.expect(stages.question, questions)

    async def one(index: int) -> list[Draft]:
        item = generator.question_item(node, usable, index)
        question = (await runner.run(stages.question, item)).first
        if question is None:
            return []
        prompt = tuple(
            (m["role"], m["content"]) for m in generator.templates.render(stages.question.template, **item.variables())
        )
        styles = [strategies[(index + r) % len(strategies)] for r in range(rationales)]
        answered = await asyncio.gather(
            *(runner.run(stages.answer, AnswerItem(replace(item, strategy=s), question)) for s in styles)
        )
        return [
            Draft(
                node.path,
                index,
                r,
                question,
                out.results[0],
                styles[r],
                item.bloom,
                prompt,
                out.replies[0].finish_reason,
            )
            for r, out in enumerate(answered)
            if out.results
        ]

    found = await asyncio.gather(*(one(i) for i in range(questions)))
    return [draft for group in found for draft in group]
