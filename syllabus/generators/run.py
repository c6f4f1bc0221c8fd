"""One `syllabus generate` run, from a project folder to a written run folder.

This is the library entry point the CLI calls: it resolves the teacher, checks it
can be reached before any work, runs the GLAN pipeline through the request cache,
and writes the dataset, its card and a JSON summary into the run folder.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends import make_backend, parse_teacher_spec
from ..errors import UserError
from ..fsutil import atomic_write_text
from ..project import Project
from ..prompts import Templates
from .cache import RequestCache
from .dataset import dataset_card, write_dataset
from .glan import GenerationResult, GlanGenerator
from .teacher import CachedTeacher, NoProgress, Progress

CACHE_FILE = "cache.sqlite"


@dataclass
class GenerateOptions:
    nodes: list[str] | None = None
    questions: int | None = None
    run_dir: Path | None = None
    teacher: str | None = None
    base_urls: list[str] | None = None
    seed: int | None = None
    concurrency: int | None = None


@dataclass
class GenerateOutcome:
    result: GenerationResult
    run_dir: Path
    outputs: dict[str, Path]
    teacher: str


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
    taxonomy = project.load_taxonomy()
    disciplines = taxonomy.select(options.nodes)
    if not disciplines:
        raise UserError("the selection has no discipline to generate for", where=taxonomy.root,
                        hint="add one with `syllabus taxonomy add PATH --kind discipline ...`")
    templates = Templates(project.prompts_dir)
    for name in ("subjects", "syllabus", "question", "answer"):
        templates.get(name)  # a broken override fails now, not after the first stage
    spec = parse_teacher_spec(options.teacher, project.config.teacher)
    return settings, taxonomy, disciplines, templates, spec


def generate(project: Project, options: GenerateOptions, progress: Progress | None = None) -> GenerateOutcome:
    settings, taxonomy, disciplines, templates, spec = prepare(project, options)
    backend = make_backend(spec, project.config.teacher, base_urls=options.base_urls,
                           concurrency=options.concurrency, project_root=project.root)
    run_dir = resolve_run_dir(project, options.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = RequestCache(run_dir / CACHE_FILE)
    teacher = CachedTeacher(backend, cache, progress or NoProgress())
    generator = GlanGenerator(teacher=teacher, templates=templates, settings=settings)

    async def main() -> GenerationResult:
        try:
            await backend.preflight()
            return await generator.generate(disciplines, settings.questions)
        finally:
            await backend.aclose()

    # The dataset writer's import (~1 s) happens while the teacher works, not after it.
    warm = threading.Thread(target=_import_dataset_writer, name="warm-imports", daemon=True)
    warm.start()
    try:
        result = asyncio.run(main())
    finally:
        cache.close()
        warm.join()
    outputs: dict[str, Path] = {}
    summary = {
        "teacher": backend.model,
        "backend": backend.kind,
        "rows": len(result.rows),
        "failed_requests": result.failed_requests,
        "stages": {k: v.as_dict() for k, v in result.stats.items()},
        "nodes": [{"path": n.path, "requested": n.requested, "delivered": n.delivered, "note": n.note}
                  for n in result.nodes],
        "templates": result.templates,
    }
    if result.rows:
        outputs = write_dataset(result.rows, run_dir)
        card = dataset_card(
            title=f"syllabus run {run_dir.name}",
            rows=result.rows,
            nodes=result.nodes,
            stats=result.stats,
            teacher=backend.model,
            backend=backend.kind,
            templates={name: {"version": templates.get(name).version,
                              "source": "project override" if templates.get(name).overridden else "built-in"}
                       for name in result.templates},
            settings=settings.model_dump(mode="json"),
            command=" ".join(["syllabus", *map(shlex.quote, sys.argv[1:])]) if sys.argv else "syllabus generate",
        )
        atomic_write_text(run_dir / "README.md", card)
        outputs["card"] = run_dir / "README.md"
    else:
        summary["empty_reason"] = result.empty_reason()
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    outputs["summary"] = run_dir / "summary.json"
    return GenerateOutcome(result, run_dir, outputs, backend.model)


def _import_dataset_writer() -> None:
    import datasets  # noqa: F401


def dry_run(project: Project, options: GenerateOptions) -> dict[str, Any]:
    settings, taxonomy, disciplines, templates, spec = prepare(project, options)
    generator = GlanGenerator(teacher=None, templates=templates, settings=settings)  # type: ignore[arg-type]
    return {
        "teacher": spec.model or spec.backend,
        "disciplines": [n.path for n in disciplines],
        "stages": generator.plan(disciplines, settings.questions),
    }
