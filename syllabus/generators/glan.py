"""The GLAN pipeline: discipline > subjects > syllabi > questions > answers.

Disciplines run concurrently and every question flows into its answer as soon as
it is parsed, so the backend is never idle waiting for a stage to finish. Subjects
and syllabi are written into the taxonomy as editable YAML and read back from there
on the next run. Each finished row goes to `emit(node, index, row)` at once (a run
spools it to disk, so memory does not grow with the run); its key, the discipline's
position and the question index, fixes its place whatever order the answers arrived
in, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import ChatRequest
from ..data.keys import content_hash
from ..prompts import Templates
from ..taxonomy.curriculum import Subject, has_subjects, load_subjects, write_subjects, write_syllabus
from ..taxonomy.model import Node
from .parsers import ParseError, parse_answer, parse_question, parse_subjects, parse_syllabus
from .sampling import Combination, allocate, draw, draw_style
from .teacher import CachedTeacher

STAGES = ("subjects", "syllabus", "question", "answer")


@dataclass
class NodeOutcome:
    path: str
    requested: int
    delivered: int = 0
    note: str | None = None  # why a node delivered nothing


Emit = Callable[[int, int, dict[str, Any]], None]  # (discipline position, question index, row)


@dataclass
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
                detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])) or "nothing kept"
                return f"stage '{stage}' kept nothing of {stats.requested} request(s): {detail}"
        notes = [f"{n.path}: {n.note}" for n in self.nodes if n.note]
        return "; ".join(notes) or "no questions were requested (--questions 0, or every node has weight 0)"


class GlanGenerator:
    def __init__(self, *, teacher: CachedTeacher, templates: Templates, settings, round_index: int = 0,
                 window: int = 64):
        self.teacher = teacher
        self.templates = templates
        self.settings = settings
        self.round_index = round_index
        self.window = max(1, window)  # question-answer pairs in flight across all disciplines
        self._window = asyncio.Semaphore(self.window)
        self._curriculum_locks: dict[str, asyncio.Lock] = {}

    def _request(self, stage: str, messages: list[dict[str, str]], sample_index: int = 0) -> ChatRequest:
        sampling = self.settings.stages[stage]
        return ChatRequest.from_messages(messages, temperature=sampling.temperature, top_p=sampling.top_p,
                                         max_tokens=sampling.max_tokens, sample_index=sample_index)

    async def _ask(self, stage: str, template: str, context: dict, sample_index: int = 0):
        messages = self.templates.render(template, **context)
        request = self._request(stage, messages, sample_index)
        return await self.teacher.ask(stage, request, self.templates.get(template).version)

    # Stage 1 -------------------------------------------------------------------
    async def subjects_for(self, node: Node) -> list[Subject]:
        if has_subjects(node):
            return load_subjects(node)
        samples = self.settings.subject_samples
        self.teacher.progress.add_total("subjects", samples)
        context = {"discipline": node, "count": self.settings.max_subjects}
        replies = await asyncio.gather(*(self._ask("subjects", "subjects", context, i) for i in range(samples)))
        stats = self.teacher.stage("subjects")
        merged: dict[str, Subject] = {}
        for reply in replies:
            if reply is None:
                continue
            try:
                found = parse_subjects(reply.text, limit=self.settings.max_subjects * 2, rejected=stats.unparsed)
            except ParseError as exc:
                stats.unparsed[str(exc)] += 1
                continue
            stats.parsed += 1
            for subject in found:
                merged.setdefault(subject.slug, subject)
        subjects = list(merged.values())[: self.settings.max_subjects]
        stats.kept += len(subjects)
        if subjects:  # from here on, as every later run reads them: the same order, the same text
            subjects = write_subjects(node, subjects, generated_by=self.teacher.backend.model)
        return subjects

    # Stage 2 -------------------------------------------------------------------
    async def syllabus_for(self, node: Node, subject: Subject) -> Subject:
        stats = self.teacher.stage("syllabus")
        if subject.sessions:
            return subject
        self.teacher.progress.add_total("syllabus", 1)
        reply = await self._ask("syllabus", "syllabus",
                                {"subject": subject, "discipline": node, "max_sessions": self.settings.max_sessions})
        if reply is None:
            return subject
        try:
            sessions = parse_syllabus(reply.text, self.settings.max_sessions)
        except ParseError as exc:
            stats.unparsed[str(exc)] += 1
            return subject
        stats.parsed += 1
        stats.kept += 1
        write_syllabus(subject, sessions)
        return subject

    # Stages 3 and 4 ------------------------------------------------------------
    async def question_and_answer(self, node: Node, subjects: list[Subject], index: int) -> dict[str, Any] | None:
        combo = draw(subjects, index, seed=self.settings.seed, node_path=node.path,
                     concepts=tuple(self.settings.concepts), two_session_ratio=self.settings.two_session_ratio)
        bloom, strategy = draw_style(seed=self.settings.seed, node_path=node.path, index=index,
                                     bloom=node.bloom or self.settings.bloom,
                                     strategies=node.strategies or self.settings.strategies)
        context = {
            "bloom_level": bloom,
            "strategy": strategy,
            "discipline": node,
            "subject": combo.subject,
            "sessions": combo.sessions,
            "concepts": list(combo.concepts),
            "learned": list(combo.learned),
            "syllabus": [s.title for s in combo.subject.sessions],
            "difficulty": combo.difficulty,
            "seeds": node.seeds,
        }
        q_stats, a_stats = self.teacher.stage("question"), self.teacher.stage("answer")
        reply = await self._ask("question", "question", context, index)
        if reply is None:
            self.teacher.progress.advance("answer")
            return None
        try:
            question = parse_question(reply.text)
        except ParseError as exc:
            q_stats.unparsed[str(exc)] += 1
            self.teacher.progress.advance("answer")
            return None
        q_stats.parsed += 1
        q_stats.kept += 1
        answer_reply = await self._ask("answer", "answer", {**context, "question": question}, 0)
        if answer_reply is None:
            return None
        try:
            answer = parse_answer(answer_reply.text)
        except ParseError as exc:
            a_stats.unparsed[str(exc)] += 1
            return None
        a_stats.parsed += 1
        a_stats.kept += 1
        return self._row(node, combo, index, question, answer, answer_reply.finish_reason, bloom, strategy)

    def _row(self, node: Node, combo: Combination, index: int, question: str, answer: str, finish: str,
             bloom: str, strategy: str) -> dict:
        stages = self.settings.stages
        # Prompt erasure: the strategy shaped the teacher's answer, but the student is trained
        # on the question under a generic system message, so it learns to answer that way unasked.
        system = self.settings.system_prompt
        prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
        return {
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": answer}],
            "bloom_level": bloom,
            "strategy": strategy,
            "taxonomy_path": node.path,
            "discipline": node.name,
            "subject": combo.subject.name,
            "level": combo.subject.level or node.level or "",
            "sessions": [s.title for s in combo.sessions],
            "session_indices": list(combo.session_indices),
            "key_concepts": list(combo.concepts),
            "difficulty": combo.difficulty,
            "question_index": index,
            "teacher": self.teacher.backend.model,
            "teacher_backend": self.teacher.backend.kind,
            "templates": {name: self.templates.get(name).version for name in ("question", "answer")},
            "sampling": {name: stages[name].model_dump() for name in ("question", "answer")},
            "seed": self.settings.seed,
            "round": self.round_index,
            "finish_reason": finish,
            "content_hash": content_hash(question, answer),
        }

    # The whole run -------------------------------------------------------------
    async def _discipline(self, position: int, node: Node, count: int, outcome: NodeOutcome, emit: Emit) -> None:
        subjects = await self.subjects_for(node)
        subjects = await asyncio.gather(*(self.syllabus_for(node, s) for s in subjects))
        usable = [s for s in subjects if s.sessions]
        if not usable:
            outcome.note = "no subject with a syllabus" if subjects else "no subjects"
            self.teacher.progress.advance("question", count)
            self.teacher.progress.advance("answer", count)
            return
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

    async def generate(self, disciplines: list[Node], total_questions: int, emit: Emit) -> GenerationResult:
        """Run the pipeline for `total_questions` shared by weight; each row goes to `emit`."""
        shares = allocate(total_questions, {n.path: n.weight for n in disciplines})
        outcomes = [NodeOutcome(n.path, shares[n.path]) for n in disciplines]
        self.teacher.progress.add_total("question", sum(shares.values()))
        self.teacher.progress.add_total("answer", sum(shares.values()))
        await asyncio.gather(*(self._discipline(i, n, shares[n.path], o, emit)
                               for i, (n, o) in enumerate(zip(disciplines, outcomes))))
        return GenerationResult(
            generated=sum(o.delivered for o in outcomes),
            nodes=outcomes,
            stats={stage: self.teacher.stage(stage) for stage in STAGES},
            failed_requests=self.teacher.failed,
            templates=self.templates.versions(("subjects", "syllabus", "question", "answer")),
        )

    def plan(self, disciplines: list[Node], total_questions: int) -> dict[str, dict[str, int]]:
        """Requests and token estimates per stage, without calling the teacher (--dry-run)."""
        shares = allocate(total_questions, {n.path: n.weight for n in disciplines})
        example = Subject("Example course", "undergraduate", ["topic"], [])
        from ..taxonomy.curriculum import Session

        example.sessions = [Session("Example session", ["concept one", "concept two", "concept three"])]
        plan = {stage: {"requests": 0, "prompt_tokens": 0, "max_completion_tokens": 0} for stage in STAGES}

        def add(stage: str, template: str, context: dict, count: int) -> None:
            if count <= 0:
                return
            chars = sum(len(m["content"]) for m in self.templates.render(template, **context))
            plan[stage]["requests"] += count
            plan[stage]["prompt_tokens"] += count * (chars // 4 + 8)
            plan[stage]["max_completion_tokens"] += count * self.settings.stages[stage].max_tokens

        for node in disciplines:
            if has_subjects(node):
                subjects = load_subjects(node)
                missing = [s for s in subjects if not s.sessions]
            else:
                add("subjects", "subjects", {"discipline": node, "count": self.settings.max_subjects},
                    self.settings.subject_samples)
                subjects, missing = [example], [example] * self.settings.max_subjects
            for subject in missing:
                add("syllabus", "syllabus", {"subject": subject, "discipline": node,
                                             "max_sessions": self.settings.max_sessions}, 1)
            usable = [s for s in subjects if s.sessions] or [example]
            context = {"discipline": node, "subject": usable[0], "sessions": usable[0].sessions[:1],
                       "concepts": usable[0].sessions[0].concepts[:2], "learned": [],
                       "syllabus": [s.title for s in usable[0].sessions], "difficulty": "single-session",
                       "seeds": node.seeds, "bloom_level": "apply", "strategy": "step_by_step"}
            add("question", "question", context, shares[node.path])
            add("answer", "answer", {**context, "question": "x" * 200}, shares[node.path])
            if self.settings.filters.judge.enabled:  # at most one judgement per row
                plan.setdefault("judge", {"requests": 0, "prompt_tokens": 0, "max_completion_tokens": 0})
                add("judge", "judge", {"question": "x" * 200, "answer": "x" * 800, "discipline": node.name,
                                       "subject": usable[0].name, "bloom_level": "apply"}, shares[node.path])
        return plan
