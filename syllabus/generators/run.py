"""One `syllabus generate` run: a prepared job (`job.py`) through the GLAN stages and the
filters to a written run folder (`output.py`).

A run resolves the teacher, checks it can be reached before any work (`session.py`), runs
the GLAN stages through the request cache, spools each finished row to disk, runs the
data-quality filters over the spooled rows (the LLM judges ask the teacher from there), and
writes the kept dataset, the dropped rows, the card and a JSON summary into the output
folder; the story goes to RUN/syllabus.log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..backends.redact import Redactor, redact_url, redact_urls
from ..errors import UserError
from ..fsutil import atomic_write_text
from ..progress import NoProgress, Progress
from ..project import Project
from ..runlock import run_folder
from ..runlog import run_log
from .dataset import dataset_card
from .glan import GenerationResult, GlanGenerator
from .job import GenerateJob, GenerateOptions, GenerateOutcome, prepare
from .judge import Judge
from .output import Filtered, filter_and_write
from .session import teacher_session
from .skill_mix_judge import SkillMixJudge
from .spool import RowSpool

__all__ = [
    "GenerateJob",
    "GenerateOptions",
    "GenerateOutcome",
    "generate",
    "prepare",
    "run_job",
]  # one import for Python users

log = logging.getLogger(__name__)


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

    # The dataset writer's import (pyarrow, ~0.2 s) happens while the teacher works, not after it,
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
                "replaced": n.replaced,
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
    import pyarrow  # noqa: F401  (data/write.py writes the dataset folder with pyarrow, not `datasets`)
