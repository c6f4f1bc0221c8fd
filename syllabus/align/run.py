"""`syllabus align`: drafts, the student's scores of them, pairs, and a teacher that prefers what helps.

Four steps, each writing its files whole before it is marked done in `RUN/align/state.json`
(the loop's state record), so a kill loses at most the step in flight:

1. drafts: K questions per node, R rationales each (`generators.drafts`), through the
   run's request cache: asking again costs nothing.
2. scores: every draft by the chosen scorer(s) on the node's preference items
   (scores.py: in context or by one step), one line per draft appended to `scores.jsonl`
   as it is scored, so a resumed run scores no draft twice; each node's baseline and noise
   floor first.
3. pairs: rationale and question pairs beyond their margins (`align.pairs`), a TRL DPO
   dataset (`pairs.jsonl`).
4. teacher: with a local teacher, DPO on the pairs (`students.train`, the same trainer as
   the student's) into `teacher/final`, a plain model folder that `generate --teacher`
   and any OpenAI-compatible server can serve; with an API teacher, the scores choose
   each node's few-shot exemplars and its strategy and Bloom mixes (`in_context.json`).

Preference items come from `--probes` or the exam items of the loop's items file, never
from its dev or test items: the one question key refuses a leak.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsutil import atomic_write_jsonl, atomic_write_text
from ..generators.drafts import ALIGN_ROUND, Draft
from ..layout import ProjectLayout, RunLayout
from ..progress import NoProgress, Progress
from ..project import Project
from ..runlock import run_folder
from ..students.probes import Probe
from ..taxonomy.model import BLOOM_LEVELS
from .pairs import Scored, agreed, in_context_choices, question_pairs, rationale_pairs
from .scores import ScoreJournal, read_jsonl

SCORERS = ("icl", "influence", "both")
INFLUENCE_MODES = ("exact", "fast")
MODES = ("auto", "dpo", "in_context")
STEPS = ("drafts", "scores", "pairs", "teacher")
ALIGN_DIR = "align"


@dataclass(frozen=True)
class AlignOptions:
    """What a caller asks for; a setting left None comes from `align:` in syllabus.yaml (project.AlignConfig)."""

    nodes: list[str] | None = None  # globs over discipline paths; default every discipline
    drafts: int | None = None  # draft questions per node (K)
    rationales: int | None = None  # rationales per question (R), each in another strategy
    items: int | None = None  # preference items per node the drafts are scored on (M)
    scorer: str | None = None  # icl | influence | both
    influence: str | None = None  # exact | fast (first-order)
    mode: str | None = None  # auto | dpo | in_context
    probes: Path | None = None  # preference items (JSONL question, answer, node); default loop items' exam split
    run_dir: Path | None = None  # default runs/align
    seed: int | None = None  # default generation.seed
    teacher: str | None = None
    student: str | None = None
    learning_rate: float | None = None  # the teacher's DPO
    epochs: float | None = None
    draft_round: int = ALIGN_ROUND  # the draft round: another gives fresh drafts of the same nodes
    until: str = "teacher"  # the last step to run (a caller that only wants scores stops at "scores")
    relative_to: Path | None = None

    def resolved(self, config) -> Resolved:
        """These options with every unset setting taken from `config` (an AlignConfig)."""
        settings = {name: getattr(self, name) for name in SETTINGS}
        return Resolved(**{**vars(self), **{k: getattr(config, k) if v is None else v for k, v in settings.items()}})


SETTINGS = ("drafts", "rationales", "items", "scorer", "influence", "mode", "learning_rate", "epochs")


@dataclass(frozen=True)
class Resolved(AlignOptions):
    """AlignOptions once `align:` filled what the caller left unset: every setting has a value."""

    drafts: int = 0
    rationales: int = 0
    items: int = 0
    scorer: str = ""
    influence: str = ""
    mode: str = ""
    learning_rate: float = 0.0
    epochs: float = 0.0


@dataclass
class AlignOutcome:
    folder: Path  # RUN/align
    summary: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def _check(options: Resolved, strategies: int) -> None:
    for name, value in (("--drafts", options.drafts), ("--rationales", options.rationales), ("--items", options.items)):
        if value < 1:
            raise UserError(f"{name} must be at least 1, got {value}", where=name, hint="a budget of 0 scores nothing")
    if options.rationales > strategies:
        raise UserError(
            f"--rationales {options.rationales} asks for more strategies than generation.strategies has ({strategies})",
            where="--rationales",
            hint="each rationale of a question is written in another strategy",
        )
    if options.drafts * options.rationales < 2:
        raise UserError("one draft cannot make a pair", where="--drafts", hint="use --drafts 2 or --rationales 2")
    if options.scorer not in SCORERS:
        raise UserError(f"unknown --scorer '{options.scorer}'", where="--scorer", hint=", ".join(SCORERS))
    if options.influence not in INFLUENCE_MODES:
        raise UserError(f"unknown --influence '{options.influence}'", hint=", ".join(INFLUENCE_MODES))
    if options.until not in STEPS:
        raise UserError(f"unknown last step '{options.until}'", hint=", ".join(STEPS))
    if options.mode not in MODES:
        raise UserError(f"unknown --mode '{options.mode}'", where="--mode", hint=", ".join(MODES))


class Aligner:
    """One alignment over a project: inputs checked at construction, before any model loads."""

    def __init__(self, project: Project, options: AlignOptions, view: Progress | None = None, *, exam=None):
        """`exam`: the preference items' source when a caller has already split them (the loop's exam
        items); otherwise --probes, or the exam items of the loop's items file split as the loop splits them."""
        from ..backends.spec import parse_student_spec, parse_teacher_spec

        options = options.resolved(project.config.align)
        self.project, self.options = project, options
        self.view: Progress = view or NoProgress()
        generation = project.config.generation
        strategies = [name for name, weight in generation.strategies.items() if weight > 0]
        _check(options, len(strategies))
        self.strategies = strategies
        self.seed = options.seed if options.seed is not None else generation.seed
        self.settings = generation.model_copy(update={"seed": self.seed})
        taxonomy = project.load_taxonomy()
        self.every_node = [n.path for n in taxonomy.select(None)]  # the loop's items file names them all
        self.nodes = {n.path: n for n in taxonomy.select(options.nodes)}
        if not self.nodes:
            raise UserError("the selection has no discipline to align for", where="--nodes")
        self.teacher = parse_teacher_spec(options.teacher, project.config.teacher)
        self.student_spec = options.student or project.config.student.model
        self.student = parse_student_spec(self.student_spec)
        if self.student.backend == "openai" and options.scorer != "icl":
            raise UserError(
                "the influence scorer trains a step on the student, which needs its weights here",
                where="--scorer",
                hint="use --scorer icl with a served student, or a local student ('embedded' or a folder)",
            )
        trainable = self.teacher.backend in ("embedded", "local")
        if options.mode == "dpo" and not trainable:
            raise UserError(
                f"--mode dpo trains the teacher's weights, but 'openai:{self.teacher.model}' is served",
                where="--mode",
                hint="use --mode in_context (exemplars and mixes chosen by the scores), or a local teacher",
            )
        self.mode = options.mode if options.mode != "auto" else ("dpo" if trainable else "in_context")
        self.mode_reason = (
            "asked for"
            if options.mode != "auto"
            else ("the teacher's weights are on this machine" if trainable else "the teacher is served: no weights")
        )
        base = options.relative_to or project.root
        self.items = self._preference_items(base, exam)
        run = options.run_dir or Path(project.config.runs) / "align"
        self.run_layout: RunLayout = ProjectLayout.of(project).run(run, relative_to=base)
        from ..runstate import fingerprint

        self.fingerprint = fingerprint(
            project=str(project.root.resolve()),
            items={n: [(p.question, p.answer) for p in items] for n, items in self.items.items()},
            drafts=[options.drafts, options.rationales, options.draft_round, self.strategies],
            scorer=[options.scorer, options.influence],
            teacher=[self.teacher.backend, self.teacher.model],
            student=[self.student.backend, self.student.model],
            training=[
                self.mode,
                options.learning_rate,
                options.epochs,
                project.config.student.model_dump(exclude_defaults=True),
            ],
            generation=self.settings.model_dump(exclude_defaults=True),
        )

    # Inputs ------------------------------------------------------------------------------
    def _preference_items(self, base: Path, exam) -> dict[str, list[Probe]]:
        from ..students.items import load_items
        from ..students.probes import load_probes

        loop_items = self.project.root / self.project.config.loop.items
        held: dict[bytes, str] = {}
        if exam is not None:
            every = exam
            held = every.held_out_keys()
        elif loop_items.is_file():
            loop = self.project.config.loop
            every = load_items(loop_items, self.every_node, dev_share=loop.dev_share, seed=self.seed)
            held = every.held_out_keys()
        if self.options.probes is not None:
            path = self.options.probes if Path(self.options.probes).is_absolute() else base / self.options.probes
            probes = load_probes(path)
            source = str(path)
        elif exam is not None or loop_items.is_file():
            probes = [p for p in every.exam if p.node in self.nodes]
            source = f"{every.source} (exam items)"
        else:
            raise UserError(
                "no preference items: give --probes FILE (JSONL: question, answer, node)",
                where="--probes",
                hint=f"or write the loop's items file {self.project.config.loop.items} (exam items are used)",
            )
        for probe in probes:
            if probe.key in held:
                raise UserError(
                    f"a preference item is a {held[probe.key]} item of the loop ({probe.question[:60]!r})",
                    where=source,
                    hint="preference items must be kept apart from dev and test items: remove it from --probes",
                )
            if probe.options:
                raise UserError(
                    f"preference item {probe.question[:60]!r} is multiple choice; the scorers need a reference answer",
                    where=source,
                    hint="give question + answer items",
                )
        by_node: dict[str, list[Probe]] = {}
        for path in self.nodes:
            mine = [p for p in probes if p.node == path]
            if not mine:
                raise UserError(
                    f"node '{path}' has no preference item",
                    where=source,
                    hint=f'add items with "node": "{path}", or leave the node out with --nodes',
                )
            random.Random(f"align-items:{self.seed}:{path}").shuffle(mine)
            by_node[path] = mine[: self.options.items]
        return by_node

    # The run ------------------------------------------------------------------------------
    def run(self, *, held: bool = False, folder: Path | None = None) -> AlignOutcome:
        """Every step not done yet. `held`: the caller holds the run folder already (the loop),
        and `folder` is where this alignment's files go (default RUN/align)."""
        if held:
            return self._run(self.run_layout.root, folder)
        with run_folder(self.run_layout.root) as root:
            return self._run(root, folder)

    def _run(self, root: Path, folder: Path | None) -> AlignOutcome:
        from ..runstate import RunState

        folder = folder or root / ALIGN_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.cache = folder, root / "cache.sqlite"
        self.journal = ScoreJournal(folder / "scores.jsonl")
        state = RunState.open(folder / "state.json", self.fingerprint, what="align")
        seconds: dict[str, float] = {}
        for name, work in self._steps()[: STEPS.index(self.options.until) + 1]:
            started = time.perf_counter()
            if state.step(0, name, work, on_begin=partial(self.view.step, name)):
                seconds[name] = round(time.perf_counter() - started, 2)
        summary = self._summary(seconds)
        return AlignOutcome(folder, summary, seconds)

    def _steps(self) -> list[tuple[str, Callable[[], None]]]:
        """The step table: each step's name (STEPS, in order) and the one function that does it."""
        return [("drafts", self._drafts), ("scores", self._scores), ("pairs", self._pairs), ("teacher", self._teacher)]

    # 1. drafts ---------------------------------------------------------------------------
    def _drafts(self) -> None:
        drafts = asyncio.run(self._ask_drafts())
        empty = [n for n in self.nodes if not any(d.node == n for d in drafts)]
        if empty:
            raise UserError(
                f"the teacher wrote no usable draft for node '{empty[0]}'",
                where=self.folder / "drafts.jsonl",
                hint="see RUN/syllabus.log and the stage counts; rerun to retry failed requests",
            )
        atomic_write_jsonl(self.folder / "drafts.jsonl", [d.as_dict() for d in drafts])

    async def _ask_drafts(self) -> list[Draft]:
        from ..generators.drafts import node_drafts
        from ..generators.glan import GlanGenerator
        from ..generators.session import teacher_backend, teacher_session
        from ..prompts import Templates

        backend = teacher_backend(self.project, self.teacher)
        async with teacher_session(backend, self.cache, Templates(self.project.prompts_dir), self.view) as runner:
            generator = GlanGenerator(runner=runner, settings=self.settings, round_index=self.options.draft_round)
            found = await asyncio.gather(
                *(
                    node_drafts(
                        generator,
                        node,
                        questions=self.options.drafts,
                        rationales=self.options.rationales,
                        strategies=self.strategies,
                    )
                    for node in self.nodes.values()
                )
            )
        return [d for group in found for d in group]

    def drafts(self) -> list[Draft]:
        return [Draft.from_dict(row) for row in read_jsonl(self.folder / "drafts.jsonl")]

    # 2. scores ---------------------------------------------------------------------------
    def _scores(self) -> None:
        from .scores import score_influence

        scorers = ["icl", "influence"] if self.options.scorer == "both" else [self.options.scorer]
        drafts = self.drafts()
        done = self.journal.open_for_append()
        for scorer in scorers:
            todo = [d for d in drafts if (scorer, d.id) not in done]
            nodes = [n for n in self.nodes if (scorer, f"{n}#baseline") not in done or any(d.node == n for d in todo)]
            if not nodes:
                continue
            items = {n: self.items[n] for n in nodes}
            self.view.add_total(f"score {scorer}", len(todo) + 2 * len(nodes))
            if scorer == "icl":
                asyncio.run(self._in_context(items, todo, done))
                continue
            with self._influence_scorer() as influence:
                score_influence(
                    self.journal,
                    influence,
                    items,
                    todo,
                    done,
                    self.view,
                    prompt_of=self._training_prompt,
                    exact=self.options.influence == "exact",
                    any_draft=lambda node: next(d for d in drafts if d.node == node),
                )

    async def _in_context(self, items, todo: list[Draft], done: set[tuple[str, str]]) -> None:
        from ..generators.session import opened, student_backend
        from .scores import score_in_context

        async with opened(student_backend(self.project, self.student_spec)) as backend:
            await score_in_context(
                self.journal, backend, items, todo, done, self.view, max_tokens=self.project.config.loop.max_tokens
            )

    @contextmanager
    def _influence_scorer(self):
        from ..backends.spec import model_folder
        from ..students.influence import InfluenceScorer

        config = self.project.config.student
        scorer = InfluenceScorer(
            model_folder(self.student, self.project.root),
            learning_rate=config.learning_rate,
            max_length=config.max_length,
            seed=self.seed,
        )
        try:
            yield scorer
        finally:
            scorer.close()

    def _training_prompt(self, question: str) -> list[dict[str, str]]:
        """A question as the student is trained on it (with the project's system prompt, if any)."""
        system = self.settings.system_prompt
        user = [{"role": "user", "content": question}]
        return [{"role": "system", "content": system}, *user] if system else user

    def scored(self) -> tuple[dict[str, dict[str, list[Scored]]], dict[str, dict[str, float]]]:
        """scorer -> node -> scored drafts, and scorer -> node -> noise floor, from scores.jsonl."""
        return self.journal.scored(self.drafts())

    # 3. pairs ----------------------------------------------------------------------------
    def _pairs(self) -> None:
        scored, noise = self.scored()
        system = self.settings.system_prompt
        per_scorer: dict[str, list[dict[str, Any]]] = {}
        for scorer, nodes in scored.items():
            per_scorer[scorer] = []
            for node in self.nodes:
                drafts, floor = nodes.get(node, []), noise.get(scorer, {}).get(node, 0.0)
                per_scorer[scorer] += rationale_pairs(drafts, floor, system) + question_pairs(drafts, floor)
        if self.options.scorer == "both":
            pairs = agreed(per_scorer.get("icl", []), per_scorer.get("influence", []))
        else:
            pairs = per_scorer.get(self.options.scorer, [])
        atomic_write_jsonl(self.folder / "pairs.jsonl", pairs)

    # 4. teacher --------------------------------------------------------------------------
    def _teacher(self) -> None:
        pairs = read_jsonl(self.folder / "pairs.jsonl")
        if self.mode == "in_context":
            scored, noise = self.scored()
            lead = "icl" if "icl" in scored else "influence"
            choices = {
                node: in_context_choices(
                    scored[lead].get(node, []), noise[lead].get(node, 0.0), self.strategies, BLOOM_LEVELS
                )
                for node in self.nodes
            }
            atomic_write_text(self.folder / "in_context.json", json.dumps(choices, indent=2) + "\n")
            return
        if not pairs:
            return  # nothing beyond the margins: the teacher stays as it is, and the summary says so
        import warnings

        from ..backends.spec import model_folder
        from ..students.train import TrainOptions, train

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            train(
                TrainOptions.from_config(
                    self.project.config.student,
                    method="dpo",
                    dataset=self.folder / "pairs.jsonl",
                    out_dir=self.folder / "teacher",
                    student=str(model_folder(self.teacher, self.project.root)),
                    learning_rate=self.options.learning_rate,
                    epochs=self.options.epochs,
                    max_steps=-1,
                    seed=self.seed,
                    quiet=True,
                    keep_checkpoints=False,
                )
            )

    # Summary -----------------------------------------------------------------------------
    def _summary(self, seconds: dict[str, float]) -> dict[str, Any]:
        from ..students.train import FINAL

        scored, noise = self.scored()
        pairs = read_jsonl(self.folder / "pairs.jsonl")
        lead = "icl" if "icl" in scored else "influence"
        aligned = self.folder / "teacher" / FINAL
        nodes = {}
        for node in self.nodes:
            drafts = scored.get(lead, {}).get(node, [])
            helps = [s.help for s in drafts]
            nodes[node] = {
                "drafts": len(drafts),
                "pairs": sum(1 for p in pairs if p["taxonomy_path"] == node),
                "noise_floor": noise.get(lead, {}).get(node),
                "score_spread": (max(helps) - min(helps)) if helps else None,
                "mode": self.mode,
                "items": len(self.items[node]),
                "scores": {s: _spread(scored[s].get(node, [])) for s in scored},
            }
        summary = {
            "aligned_teacher": str(aligned) if self.mode == "dpo" and aligned.is_dir() else None,
            "mode": self.mode,
            "mode_reason": self.mode_reason
            if pairs or self.mode != "dpo"
            else "no pair beyond the margin: not trained",
            "scorer": self.options.scorer,
            "influence": self.options.influence if self.options.scorer != "icl" else None,
            "teacher": self.teacher.model or self.teacher.backend,
            "student": self.student.model or self.student.backend,
            "pairs": len(pairs),
            "pair_levels": {lvl: sum(1 for p in pairs if p["level"] == lvl) for lvl in ("question", "rationale")},
            "in_context": str(self.folder / "in_context.json") if self.mode == "in_context" else None,
            "seconds": seconds,
            "nodes": nodes,
        }
        atomic_write_text(self.folder / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary


def _spread(scored: list[Scored]) -> dict[str, float] | None:
    if not scored:
        return None
    helps = [s.help for s in scored]
    return {"min": min(helps), "max": max(helps), "mean": sum(helps) / len(helps)}


def align(project: Project, options: AlignOptions, view: Progress | None = None) -> AlignOutcome:
    """The library entry point: check, then run (resuming whatever a killed run left)."""
    return Aligner(project, options, view).run()
