"""`syllabus align`: drafts, the student's scores of them, pairs, and a teacher that prefers what helps.

Four steps, each writing its files whole before it is marked done in `RUN/align/state.json`
(the loop's state record), so a kill loses at most the step in flight:

1. drafts: K questions per node, R rationales each (`generators.drafts`), through the
   run's request cache: asking again costs nothing.
2. scores: every draft by the chosen scorer(s) on the node's preference items
   (`students.preference` in context, `students.influence` by one step), one line per
   draft appended to `scores.jsonl` as it is scored, so a resumed run scores no draft twice;
   each node's baseline and noise floor first.
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
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import UserError
from ..fsutil import atomic_write_jsonl, atomic_write_text
from ..generators.drafts import ALIGN_ROUND, Draft
from ..layout import ProjectLayout, RunLayout
from ..project import Project
from ..runlock import run_folder
from ..students.probes import Probe
from ..taxonomy.model import BLOOM_LEVELS
from .pairs import Scored, agreed, in_context_choices, question_pairs, rationale_pairs

SCORERS = ("icl", "influence", "both")
INFLUENCE_MODES = ("exact", "fast")
MODES = ("auto", "dpo", "in_context")
STEPS = ("drafts", "scores", "pairs", "teacher")
ALIGN_DIR = "align"
ICL_DRAFTS_IN_FLIGHT = 4  # drafts scored at once: their items fill a local student's batches


class AlignView(Protocol):
    """What a caller sees: the step in flight and counted work within it."""

    def step(self, step: str) -> None: ...

    def add_total(self, stage: str, count: int) -> None: ...

    def advance(self, stage: str, count: int = 1) -> None: ...


class QuietAlignView:
    def step(self, step: str) -> None:
        pass

    def add_total(self, stage: str, count: int) -> None:
        pass

    def advance(self, stage: str, count: int = 1) -> None:
        pass


@dataclass(frozen=True)
class AlignOptions:
    nodes: list[str] | None = None  # globs over discipline paths; default every discipline
    drafts: int = 4  # draft questions per node (K)
    rationales: int = 2  # rationales per question (R), each in another strategy
    items: int = 8  # preference items per node the drafts are scored on (M)
    scorer: str = "icl"  # icl | influence | both
    influence: str = "exact"  # exact | fast (first-order)
    mode: str = "auto"  # auto | dpo | in_context
    probes: Path | None = None  # preference items (JSONL question, answer, node); default loop items' exam split
    run_dir: Path | None = None  # default runs/align
    seed: int | None = None  # default generation.seed
    teacher: str | None = None
    student: str | None = None
    learning_rate: float = 5e-6  # the teacher's DPO
    epochs: float = 1.0
    draft_round: int = ALIGN_ROUND  # the draft round: another gives fresh drafts of the same nodes
    until: str = "teacher"  # the last step to run (a caller that only wants scores stops at "scores")
    relative_to: Path | None = None


@dataclass
class AlignOutcome:
    folder: Path  # RUN/align
    summary: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def _check(options: AlignOptions, strategies: int) -> None:
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

    def __init__(self, project: Project, options: AlignOptions, view: AlignView | None = None, *, exam=None):
        """`exam`: the preference items' source when a caller has already split them (the loop's exam
        items); otherwise --probes, or the exam items of the loop's items file split as the loop splits them."""
        from ..backends.spec import parse_student_spec, parse_teacher_spec

        self.project, self.options = project, options
        self.view: AlignView = view or QuietAlignView()
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
        self.student = parse_student_spec(options.student or project.config.student.model)
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
        from ..loop.state import fingerprint

        self.fingerprint = fingerprint(
            project=str(project.root.resolve()),
            items={n: [(p.question, p.answer) for p in items] for n, items in self.items.items()},
            drafts=[options.drafts, options.rationales, options.draft_round, self.strategies],
            scorer=[options.scorer, options.influence],
            teacher=[self.teacher.backend, self.teacher.model],
            student=[self.student.backend, self.student.model],
            training=[self.mode, options.learning_rate, options.epochs, project.config.student.model_dump()],
            generation=self.settings.model_dump(),
        )

    # Inputs ------------------------------------------------------------------------------
    def _preference_items(self, base: Path, exam) -> dict[str, list[Probe]]:
        from ..loop.items import load_items
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
        from ..loop.state import LoopState

        folder = folder or root / ALIGN_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.cache = folder, root / "cache.sqlite"
        state = LoopState.open(folder / "state.json", self.fingerprint, what="align")
        seconds: dict[str, float] = {}
        for step in STEPS[: STEPS.index(self.options.until) + 1]:
            if state.is_done(0, step):
                continue
            self.view.step(step)
            state.begin(0, step)
            started = time.perf_counter()
            getattr(self, f"_{step}")()
            seconds[step] = round(time.perf_counter() - started, 2)
            state.finish(0, step)
        summary = self._summary(seconds)
        return AlignOutcome(folder, summary, seconds)

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
        from ..backends.spec import make_backend
        from ..generators.cache import RequestCache
        from ..generators.drafts import node_drafts
        from ..generators.glan import GlanGenerator
        from ..generators.stages import StageRunner
        from ..generators.teacher import CachedTeacher
        from ..prompts import Templates

        backend = make_backend(self.teacher, self.project.config.teacher, project_root=self.project.root)
        cache = RequestCache(self.cache)
        try:
            await backend.preflight()
            runner = StageRunner(CachedTeacher(backend, cache), Templates(self.project.prompts_dir), self.view)
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
        finally:
            await backend.aclose()
            cache.close()

    def drafts(self) -> list[Draft]:
        return [Draft.from_dict(row) for row in _read_jsonl(self.folder / "drafts.jsonl")]

    # 2. scores ---------------------------------------------------------------------------
    def _scores(self) -> None:
        scorers = ["icl", "influence"] if self.options.scorer == "both" else [self.options.scorer]
        drafts = self.drafts()
        _cut_partial_line(self._scores_file)  # a kill mid-line: new lines must not be glued to it
        done = {(r["scorer"], r["id"]) for r in _read_jsonl(self._scores_file, tolerant=True)}
        for scorer in scorers:
            todo = [d for d in drafts if (scorer, d.id) not in done]
            nodes = [n for n in self.nodes if (scorer, f"{n}#baseline") not in done or any(d.node == n for d in todo)]
            if not nodes:
                continue
            self.view.add_total(f"score {scorer}", len(todo) + 2 * len(nodes))
            if scorer == "icl":
                asyncio.run(self._score_in_context(nodes, todo, done))
            else:
                self._score_influence(nodes, todo, done)

    @property
    def _scores_file(self) -> Path:
        return self.folder / "scores.jsonl"

    def _record(self, record: dict[str, Any]) -> None:
        """One scored line, on disk before the next draft is scored (a kill loses at most the one in flight)."""
        with open(self._scores_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def _score_in_context(self, nodes: list[str], todo: list[Draft], done: set) -> None:
        from ..backends.spec import make_backend
        from ..students.preference import InContextScorer

        backend = make_backend(self.student, self.project.config.teacher, project_root=self.project.root)
        try:
            await backend.preflight()
            for node in nodes:
                scorer = InContextScorer(backend, self.items[node], max_tokens=self.project.config.loop.max_tokens)
                if ("icl", f"{node}#baseline") not in done:
                    baseline = await scorer.baseline()
                    noise = await scorer.noise_floor(baseline)
                    self._record(
                        {
                            "scorer": "icl",
                            "id": f"{node}#baseline",
                            "node": node,
                            "logprobs": list(baseline.logprobs),
                            "accuracy": baseline.accuracy,
                            "noise_floor": noise,
                        }
                    )
                self.view.advance("score icl", 2)
                base = self._baselines("icl")[node]
                await self._drafts_in_context(scorer, base, [d for d in todo if d.node == node])
        finally:
            await backend.aclose()

    async def _drafts_in_context(self, scorer, base: list[float], drafts: list[Draft]) -> None:
        in_flight = asyncio.Semaphore(ICL_DRAFTS_IN_FLIGHT)

        async def one(draft: Draft) -> None:
            async with in_flight:
                scored = await scorer.draft(draft.question, draft.rationale)
            per_item = [a - b for a, b in zip(scored.logprobs, base)]
            self._record(
                {
                    "scorer": "icl",
                    "id": draft.id,
                    "node": draft.node,
                    "help": sum(per_item) / len(per_item),
                    "per_item": per_item,
                    "accuracy": scored.accuracy,
                }
            )
            self.view.advance("score icl")

        await asyncio.gather(*(one(d) for d in drafts))

    def _score_influence(self, nodes: list[str], todo: list[Draft], done: set) -> None:
        from ..backends.spec import model_folder
        from ..students.influence import Example, InfluenceScorer

        config = self.project.config.student
        scorer = InfluenceScorer(
            model_folder(self.student, self.project.root),
            learning_rate=config.learning_rate,
            max_length=config.max_length,
            seed=self.seed,
        )
        system = self.settings.system_prompt
        prompt_of = (
            (lambda q: [{"role": "system", "content": system}, {"role": "user", "content": q}])
            if system
            else (lambda q: [{"role": "user", "content": q}])
        )
        measure = scorer.exact if self.options.influence == "exact" else scorer.fast
        try:
            for node in nodes:
                scorer.use_reference([Example.of(prompt_of(p.question), p.answer) for p in self.items[node]])
                mine = [d for d in todo if d.node == node]
                if ("influence", f"{node}#baseline") not in done:
                    # The noise floor: one draft scored twice, the student restored in between.
                    probe = mine[0] if mine else next(d for d in self.drafts() if d.node == node)
                    example = Example.of(prompt_of(probe.question), probe.rationale)
                    first, second = scorer.exact(example), scorer.exact(example)
                    noise = max(abs(a - b) for a, b in zip(first.per_item, second.per_item))
                    self._record(
                        {
                            "scorer": "influence",
                            "id": f"{node}#baseline",
                            "node": node,
                            "losses": list(scorer.before),
                            "noise_floor": noise,
                        }
                    )
                self.view.advance("score influence", 2)
                for draft in mine:
                    started = time.perf_counter()
                    result = measure(Example.of(prompt_of(draft.question), draft.rationale))
                    self._record(
                        {
                            "scorer": "influence",
                            "id": draft.id,
                            "node": node,
                            "help": -result.change,
                            "per_item": [-v for v in result.per_item],
                            "mode": result.mode,
                            "seconds": round(time.perf_counter() - started, 4),
                        }
                    )
                    self.view.advance("score influence")
        finally:
            scorer.close()

    def _baselines(self, scorer: str) -> dict[str, list[float]]:
        field_name = "logprobs" if scorer == "icl" else "losses"
        return {
            r["node"]: r[field_name]
            for r in _read_jsonl(self._scores_file, tolerant=True)
            if r["scorer"] == scorer and r["id"].endswith("#baseline")
        }

    def scored(self) -> tuple[dict[str, dict[str, list[Scored]]], dict[str, dict[str, float]]]:
        """scorer -> node -> scored drafts, and scorer -> node -> noise floor, from scores.jsonl."""
        drafts = {d.id: d for d in self.drafts()}
        scored: dict[str, dict[str, list[Scored]]] = {}
        noise: dict[str, dict[str, float]] = {}
        for r in _read_jsonl(self._scores_file, tolerant=True):
            if r["id"].endswith("#baseline"):
                noise.setdefault(r["scorer"], {})[r["node"]] = r["noise_floor"]
            elif r["id"] in drafts:
                scored.setdefault(r["scorer"], {}).setdefault(r["node"], []).append(
                    Scored(drafts[r["id"]], r["scorer"], r["help"], tuple(r["per_item"]), r.get("accuracy"))
                )
        return scored, noise

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
        pairs = _read_jsonl(self.folder / "pairs.jsonl")
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
        pairs = _read_jsonl(self.folder / "pairs.jsonl")
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


def _cut_partial_line(path: Path) -> None:
    """Drop whatever follows the last newline of `path` (what a kill cut short), so appends start clean."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def _read_jsonl(path: Path, *, tolerant: bool = False) -> list[dict[str, Any]]:
    """Rows of `path` ([] when absent); `tolerant` passes over a line a kill cut short."""
    from ..data.read import iter_jsonl

    if not path.is_file():
        return []
    return [row for _, row in iter_jsonl(path, skipped=[] if tolerant else None)]


def align(project: Project, options: AlignOptions, view: AlignView | None = None) -> AlignOutcome:
    """The library entry point: check, then run (resuming whatever a killed run left)."""
    return Aligner(project, options, view).run()
