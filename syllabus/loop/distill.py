"""The closed loop: tailored rounds until the student stops improving (`syllabus distill`).

Round 0 examines the untrained student. Round k then runs the steps of ROUND_STEPS, one
function each in steps.py (allocate > answer > correct > restate > select > [align] > generate >
assemble > train > examine), each resumable: its outputs are whole before it is marked
done in state.json (runstate.py), so a kill costs at most the step in flight. Adding a
step is one entry in the table and one function.

After the last round, once every decision is made on dev items, the best and the
starting student are examined once on the **test** items and compared item by item
(students/compare.py): RUN/test/comparison.json. Nothing in the loop reads it back.

`--baseline` runs the same rounds without feedback: budgets by node weight, all of them
GLAN rows, no retries, corrections, rehearsal or DPO, the same training recipe, so a loop
and its baseline compare on the same items.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsutil import atomic_write_text, jsonl_text
from ..layout import ProjectLayout, RoundLayout, RunLayout
from ..progress import NoProgress, Progress, StagesOnly
from ..project import Project
from ..records import RoundRecord
from ..runlock import run_folder
from ..runstate import RunState, fingerprint
from ..students.items import Items, load_items
from . import examination as exams
from . import steps
from .budgets import BudgetRule
from .decide import RoundScores, best_round, forgot, stop_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One step of a round: its name (state.json, the live view) and the function that does it."""

    name: str
    run: Callable[[Loop, int], None]
    only: Callable[[Loop], bool] | None = None  # whether this loop runs the step at all (None: always)

    def runs_in(self, loop: Loop) -> bool:
        return self.only is None or self.only(loop)


def _aligned(loop: Loop) -> bool:
    return loop.options.align


ROUND_STEPS: tuple[Step, ...] = (
    Step("allocate", steps.allocate_rows),
    Step("answer", steps.answer_again),
    Step("correct", steps.correct),
    Step("restate", steps.restate),
    Step("select", steps.select_rows),
    Step("align", steps.align_teacher, only=_aligned),
    Step("generate", steps.generate),
    Step("assemble", steps.assemble),
    Step("train", steps.train),
    Step("examine", steps.examine),
)


@dataclass(frozen=True)
class DistillOptions:
    rounds: int | None = None  # default: loop.rounds
    budget: int | None = None  # rows per round; default: loop.budget
    run_dir: Path | None = None  # default: runs/distill (runs/distill-baseline with baseline)
    seed: int | None = None  # default: generation.seed
    baseline: bool = False
    test: Path | None = None  # more test items (JSONL): refused in training data, and in the final comparison
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

    def __init__(self, project: Project, options: DistillOptions, view: Progress | None = None):
        self.project = project
        self.options = options
        self.view: Progress = view or NoProgress()
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
        if self.settings.train == "distill":
            from ..backends.spec import parse_teacher_spec

            if parse_teacher_spec(self.teacher, config.teacher).backend == "openai":
                raise UserError(
                    "loop.train: distill learns the teacher's logits, but the teacher is served",
                    where=project.root / "syllabus.yaml",
                    hint="use a local teacher ('embedded' or a folder) sharing the student's tokenizer, "
                    "or loop.train: sft",
                )
        self.history: list[RoundScores] = []
        self.fingerprint = fingerprint(
            project=str(project.root.resolve()),
            items=[
                (p.node, p.question, p.answer, split)
                for split in ("exam", "dev", "test")
                for p in getattr(self.items, split)
            ],
            loop=loop_fingerprint(self.settings),
            budget=self.budget,
            student=self.student,
            training=config.student.model_dump(exclude_defaults=True),
            teacher=[self.teacher, config.teacher.model_dump(include={"backend", "model"})],
            generation=config.generation.model_dump(exclude_defaults=True),
            seed=self.seed,
            baseline=options.baseline,
            align=options.align,
        )
        if options.align and options.baseline:
            raise UserError("--align and --baseline exclude each other", hint="the baseline has no feedback at all")

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps of a round, in order (the live view counts them)."""
        return tuple(s.name for s in ROUND_STEPS if s.runs_in(self))

    # The whole loop -----------------------------------------------------------------------
    def run(self) -> DistillOutcome:
        with run_folder(self.layout.root) as root:
            self.layout = RunLayout(root)
            self.state = RunState.open(self.layout.state, self.fingerprint)
            self._write_held_out()
            outcome = DistillOutcome(root, {})
            self.history = [self._round_zero()]
            for k in range(1, self.rounds + 1):
                if self.state.stopped:
                    break
                record_file = self.layout.round(k).record
                if not record_file.is_file():
                    self._round(k)
                    outcome.rounds_run.append(k)
                self.history.append(self._scores(k))
                self.view.round_done(RoundRecord.read(record_file).as_dict())
                reason = stop_reason(
                    self.history,
                    plateau_rounds=self.settings.stop.plateau_rounds,
                    min_gain=self.settings.stop.min_gain,
                    regression=self.settings.stop.regression,
                )
                if reason and k < self.rounds:
                    self.state.stopped = reason
                    self.state.save()
            outcome.summary = self._write_summary()
            self._compare_on_test(outcome.summary)
            self._report()
            return outcome

    def _round_zero(self) -> RoundScores:
        folder = self.layout.round(0)
        if self.state.step(0, "examine", lambda: steps.examine(self, 0), on_begin=lambda: self.view.step("examine", 0)):
            self._write_record(folder, student=self.student)
            self._report()
        scores = self._scores(0)
        self.view.round_done(RoundRecord.read(folder.record).as_dict())
        return scores

    def _round(self, k: int) -> None:
        folder = self.layout.round(k)
        folder.root.mkdir(parents=True, exist_ok=True)
        for step in ROUND_STEPS:
            if step.runs_in(self):
                self.state.step(k, step.name, partial(step.run, self, k), partial(self.view.step, step.name, k))
        decisions = steps.read_json(folder.budgets)["decisions"]
        self._write_record(
            folder,
            student=steps.read_json(folder.trained)["student"],
            budgets={d["node"]: d["rows"] for d in decisions},
            decisions=decisions,
            rows=steps.read_json(folder.rows),
            selected=steps.read_json(folder.selected_counts),
        )
        self._report()

    # What the steps share ------------------------------------------------------------------
    def current_student(self, k: int) -> str:
        """The student as round k finds it: the one round k-1 trained (the starting one for k = 1)."""
        return steps.read_json(self.layout.round(k - 1).trained)["student"] if k > 1 else self.student

    def align_view(self) -> Progress:
        """The loop's view as the alignment inside a round sees it: the round shows "align" as one step."""
        return StagesOnly(self.view)

    def examine(self, student: str, splits: tuple[str, ...] = ("exam", "dev")) -> exams.Examination:
        from ..generators.session import opened, student_backend

        self.view.add_total("examine", sum(len(getattr(self.items, s)) for s in splits))

        async def main() -> exams.Examination:
            async with opened(student_backend(self.project, student)) as backend:
                return await exams.examine_items(
                    backend,
                    self.items,
                    max_tokens=self.settings.max_tokens,
                    in_flight=32,
                    progress=lambda n: self.view.advance("examine", n),
                    splits=splits,
                )

        return asyncio.run(main())

    # The final comparison on test items -----------------------------------------------------
    def _compare_on_test(self, summary: dict[str, Any]) -> None:
        """The best and the starting student on the test items, once every decision is made."""
        if not self.items.test:
            return
        from ..students.compare import compare_answers

        folder = self.layout.test
        out = folder / "comparison.json"
        best = summary["best_student"]
        if out.is_file() and steps.read_json(out).get("best_student") == best:
            return
        answers = {}
        for label, student in (("start", self.student), (f"round-{summary['best_round']}", best)):
            examined = exams.read(folder / label)  # the starting student's is made once, whatever round wins
            if examined is None:
                self.view.step(f"test: {label}", summary["best_round"])
                examined = self.examine(student, ("test",))
                exams.write(examined, folder / label, student)
            answers[label] = examined.answers
        start = self.history[0].dev
        weak = [n for n in self.nodes if start.get(n, 0.0) < 0.5]
        comparison = compare_answers(answers["start"], answers[f"round-{summary['best_round']}"], nodes=weak)
        steps.write_json(
            out,
            {
                "start_student": self.student,
                "best_student": best,
                "best_round": summary["best_round"],
                "items": len(self.items.test),
                "weak_nodes": "nodes under 50% on dev before training",
                **comparison,
            },
        )

    # Records -------------------------------------------------------------------------------
    def _scores(self, k: int) -> RoundScores:
        exam = exams.read(self.layout.round(k).examination)
        assert exam is not None
        return RoundScores(
            k,
            {n: exam.dev_score(n) for n in self.nodes},
            {n: exam.dev_logprob(n) for n in self.nodes},
            {n: exam.dev_answers(n) for n in self.nodes},
        )

    def _write_record(self, folder: RoundLayout, **parts: Any) -> None:
        exam = exams.read(folder.examination)
        assert exam is not None
        RoundRecord(
            round=folder.index,
            nodes=exam.per_node(),
            dev=exam.dev_overall,
            exam=exam.splits["exam"]["overall"]["accuracy"],
            finished_at=time.time(),
            **parts,
        ).write(folder.record)

    def _write_summary(self) -> dict[str, Any]:
        history = self.history
        records = [RoundRecord.read(self.layout.round(h.index).record).as_dict() for h in history]
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
        steps.write_json(self.layout.summary, summary)
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


def distill(project: Project, options: DistillOptions, view: Progress | None = None) -> DistillOutcome:
    """Run (or resume) the loop; the same call again continues where a killed one stopped."""
    return Loop(project, options, view).run()


__all__ = ["ROUND_STEPS", "DistillOptions", "DistillOutcome", "Loop", "Step", "distill"]


# Loop settings whose default a later build changed, at the default the fingerprint was first taken
# with: a run folder made before the change still resumes, with whichever value it ran.
FINGERPRINT_DEFAULTS: dict[str, Any] = {"restart": "base"}


def loop_fingerprint(settings) -> dict[str, Any]:
    """The loop settings a run folder is made with, as changed from their defaults: a setting added
    later (at its default) leaves an older run folder resumable. `rounds` and `stop` may change
    between runs of one folder (a longer run continues it)."""
    changed = settings.model_dump(exclude={"rounds", "stop"}, exclude_defaults=True)
    for name, default in FINGERPRINT_DEFAULTS.items():
        value = getattr(settings, name)
        if value == default:
            changed.pop(name, None)
        else:
            changed[name] = value
    return changed
