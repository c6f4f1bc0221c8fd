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

With `generation.skill_mix.share` > 0 a fifth stage, `skill_mix` (skill_mix.py), asks
questions that combine a concept from each of k different disciplines; they run beside
the disciplines once those disciplines' curricula are ready, are answered by the same
answer stage, and come out after every discipline's rows (spool position: one past the
last discipline), crediting every discipline they combine.

A quota: a question that gives no row the cheap checks accept (after its stages' redraws) is
replaced by a new question of the same discipline (the next index past those asked), up to
`generation.replacements` x the questions asked of it. The refused row still goes to the
filters, which drop it and say why; the replacement is its own cached request, so a rerun
asks the same replacements and sends nothing.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..data.keys import content_hash
from ..prompts import Templates
from ..taxonomy.curriculum import Session, Subject, has_subjects, load_subjects, write_subjects, write_syllabus
from ..taxonomy.model import Node
from .filters.checks import refused
from .parsers import parse_answer, parse_question, parse_subjects, parse_syllabus
from .sampling import Combination, draw, draw_style, question_sample
from .skill_mix import DIFFICULTY as MIXED
from .skill_mix import Part, SkillMixItem, SkillMixOutcome, draw_mix, mixable, pairs_of, split_budget
from .stages import Plan, Stage, StageRunner

STAGES = ("subjects", "syllabus", "question", "skill_mix", "answer")


@dataclass
class NodeOutcome:
    path: str
    requested: int
    delivered: int = 0
    replaced: int = 0  # questions asked in place of ones that gave no row the cheap checks accept
    note: str | None = None  # why a node delivered nothing


Emit = Callable[[int, int, dict[str, Any]], None]  # (discipline position, question index, row)


@dataclass(frozen=True)
class GenerationResult:
    generated: int  # rows made (each went to `emit`)
    nodes: list[NodeOutcome]
    stats: dict[str, Any]
    failed_requests: int
    templates: dict[str, str] = field(default_factory=dict)
    skill_mix: dict[str, Any] | None = None  # SkillMixOutcome.as_dict() when mixed questions were on

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
    question: QuestionItem | SkillMixItem
    text: str  # the parsed question


@dataclass(frozen=True)
class GlanStages:
    subjects: Stage[Node, list[Subject]]
    syllabus: Stage[SyllabusItem, list[Session]]
    question: Stage[QuestionItem, str]
    answer: Stage[AnswerItem, str]
    skill_mix: Stage[SkillMixItem, str] | None = None  # only when generation.skill_mix.share > 0

    @property
    def all(self) -> tuple[Stage, ...]:
        mixed = (self.skill_mix,) if self.skill_mix is not None else ()
        return (self.subjects, self.syllabus, self.question, *mixed, self.answer)


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
            # An answer the filters' checks would drop (cut at max_tokens, restating the question) is
            # drawn again while the stage's redraws last.
            check=lambda item, answer, reply: refused(item.text, answer, reply.finish_reason, settings.filters.checks),
        ),
        skill_mix=Stage(
            "skill_mix",
            "skill_mix",
            sampling["skill_mix"],
            variables=SkillMixItem.variables,
            parse=parse_question,
            first_sample=lambda item: question_sample(item.index, item.round),
        )
        if settings.skill_mix.share > 0
        else None,
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
        self._curricula: dict[str, asyncio.Future] = {}  # node path -> its curriculum, made once per run

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

    async def question_and_answer(
        self, node: Node, subjects: list[Subject], index: int
    ) -> tuple[dict[str, Any] | None, bool]:
        """Question `index`'s row (None when a stage gave none), and whether the teacher's text was
        refused: a reply that never parsed, or an answer the cheap checks drop (the answer stage's
        last draw goes on to the filters even then). A failed request is no refusal: the next run
        asks it again, so a replacement would make that run differ from one that never failed."""
        item = self.question_item(node, subjects, index)
        asked = await self.runner.run(self.stages.question, item)
        if asked.first is None:
            return None, not asked.failed
        answered = await self.runner.run(self.stages.answer, AnswerItem(item, asked.first))
        if not answered.results:
            return None, not answered.failed
        reply = answered.replies[0]
        row = self._row(item, asked.first, answered.results[0], reply.finish_reason)
        return row, answered.refused[0] is not None

    async def _answered(self, item: QuestionItem | SkillMixItem, question: str | None) -> tuple[str, str, str] | None:
        """The answer stage on a question a question stage wrote: (question, answer, finish_reason), or None."""
        if question is None:
            return None
        answered = await self.runner.run(self.stages.answer, AnswerItem(item, question))
        return (question, answered.results[0], answered.replies[0].finish_reason) if answered.results else None

    def _pair(self, question: str, answer: str) -> dict[str, Any]:
        """The training pair. Prompt erasure: the strategy shaped the teacher's answer, but the student
        is trained on the question under a generic system message, so it learns to answer that way unasked."""
        system = self.settings.system_prompt
        prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}

    def _provenance(
        self, question_stage: str, item: QuestionItem | SkillMixItem, question: str, answer: str, finish: str
    ) -> dict[str, Any]:
        """What made the row, the same for every kind of question: teacher, templates and sampling of
        its question stage and the answer stage, seed, round, and the content hash."""
        backend, stages, names = self.runner.teacher.backend, self.settings.stages, (question_stage, "answer")
        return {
            "question_index": item.index,
            "teacher": backend.model,
            "teacher_backend": backend.kind,
            "templates": {name: self.templates.get(name).version for name in names},
            "sampling": {name: stages[name].model_dump() for name in names},
            "seed": self.settings.seed,
            "round": item.round,
            "finish_reason": finish,
            "content_hash": content_hash(question, answer),
        }

    def _row(self, item: QuestionItem, question: str, answer: str, finish: str) -> dict:
        node, combo = item.node, item.combo
        return {
            **self._pair(question, answer),
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
            **self._provenance("question", item, question, answer, finish),
        }

    # Skill-Mix questions ---------------------------------------------------------
    def skill_mix_item(self, curricula: list[tuple[Node, list[Subject]]], index: int) -> SkillMixItem:
        mix = self.settings.skill_mix
        return draw_mix(
            curricula,
            index,
            seed=self.settings.seed,
            k=mix.k,
            sentences=mix.sentences,
            bloom=self.settings.bloom,
            strategies=self.settings.strategies,
            round_index=self.round_index,
        )

    async def mixed_question_and_answer(self, item: SkillMixItem) -> dict[str, Any] | None:
        assert self.stages.skill_mix is not None  # asked only when mixing is on
        question = (await self.runner.run(self.stages.skill_mix, item)).first
        answered = await self._answered(item, question)
        return self._mixed_row(item, *answered) if answered else None

    def _mixed_row(self, item: SkillMixItem, question: str, answer: str, finish: str) -> dict:
        """A mixed question's row: the fields of a GLAN row (the first discipline's where one value
        is asked for) and every discipline, subject, session and concept it combines."""
        parts = item.parts
        first = parts[0]
        return {
            **self._pair(question, answer),
            "bloom_level": item.bloom,
            "strategy": item.strategy,
            "taxonomy_path": first.node.path,
            "taxonomy_paths": item.paths,
            "discipline": first.node.name,
            "disciplines": [p.node.name for p in parts],
            "subject": first.subject.name,
            "subjects": [p.subject.name for p in parts],
            "level": first.subject.level or first.node.level or "",
            "sessions": [p.session.title for p in parts],
            "session_indices": [p.session_index for p in parts],
            "key_concepts": [p.concept for p in parts],
            "difficulty": MIXED,
            "skill_mix": len(parts),
            **self._provenance("skill_mix", item, question, answer, finish),
        }

    async def _skill_mix(
        self,
        position: int,
        nodes: list[Node],
        count: int,
        outcomes: dict[str, NodeOutcome],
        mixed: SkillMixOutcome,
        emit: Emit,
    ) -> int:
        """Ask `count` mixed questions over `nodes` once their curricula are ready; each drawn
        question counts as requested, and each row as delivered, for every discipline in it."""
        if count <= 0 or self.stages.skill_mix is None:
            return 0
        curricula = await asyncio.gather(*(self._curriculum(node) for node in nodes))
        usable = [(node, [s for s in subjects if s.sessions]) for node, subjects in zip(nodes, curricula)]
        usable = [(node, subjects) for node, subjects in usable if subjects]
        if len(usable) < mixed.k:
            mixed.note = f"{len(usable)} discipline(s) have a syllabus; a mixed question needs {mixed.k}"
            return 0
        self.runner.expect(self.stages.skill_mix, count)
        indices = iter(range(count))

        async def worker() -> None:
            for index in indices:
                async with self._window:
                    item = self.skill_mix_item(usable, index)
                    for path in item.paths:
                        outcomes[path].requested += 1
                    mixed.pairs.update(pairs_of(item.paths))
                    row = await self.mixed_question_and_answer(item)
                if row is not None:
                    emit(position, index, row)
                    mixed.delivered += 1
                    for path in item.paths:
                        outcomes[path].delivered += 1

        await asyncio.gather(*(worker() for _ in range(min(count, self.window))))
        return mixed.delivered

    # The whole run -------------------------------------------------------------
    def _curriculum(self, node: Node) -> Awaitable[list[Subject]]:
        """The node's subjects, each with its syllabus where one could be made; made once per run
        however many of its questions (its own, and mixed ones) wait for it."""
        task = self._curricula.get(node.path)
        if task is None:
            task = self._curricula[node.path] = asyncio.ensure_future(self._make_curriculum(node))
        return task

    async def _make_curriculum(self, node: Node) -> list[Subject]:
        subjects = await self.subjects_for(node)
        return list(await asyncio.gather(*(self.syllabus_for(node, s) for s in subjects)))

    async def _discipline(self, position: int, node: Node, count: int, outcome: NodeOutcome, emit: Emit) -> int:
        """Ask `count` questions of `node`; the rows delivered."""
        if count <= 0:  # no question asked of it: its curriculum waits until one is (a round may give it none)
            return 0
        subjects = await self._curriculum(node)
        usable = [s for s in subjects if s.sessions]
        if not usable:
            outcome.note = "no subject with a syllabus" if subjects else "no subjects"
            return 0
        self.runner.expect(self.stages.question, count)  # every one of them is asked
        queue = deque(range(count))
        most = math.ceil(count * self.settings.replacements)  # replacements this node may ask
        delivered = 0

        async def worker() -> None:
            # A fixed pool of workers per run, not one task per question: memory stays flat
            # however many questions are asked, while enough work is in flight to keep the
            # backend busy (each worker asks a question, then its answer). The worker whose
            # row was refused queues its replacement and is still there to ask it.
            nonlocal delivered
            while queue:
                index = queue.popleft()
                async with self._window:
                    row, refused = await self.question_and_answer(node, usable, index)
                if row is not None:
                    emit(position, index, row)
                    outcome.delivered += 1
                    delivered += 1
                if refused and outcome.replaced < most:
                    queue.append(count + outcome.replaced)
                    outcome.replaced += 1
                    self.runner.expect(self.stages.question, 1)

        await asyncio.gather(*(worker() for _ in range(min(count, self.window))))
        return delivered

    async def generate(self, disciplines: list[Node], budget: Mapping[str, int], emit: Emit) -> GenerationResult:
        """Ask `budget[node.path]` questions of each discipline (0 when absent); each row goes to `emit`.
        With Skill-Mix on, `share` of the budget of the disciplines that may be mixed is asked as
        mixed questions instead (`skill_mix.split_budget`): the total asked is the budget."""
        shares = {n.path: budget.get(n.path, 0) for n in disciplines}
        self._curricula = {}
        mix = self.settings.skill_mix
        mixing = mixable(disciplines, shares, mix.exclude) if self.stages.skill_mix is not None else []
        singles, mixed_count = split_budget(shares, mix.share, mix.k, [n.path for n in mixing])
        mixed = SkillMixOutcome(mix.share, mix.k, requested=mixed_count)
        if self.stages.skill_mix is not None and not mixed_count and mix.share > 0:
            mixed.note = f"{len(mixing)} discipline(s) to mix with questions asked of them; {mix.k} needed"
        outcomes = [NodeOutcome(n.path, singles[n.path]) for n in disciplines]
        by_path = {o.path: o for o in outcomes}
        delivered = await asyncio.gather(
            *(self._discipline(i, n, singles[n.path], o, emit) for i, (n, o) in enumerate(zip(disciplines, outcomes))),
            self._skill_mix(len(disciplines), mixing, mixed_count, by_path, mixed, emit),
        )
        return GenerationResult(
            generated=sum(delivered[: len(disciplines)]) + mixed.delivered,
            nodes=outcomes,
            stats={stage.name: self.runner.stats[stage.name] for stage in self.stages.all},
            failed_requests=self.runner.failed,
            templates=self.templates.versions(tuple(stage.template for stage in self.stages.all)),
            skill_mix=mixed.as_dict() if self.stages.skill_mix is not None else None,
        )


def plan(
    stages: GlanStages,
    templates: Templates,
    disciplines: list[Node],
    budget: Mapping[str, int],
    *,
    max_subjects: int,
    per_row: tuple[Stage, ...] = (),
    skill_mix=None,
    per_mixed_row: tuple[Stage, ...] = (),
) -> dict[str, dict[str, int]]:
    """Requests and token bounds per stage, priced from the stage definitions with no teacher (--dry-run).
    `per_row`: stages asked at most once per row after the pipeline (the judge), whose item is a row.
    `skill_mix`: generation.skill_mix, whose share of the budget is priced as mixed questions when
    `stages.skill_mix` is on; `per_mixed_row`: stages asked once per mixed row (its rubric)."""
    example = Subject("Example course", "undergraduate", ["topic"], [])
    example.sessions = [Session("Example session", ["concept one", "concept two", "concept three"])]
    estimate = Plan.of((*stages.all, *per_mixed_row, *per_row))
    shares = {n.path: budget.get(n.path, 0) for n in disciplines}
    mixing = mixable(disciplines, shares, skill_mix.exclude) if skill_mix and stages.skill_mix else []
    singles, mixed = split_budget(
        shares, skill_mix.share if mixing else 0.0, skill_mix.k if mixing else 2, [n.path for n in mixing]
    )
    curricula: dict[str, Subject] = {}  # node path -> a subject with a syllabus (or the example)
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
        subject = curricula[node.path] = next((s for s in subjects if s.sessions), example)
        combo = Combination(subject, (0,), tuple(subject.sessions[0].concepts[:2]), ())
        question = QuestionItem(node, 0, 0, combo, "apply", "step_by_step")
        count = singles[node.path]
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
    if mixed and stages.skill_mix is not None:
        parts = tuple(
            Part(node, curricula[node.path], 0, curricula[node.path].sessions[0].concepts[0])
            for node in mixing[: skill_mix.k]
        )
        item = SkillMixItem(0, 0, parts, "apply", "step_by_step", skill_mix.sentences)
        estimate.add(stages.skill_mix, templates, item, mixed)
        estimate.add(stages.answer, templates, AnswerItem(item, "x" * 200), mixed)
        mixed_row = {
            "prompt": [{"role": "user", "content": "x" * 200}],
            "completion": [{"role": "assistant", "content": "x" * 800}],
            "discipline": parts[0].node.name,
            "disciplines": [p.node.name for p in parts],
            "subject": parts[0].subject.name,
            "subjects": [p.subject.name for p in parts],
            "sessions": [p.session.title for p in parts],
            "key_concepts": [p.concept for p in parts],
            "bloom_level": "apply",
            "skill_mix": len(parts),
        }
        for stage in (*per_mixed_row, *per_row):
            estimate.add(stage, templates, mixed_row, mixed)
    return estimate.as_dict()
