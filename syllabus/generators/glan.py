"""The GLAN pipeline: discipline > subjects > syllabi > questions > answers.

Disciplines run concurrently and every question flows into its answer as soon as
it is parsed, so the backend is never idle waiting for a stage to finish. Subjects
and syllabi are written into the taxonomy as editable YAML and read back from there
on the next run. Each finished row goes to `emit(node, index, row)` at once (a run
spools it to disk, so memory does not grow with the run); its key, the discipline's
position and the question index, fixes its place whatever order the answers arrived
in, so a resumed run equals an uninterrupted one.

The four stages are `Stage` definitions (`glan_stages`); `stages.StageRunner` asks
them and keeps their counts, and `plan` prices the same definitions for a dry run.
The round number enters each question's RNG and its request's sample index, so
round r asks new questions, and the same round run again asks the same requests.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..data.keys import content_hash
from ..prompts import Templates
from ..taxonomy.curriculum import Session, Subject, has_subjects, load_subjects, write_subjects, write_syllabus
from ..taxonomy.model import Node
from .parsers import parse_answer, parse_question, parse_subjects, parse_syllabus
from .sampling import Combination, draw, draw_style, question_sample
from .stages import Plan, Stage, StageRunner

STAGES = ("subjects", "syllabus", "question", "answer")


@dataclass
class NodeOutcome:
    path: str
    requested: int
    delivered: int = 0
    note: str | None = None  # why a node delivered nothing


Emit = Callable[[int, int, dict[str, Any]], None]  # (discipline position, question index, row)


@dataclass(frozen=True)
class GenerationResult:
    generated: int  # rows made (each went to `emit`)
    nodes: list[NodeOutcome]
    stats: dict[str, Any]
    failed_requests: int
    templates: dict[str, str] = field(default_factory=dict)

    def empty_reason(self) -> str | None:
        """Which stage dropped everything, and why; None when rows were made."""
        if self.generated:
            return None
        for stage in STAGES:
            stats = self.stats.get(stage)
            if stats is None:
                continue
            if stats.kept == 0 and stats.requested:
                reasons = {**stats.failed, **stats.unparsed}
                detail = (
                    ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])) or "nothing kept"
                )
                return f"stage '{stage}' kept nothing of {stats.requested} request(s): {detail}"
        notes = [f"{n.path}: {n.note}" for n in self.nodes if n.note]
        return "; ".join(notes) or "no questions were requested (--questions 0, or every node has weight 0)"


# The items each stage reads ------------------------------------------------------------
@dataclass(frozen=True)
class SyllabusItem:
    node: Node
    subject: Subject


@dataclass(frozen=True)
class QuestionItem:
    """Question `index` of a node in a round, with everything drawn for it."""

    node: Node
    index: int
    round: int
    combo: Combination
    bloom: str
    strategy: str

    def variables(self) -> dict[str, Any]:
        combo = self.combo
        return {
            "bloom_level": self.bloom,
            "strategy": self.strategy,
            "discipline": self.node,
            "subject": combo.subject,
            "sessions": combo.sessions,
            "concepts": list(combo.concepts),
            "learned": list(combo.learned),
            "syllabus": [s.title for s in combo.subject.sessions],
            "difficulty": combo.difficulty,
            "seeds": self.node.seeds,
        }


@dataclass(frozen=True)
class AnswerItem:
    question: QuestionItem
    text: str  # the parsed question


@dataclass(frozen=True)
class GlanStages:
    subjects: Stage[Node, list[Subject]]
    syllabus: Stage[SyllabusItem, list[Session]]
    question: Stage[QuestionItem, str]
    answer: Stage[AnswerItem, str]

    @property
    def all(self) -> tuple[Stage, ...]:
        return (self.subjects, self.syllabus, self.question, self.answer)


def glan_stages(settings, rejected: Counter | None = None) -> GlanStages:
    """The four GLAN stages under `settings` (a GenerationConfig). `rejected`: where the subjects
    parser counts the names it leaves out of a reply it otherwise parsed (the runner's counts)."""
    sampling = settings.stages

    def merge(found: list[list[Subject]]) -> list[Subject]:
        # Samples repeat each other: the first sample naming a subject wins, up to max_subjects.
        merged: dict[str, Subject] = {}
        for subjects in found:
            for subject in subjects:
                merged.setdefault(subject.slug, subject)
        return list(merged.values())[: settings.max_subjects]

    return GlanStages(
        subjects=Stage(
            "subjects",
            "subjects",
            sampling["subjects"],
            variables=lambda node: {"discipline": node, "count": settings.max_subjects},
            parse=lambda text: parse_subjects(text, limit=settings.max_subjects * 2, rejected=rejected),
            samples=settings.subject_samples,
            combine=merge,
        ),
        syllabus=Stage(
            "syllabus",
            "syllabus",
            sampling["syllabus"],
            variables=lambda item: {
                "subject": item.subject,
                "discipline": item.node,
                "max_sessions": settings.max_sessions,
            },
            parse=lambda text: parse_syllabus(text, settings.max_sessions),
        ),
        question=Stage(
            "question",
            "question",
            sampling["question"],
            variables=QuestionItem.variables,
            parse=parse_question,
            first_sample=lambda item: question_sample(item.index, item.round),
        ),
        answer=Stage(
            "answer",
            "answer",
            sampling["answer"],
            variables=lambda item: {**item.question.variables(), "question": item.text},
            parse=parse_answer,
        ),
    )


class GlanGenerator:
    def __init__(
        self, *, runner: StageRunner, settings, round_index: int = 0, window: int = 64, stages: GlanStages | None = None
    ):
        self.runner = runner
        self.settings = settings
        self.round_index = round_index
        self.stages = stages or glan_stages(settings, rejected=runner.counts("subjects").unparsed)
        for stage in self.stages.all:
            runner.add(stage)  # every stage is in the summary, asked or not, in pipeline order
        self.window = max(1, window)  # question-answer pairs in flight across all disciplines
        self._window = asyncio.Semaphore(self.window)

    @property
    def templates(self) -> Templates:
        return self.runner.templates

    # Stage 1 -------------------------------------------------------------------
    async def subjects_for(self, node: Node) -> list[Subject]:
        if has_subjects(node):
            return load_subjects(node)
        subjects = (await self.runner.run(self.stages.subjects, node)).results
        if subjects:  # from here on, as every later run reads them: the same order, the same text
            subjects = write_subjects(node, subjects, generated_by=self.runner.teacher.backend.model)
        return subjects

    # Stage 2 -------------------------------------------------------------------
    async def syllabus_for(self, node: Node, subject: Subject) -> Subject:
        if subject.sessions:
            return subject
        sessions = (await self.runner.run(self.stages.syllabus, SyllabusItem(node, subject))).first
        if sessions is not None:
            write_syllabus(subject, sessions)
        return subject

    # Stages 3 and 4 ------------------------------------------------------------
    def question_item(self, node: Node, subjects: list[Subject], index: int) -> QuestionItem:
        settings, round_index = self.settings, self.round_index
        combo = draw(
            subjects,
            index,
            seed=settings.seed,
            node_path=node.path,
            concepts=tuple(settings.concepts),
            two_session_ratio=settings.two_session_ratio,
            round_index=round_index,
        )
        bloom, strategy = draw_style(
            seed=settings.seed,
            node_path=node.path,
            index=index,
            bloom=node.bloom or settings.bloom,
            strategies=node.strategies or settings.strategies,
            round_index=round_index,
        )
        return QuestionItem(node, index, round_index, combo, bloom, strategy)

    async def question_and_answer(self, node: Node, subjects: list[Subject], index: int) -> dict[str, Any] | None:
        item = self.question_item(node, subjects, index)
        question = (await self.runner.run(self.stages.question, item)).first
        if question is None:
            return None
        answered = await self.runner.run(self.stages.answer, AnswerItem(item, question))
        if not answered.results:
            return None
        return self._row(item, question, answered.results[0], answered.replies[0].finish_reason)

    def _row(self, item: QuestionItem, question: str, answer: str, finish: str) -> dict:
        node, combo, stages = item.node, item.combo, self.settings.stages
        backend = self.runner.teacher.backend
        # Prompt erasure: the strategy shaped the teacher's answer, but the student is trained
        # on the question under a generic system message, so it learns to answer that way unasked.
        system = self.settings.system_prompt
        prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        return {
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": answer}],
            "bloom_level": item.bloom,
            "strategy": item.strategy,
            "taxonomy_path": node.path,
            "discipline": node.name,
            "subject": combo.subject.name,
            "level": combo.subject.level or node.level or "",
            "sessions": [s.title for s in combo.sessions],
            "session_indices": list(combo.session_indices),
            "key_concepts": list(combo.concepts),
            "difficulty": combo.difficulty,
            "question_index": item.index,
            "teacher": backend.model,
            "teacher_backend": backend.kind,
            "templates": {name: self.templates.get(name).version for name in ("question", "answer")},
            "sampling": {name: stages[name].model_dump() for name in ("question", "answer")},
            "seed": self.settings.seed,
            "round": item.round,
            "finish_reason": finish,
            "content_hash": content_hash(question, answer),
        }

    # The whole run -------------------------------------------------------------
    async def _discipline(self, position: int, node: Node, count: int, outcome: NodeOutcome, emit: Emit) -> None:
        if count <= 0:  # no question asked of it: its curriculum waits until one is (a round may give it none)
            return
        subjects = await self.subjects_for(node)
        subjects = await asyncio.gather(*(self.syllabus_for(node, s) for s in subjects))
        usable = [s for s in subjects if s.sessions]
        if not usable:
            outcome.note = "no subject with a syllabus" if subjects else "no subjects"
            return
        self.runner.expect(self.stages.question, count)  # every one of them is asked
        indices = iter(range(count))

        async def worker() -> None:
            # A fixed pool of workers per run, not one task per question: memory stays flat
            # however many questions are asked, while enough work is in flight to keep the
            # backend busy (each worker asks a question, then its answer).
            for index in indices:
                async with self._window:
                    row = await self.question_and_answer(node, usable, index)
                if row is not None:
                    emit(position, index, row)
                    outcome.delivered += 1

        await asyncio.gather(*(worker() for _ in range(min(count, self.window))))

    async def generate(self, disciplines: list[Node], budget: Mapping[str, int], emit: Emit) -> GenerationResult:
        """Ask `budget[node.path]` questions of each discipline (0 when absent); each row goes to `emit`."""
        shares = {n.path: budget.get(n.path, 0) for n in disciplines}
        outcomes = [NodeOutcome(n.path, shares[n.path]) for n in disciplines]
        await asyncio.gather(
            *(self._discipline(i, n, shares[n.path], o, emit) for i, (n, o) in enumerate(zip(disciplines, outcomes)))
        )
        return GenerationResult(
            generated=sum(o.delivered for o in outcomes),
            nodes=outcomes,
            stats={stage.name: self.runner.stats[stage.name] for stage in self.stages.all},
            failed_requests=self.runner.failed,
            templates=self.templates.versions(tuple(stage.template for stage in self.stages.all)),
        )


def plan(
    stages: GlanStages,
    templates: Templates,
    disciplines: list[Node],
    budget: Mapping[str, int],
    *,
    max_subjects: int,
    per_row: tuple[Stage, ...] = (),
) -> dict[str, dict[str, int]]:
    """Requests and token bounds per stage, priced from the stage definitions with no teacher (--dry-run).
    `per_row`: stages asked at most once per row after the pipeline (the judge), whose item is a row."""
    example = Subject("Example course", "undergraduate", ["topic"], [])
    example.sessions = [Session("Example session", ["concept one", "concept two", "concept three"])]
    estimate = Plan.of((*stages.all, *per_row))
    for node in disciplines:
        if budget.get(node.path, 0) <= 0:
            continue
        if has_subjects(node):
            subjects = load_subjects(node)
            missing = [s for s in subjects if not s.sessions]
        else:  # an upper bound: every subject the stage may keep needs a syllabus
            estimate.add(stages.subjects, templates, node, 1)
            subjects, missing = [example], [example] * max_subjects
        for subject in missing:
            estimate.add(stages.syllabus, templates, SyllabusItem(node, subject), 1)
        subject = next((s for s in subjects if s.sessions), example)
        combo = Combination(subject, (0,), tuple(subject.sessions[0].concepts[:2]), ())
        question = QuestionItem(node, 0, 0, combo, "apply", "step_by_step")
        count = budget.get(node.path, 0)
        estimate.add(stages.question, templates, question, count)
        estimate.add(stages.answer, templates, AnswerItem(question, "x" * 200), count)
        row = {
            "prompt": [{"role": "user", "content": "x" * 200}],
            "completion": [{"role": "assistant", "content": "x" * 800}],
            "discipline": node.name,
            "subject": subject.name,
            "bloom_level": "apply",
        }
        for stage in per_row:
            estimate.add(stage, templates, row, count)
    return estimate.as_dict()
