"""The closed loop: tailored rounds until the student stops improving (`syllabus distill`).

Round 0 examines the untrained student. Round k then:

1. allocate: the round's rows per node from the dev scores so far (budgets.py);
2. correct: the teacher corrects the student's wrong exam answers (tailor.py), grounded
   in the references; up to a node's budget of them are used;
   (align, with `--align`: `syllabus align` on the weakest nodes that get GLAN rows, for the
   student as it stands; the aligned teacher writes this round's rows);
3. generate: GLAN rows for the rest of each node's budget, round-aware (round k asks new
   questions) and decontaminated against every dev and test question;
4. assemble: corrections + generated rows + a replayed share of earlier rounds' rows, each
   once (content hash), refused if a dev or test question is among them;
5. train: SFT from the previous round's student, then DPO on correction vs wrong answer;
6. examine the new student on every node's exam and dev items; record; stop or go on.

`--baseline` runs the same rounds without feedback: budgets by node weight, all of them
GLAN rows, no corrections, no DPO, the same training recipe, so a loop and its baseline
compare at equal rows on the same items. Each step's outputs are whole before the step
is marked done in state.json (state.py), so a kill costs at most the step in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..data.read import iter_jsonl
from ..data.rows import answer_of, question_of
from ..data.shares import allocate as by_weight
from ..errors import UserError
from ..fsutil import atomic_write_jsonl, atomic_write_text, jsonl_text
from ..layout import ProjectLayout, RoundLayout, RunLayout
from ..project import Project
from ..runlock import run_folder
from . import examination as exams
from .budgets import BudgetRule, Decision, allocate
from .decide import RoundScores, best_round, forgot, stop_reason
from .items import Items, load_items
from .state import LoopState, fingerprint
from .tailor import Tailored, sft_row

log = logging.getLogger(__name__)

STEPS = ("allocate", "correct", "generate", "assemble", "train", "examine")
STEPS_ALIGNED = ("allocate", "correct", "align", "generate", "assemble", "train", "examine")
ALIGN_NODES = 2  # the weakest nodes a round aligns the teacher on (`--align`)
ALIGN_DIR = "align"  # rounds/<k>/align: that round's alignment


class LoopView(Protocol):
    """What a watcher is told: the step begun, the bars of its work, each round's scores."""

    def step(self, round_index: int, step: str) -> None: ...

    def add_total(self, stage: str, count: int) -> None: ...

    def advance(self, stage: str, count: int = 1) -> None: ...

    def round_done(self, record: dict[str, Any]) -> None: ...


class _AlignStepView:
    """The loop's view, as the alignment inside a round sees it."""

    def __init__(self, view: LoopView, round_index: int):
        self.view, self.round_index = view, round_index

    def step(self, step: str) -> None:
        pass  # the loop shows "align" as one step; its stages get bars of their own

    def add_total(self, stage: str, count: int) -> None:
        self.view.add_total(stage, count)

    def advance(self, stage: str, count: int = 1) -> None:
        self.view.advance(stage, count)


class QuietView:
    def step(self, round_index: int, step: str) -> None:
        pass

    def add_total(self, stage: str, count: int) -> None:
        pass

    def advance(self, stage: str, count: int = 1) -> None:
        pass

    def round_done(self, record: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class DistillOptions:
    rounds: int | None = None  # default: loop.rounds
    budget: int | None = None  # rows per round; default: loop.budget
    run_dir: Path | None = None  # default: runs/distill (runs/distill-baseline with baseline)
    seed: int | None = None  # default: generation.seed
    baseline: bool = False
    test: Path | None = None  # the user's test items: read only to refuse training data holding one
    teacher: str | None = None
    student: str | None = None
    align: bool = False  # each round aligns the teacher on its weakest nodes first (`syllabus align`)
    relative_to: Path | None = None  # where relative paths start; default the project
    command: str = "syllabus distill"


@dataclass
class DistillOutcome:
    run_dir: Path
    summary: dict[str, Any]
    rounds_run: list[int] = field(default_factory=list)  # rounds this call completed (not those resumed past)


class Loop:
    """One loop run over a project: its settings resolved, its items read, its folder held."""

    def __init__(self, project: Project, options: DistillOptions, view: LoopView | None = None):
        self.project = project
        self.options = options
        self.view = view or QuietView()
        config = project.config
        self.settings = config.loop
        self.rounds = options.rounds if options.rounds is not None else self.settings.rounds
        self.budget = options.budget if options.budget is not None else self.settings.budget
        self.seed = options.seed if options.seed is not None else config.generation.seed
        if self.rounds < 1:
            raise UserError(f"--rounds must be at least 1, got {self.rounds}", where="--rounds")
        self.rule = BudgetRule(exploration=self.settings.exploration, window=self.settings.window)
        self.rule.check()
        taxonomy = project.load_taxonomy()
        self.nodes = {n.path: n for n in taxonomy.select(None)}
        if not self.nodes:
            raise UserError("the taxonomy has no discipline for the loop", where=taxonomy.root)
        if self.budget < len(self.nodes):
            raise UserError(
                f"a budget of {self.budget} rows cannot give each of the {len(self.nodes)} nodes a row",
                where="--budget",
                hint=f"use --budget {len(self.nodes)} or more",
            )
        base = options.relative_to or project.root
        test = options.test if options.test is None or Path(options.test).is_absolute() else base / options.test
        self.items: Items = load_items(
            project.root / self.settings.items,
            self.nodes,
            seed=self.seed,
            dev_share=self.settings.dev_share,
            extra_test=test,
        )
        default = "distill-baseline" if options.baseline else "distill"
        self.layout = ProjectLayout.of(project).run(options.run_dir or Path(config.runs) / default, relative_to=base)
        self.student = options.student or config.student.model
        self.teacher = options.teacher
        self.fingerprint = fingerprint(
            project=str(project.root.resolve()),
            items=[
                (p.node, p.question, p.answer, split)
                for split in ("exam", "dev", "test")
                for p in getattr(self.items, split)
            ],
            loop=self.settings.model_dump(exclude={"rounds", "stop"}),
            budget=self.budget,
            student=self.student,
            training=config.student.model_dump(),
            teacher=[self.teacher, config.teacher.model_dump(include={"backend", "model"})],
            generation=config.generation.model_dump(),
            seed=self.seed,
            baseline=options.baseline,
            align=options.align,
        )
        if options.align and options.baseline:
            raise UserError("--align and --baseline exclude each other", hint="the baseline has no feedback at all")

    # The whole loop -----------------------------------------------------------------------
    def run(self) -> DistillOutcome:
        with run_folder(self.layout.root) as root:
            self.layout = RunLayout(root)
            self.state = LoopState.open(self.layout.state, self.fingerprint)
            self._write_held_out()
            outcome = DistillOutcome(root, {})
            history = [self._round_zero()]
            for k in range(1, self.rounds + 1):
                if self.state.stopped:
                    break
                record_file = self.layout.round(k).record
                if not record_file.is_file():
                    self._round(k, history)
                    outcome.rounds_run.append(k)
                history.append(self._scores(k))
                self.view.round_done(self._read(record_file))
                reason = stop_reason(
                    history,
                    plateau_rounds=self.settings.stop.plateau_rounds,
                    min_gain=self.settings.stop.min_gain,
                    regression=self.settings.stop.regression,
                )
                if reason and k < self.rounds:
                    self.state.stopped = reason
                    self.state.save()
            outcome.summary = self._write_summary(history)
            self._report()
            return outcome

    def _round_zero(self) -> RoundScores:
        folder = self.layout.round(0)
        if not self.state.is_done(0, "examine"):
            self._begin(0, "examine")
            self._examine(self.student, folder)
            self._write_record(
                folder, {"round": 0, "student": self.student, "budgets": {}, "rows": {}, **self._record_scores(folder)}
            )
            self.state.finish(0, "examine")
            self._report()
        scores = self._scores(0)
        self.view.round_done(self._read(folder.record))
        return scores

    def _round(self, k: int, history: list[RoundScores]) -> None:
        folder = self.layout.round(k)
        folder.root.mkdir(parents=True, exist_ok=True)
        decisions = self._step(k, "allocate", lambda: self._allocate(k, history))
        budgets = {d["node"]: d["rows"] for d in decisions}
        tailored = self._step(k, "correct", lambda: self._correct(k, budgets))
        used = {n: sum(1 for r in tailored.used() if r["node"] == n) for n in budgets}
        generate = {n: budgets[n] - used[n] for n in budgets}
        aligned: dict[str, Any] = {}
        if self.options.align:
            aligned = self._step(k, "align", lambda: self._align(k, history, generate))
        self._step(
            k,
            "generate",
            lambda: self._generate(k, generate, aligned.get("aligned_teacher"), aligned.get("in_context")),
        )
        rows = self._step(k, "assemble", lambda: self._assemble(k, tailored))
        student = self._step(k, "train", lambda: self._train(k, rows))
        self._step(k, "examine", lambda: self._examine(student, folder))
        self._write_record(
            folder,
            {
                "round": k,
                "student": student,
                "budgets": budgets,
                "decisions": decisions,
                "rows": {**rows, "corrections_asked": tailored.counts.get("asked", 0)},
                "corrections": dict(tailored.counts),
                **self._record_scores(folder),
            },
        )
        self._report()

    def _step(self, k: int, step: str, work: Callable[[], Any]) -> Any:
        """Run `work` unless this step is done; either way return what it produced (read back)."""
        if not self.state.is_done(k, step):
            self._begin(k, step)
            work()
            self.state.finish(k, step)
        return self._result(k, step)

    def _begin(self, k: int, step: str) -> None:
        self.state.begin(k, step)
        self.view.step(k, step)

    def _result(self, k: int, step: str) -> Any:
        folder = self.layout.round(k)
        if step == "allocate":
            return self._read(folder.budgets)["decisions"]
        if step == "correct":
            return _read_tailored(folder.corrections)
        if step == "assemble":
            return self._read(folder.root / "rows.json")
        if step == "train":
            return self._read(folder.root / "student.json")["student"]
        if step == "align":
            return self._read(folder.root / ALIGN_DIR / "summary.json")
        return None

    # The steps -----------------------------------------------------------------------------
    def _allocate(self, k: int, history: list[RoundScores]) -> None:
        nodes = list(self.nodes)
        if self.options.baseline:
            rows = by_weight(self.budget, {n: self.nodes[n].weight for n in nodes})
            decisions = [{"node": n, "rows": rows[n], "reason": "baseline: by node weight"} for n in nodes]
        else:
            scores = {n: [h.dev.get(n, 0.0) for h in history] for n in nodes}
            made: list[Decision] = allocate(self.budget, scores, self.rule, seed=self.seed + k)
            decisions = [d.as_dict() for d in made]
        self._write(self.layout.round(k).budgets, {"round": k, "total": self.budget, "decisions": decisions})

    def _correct(self, k: int, budgets: dict[str, int]) -> None:
        records: list[dict[str, Any]] = []
        counts: dict[str, int] = {}
        if self.settings.corrections and not self.options.baseline:
            previous = exams.read(self.layout.round(k - 1).examination)
            assert previous is not None  # round k starts after round k-1 was examined
            tailored = asyncio.run(self._ask_corrections(k, previous.mistakes(), budgets))
            records, counts = tailored.records, dict(tailored.counts)
        atomic_write_jsonl(self.layout.round(k).corrections, records)
        self._write(self.layout.round(k).root / "corrections.json", counts)

    async def _ask_corrections(self, k: int, mistakes: list[dict[str, Any]], budgets: dict[str, int]) -> Tailored:
        from ..generators.cache import RequestCache
        from ..generators.corrections import correction_stage
        from ..generators.stages import StageRunner
        from ..generators.teacher import CachedTeacher
        from ..prompts import Templates
        from .tailor import tailor

        backend = self._teacher_backend()
        cache = RequestCache(self.layout.cache)
        try:
            await backend.preflight()
            runner = StageRunner(CachedTeacher(backend, cache), Templates(self.project.prompts_dir), self.view)
            stage = correction_stage(
                self.project.config.generation.stages["correction"], samples=self.settings.correction_samples
            )
            return await tailor(runner, stage, mistakes, self.nodes, budgets, seed=self.seed, round_index=k)
        finally:
            await backend.aclose()
            cache.close()

    def _teacher_backend(self):
        from ..backends.spec import make_backend, parse_teacher_spec

        config = self.project.config.teacher
        return make_backend(parse_teacher_spec(self.teacher, config), config, project_root=self.project.root)

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps of a round, in order (the live view counts them)."""
        return STEPS_ALIGNED if self.options.align else STEPS

    def _align(self, k: int, history: list[RoundScores], budgets: dict[str, int]) -> None:
        """`syllabus align` on the weakest nodes given GLAN rows this round, for the student as it
        stands; its aligned teacher (if it trained one) writes the round's rows."""
        from ..align.run import Aligner, AlignOptions
        from ..generators.drafts import ALIGN_ROUND

        given = [n for n in self.nodes if budgets.get(n, 0) > 0]
        weakest = sorted(given, key=lambda n: (history[-1].dev.get(n, 0.0), n))[:ALIGN_NODES]
        folder = self.layout.round(k).root / ALIGN_DIR
        if not weakest:  # every row of the round is a correction: nothing to generate
            folder.mkdir(parents=True, exist_ok=True)
            self._write(
                folder / "summary.json",
                {"aligned_teacher": None, "in_context": None, "nodes": {}, "reason": "no GLAN rows this round"},
            )
            return
        student = self._read(self.layout.round(k - 1).root / "student.json")["student"] if k > 1 else self.student
        options = AlignOptions(
            nodes=weakest,
            run_dir=self.layout.root,
            seed=self.seed + k,
            teacher=self.teacher,
            student=student,
            draft_round=ALIGN_ROUND + k,
        )
        Aligner(self.project, options, _AlignStepView(self.view, k), exam=self.items).run(held=True, folder=folder)

    def _generate(
        self, k: int, budgets: dict[str, int], teacher: str | None = None, in_context: str | None = None
    ) -> None:
        """GLAN rows of round k; `teacher` (an aligned one) or `in_context` (align's choices for a
        served teacher) where this round aligned first."""
        data = self.layout.round(k).data
        if sum(budgets.values()) == 0:
            data.mkdir(parents=True, exist_ok=True)  # every row of the round is a correction
            return
        from ..generators.run import GenerateOptions, prepare, run_job

        options = GenerateOptions(
            run_dir=self.layout.root,
            round=k,
            budget=budgets,
            seed=self.seed,
            teacher=teacher or self.teacher,
            in_context=Path(in_context) if in_context else None,
            decontaminate=[self.layout.held_out],
            command=self.options.command,
        )
        outcome = run_job(prepare(self.project, options), self.view, held=True)
        if outcome.result.failed_requests:
            raise UserError(
                f"{outcome.result.failed_requests} teacher request(s) failed for good in round {k}",
                where=data / "summary.json",
                hint="check the teacher, then rerun: finished work is kept",
            )

    def _assemble(self, k: int, tailored: Tailored) -> None:
        from ..data.read import open_rows
        from ..students.probes import row_keys

        folder = self.layout.round(k)
        rows = tailored.sft_rows(k)
        generated = 0
        if (folder.data / "dataset.jsonl").is_file():
            for _, row in open_rows(folder.data / "dataset.jsonl").iter():
                rows.append(
                    sft_row(
                        question_of(row),
                        answer_of(row),
                        row.get("taxonomy_path") or "unknown",
                        k,
                        "generated",
                    )
                )
                generated += 1
        seen = {r["content_hash"] for r in rows}
        earlier = [r for j in range(1, k) for r in _jsonl(self.layout.round(j).train) if r["source"] != "replay"]
        fresh = [r for r in earlier if r["content_hash"] not in seen]
        random.Random(f"replay:{self.seed}:{k}").shuffle(fresh)
        replay = [{**r, "source": "replay"} for r in fresh[: round(len(fresh) * self.settings.replay)]]
        rows += replay
        held = self.items.held_out_keys()
        for number, row in enumerate(rows, 1):
            clash = row_keys(row) & held.keys()
            if clash:
                split = held[next(iter(clash))]
                raise UserError(
                    f"a {split} question is in round {k}'s training data ({row['source']} row)",
                    where=f"{folder.train}:{number}",
                    hint=f"{split} items are never trained on: remove it from the items file's "
                    "exam items or from the data it came from",
                )
        atomic_write_jsonl(folder.train, rows)
        pairs = [] if self.options.baseline or not self.settings.dpo else tailored.pairs()
        atomic_write_jsonl(folder.pairs, pairs)
        self._write(
            folder.root / "rows.json",
            {
                "corrections": len(tailored.used()),
                "generated": generated,
                "replay": len(replay),
                "train": len(rows),
                "pairs": len(pairs),
            },
        )

    def _train(self, k: int, rows: dict[str, int]) -> None:
        from ..students.train import FINAL, TrainOptions, train

        folder = self.layout.round(k)
        student = self._read(self.layout.round(k - 1).root / "student.json")["student"] if k > 1 else self.student
        config = self.project.config.student
        for method, dataset, count, extra in (
            ("sft", folder.train, rows["train"], {}),
            ("dpo", folder.pairs, rows["pairs"], {"epochs": self.settings.dpo_epochs}),
        ):
            if not count:
                continue
            out = folder.student / method
            if not (out / FINAL).is_dir():  # a finished model is never trained again
                self.view.add_total(method, 1)
                with warnings.catch_warnings():  # transformers' deprecation notes would bury the live view
                    warnings.simplefilter("ignore", FutureWarning)
                    options = TrainOptions.from_config(
                        config,
                        method=method,
                        dataset=dataset,
                        out_dir=out,
                        student=student,
                        seed=self.seed + k,
                        quiet=True,
                        keep_checkpoints=False,
                        **extra,
                    )
                    train(options)
                self.view.advance(method)
            student = str(out / FINAL)
        self._write(folder.root / "student.json", {"student": student})

    def _examine(self, student: str, folder: RoundLayout) -> None:
        from ..backends.spec import make_backend, parse_student_spec

        backend = make_backend(parse_student_spec(student), self.project.config.teacher, project_root=self.project.root)
        total = len(self.items.exam) + len(self.items.dev)
        self.view.add_total("examine", total)

        async def main() -> exams.Examination:
            try:
                await backend.preflight()
                return await exams.examine_items(
                    backend,
                    self.items,
                    max_tokens=self.settings.max_tokens,
                    in_flight=32,
                    progress=lambda n: self.view.advance("examine", n),
                )
            finally:
                await backend.aclose()

        exams.write(asyncio.run(main()), folder.examination, student)

    # Records -------------------------------------------------------------------------------
    def _scores(self, k: int) -> RoundScores:
        exam = exams.read(self.layout.round(k).examination)
        assert exam is not None
        return RoundScores(k, {n: exam.dev_score(n) for n in self.nodes}, {n: exam.dev_logprob(n) for n in self.nodes})

    def _record_scores(self, folder: RoundLayout) -> dict[str, Any]:
        exam = exams.read(folder.examination)
        assert exam is not None
        return {
            "nodes": exam.per_node(),
            "dev": exam.dev_overall,
            "exam": exam.splits["exam"]["overall"]["accuracy"],
            "finished_at": time.time(),
        }

    def _write_record(self, folder: RoundLayout, record: dict[str, Any]) -> None:
        self._write(folder.record, record)

    def _write_summary(self, history: list[RoundScores]) -> dict[str, Any]:
        records = [self._read(self.layout.round(h.index).record) for h in history]
        best = best_round(history, self.settings.forgetting)
        summary = {
            "baseline": self.options.baseline,
            "rounds": [
                {k: r.get(k) for k in ("round", "dev", "exam", "nodes", "budgets", "rows", "student")}
                | {"forgot": forgot(h, history[0], self.settings.forgetting)}
                for r, h in zip(records, history)
            ],
            "best_round": best,
            "best_student": records[best]["student"],
            "final_student": records[-1]["student"],
            "stopped": self.state.stopped,
            "items": {"exam": len(self.items.exam), "dev": len(self.items.dev), "test": len(self.items.test)},
        }
        self._write(self.layout.summary, summary)
        return summary

    def _report(self) -> None:
        """RUN/report.html again, so a long loop can be watched in a browser. Only a view of
        the records: whatever goes wrong with it is a warning, never a stopped loop."""
        try:
            from ..report import write_report

            write_report(self.layout.root, template_dir=self.project.prompts_dir)
        except Exception as exc:
            log.warning("could not write %s: %s", self.layout.root / "report.html", exc)

    def _write_held_out(self) -> None:
        held = [{"question": p.question, "split": s} for s in ("dev", "test") for p in getattr(self.items, s)]
        body = jsonl_text(held)
        if not self.layout.held_out.is_file() or self.layout.held_out.read_text(encoding="utf-8") != body:
            atomic_write_text(self.layout.held_out, body)

    @staticmethod
    def _write(path: Path, data: Any) -> None:
        atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    @staticmethod
    def _read(path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))


def distill(project: Project, options: DistillOptions, view: LoopView | None = None) -> DistillOutcome:
    """Run (or resume) the loop; the same call again continues where a killed one stopped."""
    return Loop(project, options, view).run()


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [row for _, row in iter_jsonl(path)]


def _read_tailored(path: Path) -> Tailored:
    from collections import Counter

    counts_file = path.parent / "corrections.json"
    counts = json.loads(counts_file.read_text(encoding="utf-8")) if counts_file.is_file() else {}
    return Tailored(_jsonl(path), Counter(counts))


__all__ = ["DistillOptions", "DistillOutcome", "Loop", "distill"]
