"""`syllabus generate` and `syllabus teacher check`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .common import (
    PlainProgress,
    ProjectOption,
    StageBars,
    console,
    err_console,
    open_project,
    open_project_or_defaults,
    path_column,
)

TeacherOption = Annotated[
    Optional[str],
    typer.Option(
        "--teacher", "-t", help="'embedded', a local model folder, or 'openai:MODEL'. Default: syllabus.yaml."
    ),
]
BaseUrlOption = Annotated[
    Optional[list[str]],
    typer.Option("--base-url", help="OpenAI-compatible server URL (repeat to spread requests across servers)."),
]


def generate(
    nodes: Annotated[
        Optional[list[str]],
        typer.Option("--nodes", help="Glob over node paths, e.g. 'mathematics/*' (repeatable). Default: all."),
    ] = None,
    questions: Annotated[
        Optional[int],
        typer.Option("--questions", "-n", help="Questions in all, shared by node weight. Default: syllabus.yaml."),
    ] = None,
    run: Annotated[
        Optional[Path], typer.Option("--run", help="Run folder. Default: runs/default in the project.")
    ] = None,
    teacher: TeacherOption = None,
    base_url: BaseUrlOption = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the question sampler.")] = None,
    concurrency: Annotated[
        Optional[int], typer.Option(help="Requests in flight (openai) or batch size (local).")
    ] = None,
    decontaminate: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--decontaminate",
            metavar="PATH",
            help="Evaluation set (JSONL, Parquet or a datasets folder with a question/prompt/input/problem column): "
            "drop rows whose question shares an n-gram with it (repeatable; adds to generation.filters.decontaminate).",
        ),
    ] = None,
    order: Annotated[
        Optional[str],
        typer.Option("--order", help="Dataset row order: taxonomy, easy_to_hard, interleaved or shuffled."),
    ] = None,
    round_index: Annotated[
        Optional[int],
        typer.Option(
            "--round",
            min=0,
            help="Round K of the run: new questions (round 0 asks what a plain run asks), written to RUN/rounds/K/data "
            "and sharing RUN's request cache. Default: one generation in RUN itself.",
        ),
    ] = None,
    in_context: Annotated[
        Optional[Path],
        typer.Option(
            "--in-context",
            metavar="FILE",
            help="`syllabus align`'s RUN/align/in_context.json (a served teacher): its best drafts as each "
            "node's first exemplars, its strategy and Bloom mixes.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print requests per stage and estimated tokens; call nothing.")
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Generate a GLAN instruction dataset from the taxonomy.

    Subjects and syllabi are written into the taxonomy as editable YAML; the dataset
    (TRL prompt-completion), a JSONL export and a dataset card go to the run folder.
    Rerun the same command after a crash: cached answers are never requested again.

    Examples:

    `syllabus generate --questions 12`

    `syllabus generate --nodes 'mathematics/*' --teacher openai:gpt-4o-mini --base-url https://api.openai.com/v1`

    `syllabus generate --decontaminate evals/gsm8k-test.jsonl --decontaminate evals/mmlu.parquet`

    The data-quality filters (generation.filters in syllabus.yaml) run after the pipeline:
    kept rows go to the dataset, dropped ones to dropped.jsonl with the reason.
    """
    from ..generators.job import GenerateOptions

    proj = open_project(project)
    # The library reads neither the current folder nor sys.argv: relative paths and the command line come from here.
    options = GenerateOptions(
        nodes=nodes,
        questions=questions,
        run_dir=run,
        teacher=teacher,
        base_urls=base_url,
        seed=seed,
        concurrency=concurrency,
        decontaminate=decontaminate,
        order=order,
        round=round_index,
        relative_to=Path.cwd(),
        command=" ".join(["syllabus", *map(shlex.quote, sys.argv[1:])]) if sys.argv else "syllabus generate",
        in_context=in_context if in_context is None or in_context.is_absolute() else Path.cwd() / in_context,
    )
    if dry_run:
        _print_plan(proj, options)
        return
    from ..generators.job import prepare
    from ..generators.run import run_job

    job = prepare(proj, options)  # bad input fails here, before the progress bars are drawn
    if not err_console.is_terminal:  # a log or a pipe: a line per stage every few seconds, not bars
        outcome = run_job(job, progress=PlainProgress(err_console))
    else:
        columns = (TextColumn("[bold]{task.description:<9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err_console, transient=False) as bars:
            outcome = run_job(job, progress=StageBars(bars))
    result = outcome.result
    _print_summary(result, outcome.per_node)
    _print_filters(outcome)
    if outcome.kept:
        console.print(
            f"[green]wrote {outcome.kept} rows[/] to {escape(str(outcome.outputs['dataset']))} "
            f"(+ {escape(outcome.outputs['jsonl'].name)}, README.md)"
            + (f"; {outcome.dropped} dropped to {escape(outcome.outputs['dropped'].name)}" if outcome.dropped else "")
        )
    else:
        err_console.print(f"[bold red]no dataset written[/]: {escape(outcome.empty_reason() or '')}")
    if result.failed_requests:
        err_console.print(
            f"[red]{result.failed_requests} request(s) failed[/]; rerun the same command to retry them "
            f"(reasons in {escape(str(outcome.outputs['summary']))})"
        )
    if result.failed_requests or not outcome.kept:
        raise typer.Exit(1)


def _print_summary(result, kept: dict[str, int]) -> None:
    table = Table(
        "stage",
        "requested",
        "from cache",
        "answered",
        "redrawn",
        "parsed",
        "failed",
        "kept",
        title="Generation summary",
    )
    for stage, stats in result.stats.items():
        s = stats.as_dict()
        failed = ", ".join(f"{n} {r}" for r, n in {**s["failed"], **s["unparsed"]}.items()) or "0"
        redrawn = ", ".join(f"{n} {r}" for r, n in s["redrawn"].items()) or "0"  # why each was drawn again
        table.add_row(
            stage,
            str(s["requested"]),
            str(s["from_cache"]),
            str(s["answered"]),
            escape(redrawn),
            str(s["parsed"]),
            escape(failed),
            str(s["kept"]),
        )
    console.print(table)
    short = [n for n in result.nodes if kept.get(n.path, 0) < n.requested]
    if short:
        nodes = Table(
            path_column("node", [n.path for n in short]),
            "requested",
            "replaced",
            "kept",
            "why",
            title="Nodes short of their share",
        )
        for n in short:
            why = n.note or "dropped by a stage or a filter above, replacements spent (generation.replacements)"
            nodes.add_row(escape(n.path), str(n.requested), str(n.replaced), str(kept.get(n.path, 0)), escape(why))
        console.print(nodes)


def _print_filters(outcome) -> None:
    report = outcome.filters
    if not report.counts:
        return
    table = Table("filter", "dropped", title=f"Filters: {report.kept} of {report.rows_in} rows kept")
    for reason, count in report.counts.items():
        table.add_row(reason, str(count))
    console.print(table)
    if report.unjudged:
        err_console.print(
            f"[yellow]{report.unjudged} row(s) kept unjudged[/]: the judge's reply failed or did not "
            "parse (judge_score is null; rerun to retry failed requests)"
        )
    if report.per_eval_set:
        sets = Table("evaluation set", "rows overlapping", title="Decontamination")
        for name, count in report.per_eval_set.items():
            sets.add_row(escape(name), str(count))
        console.print(sets)


def _print_plan(proj, options) -> None:
    from ..generators.job import dry_run

    plan = dry_run(proj, options)
    table = Table(
        "stage",
        "requests",
        "est. prompt tokens",
        "max completion tokens",
        title=f"Dry run: {len(plan['disciplines'])} discipline(s), teacher {escape(plan['teacher'])}",
    )
    for stage, numbers in plan["stages"].items():
        table.add_row(
            stage, str(numbers["requests"]), f"{numbers['prompt_tokens']:,}", f"{numbers['max_completion_tokens']:,}"
        )
    console.print(table)
    console.print(
        "[dim]Upper bounds: subjects not generated yet are counted at max_subjects each; nothing was sent.[/]"
    )
    sets = ", ".join(f"{escape(name)} ({count} questions)" for name, count in plan["eval_sets"].items())
    console.print(
        f"Filters after generation: {', '.join(plan['filters']) or 'none'}"
        + (f"; evaluation sets: {sets}" if sets else "")
    )


teacher_app = typer.Typer(help="Check the teacher model.", no_args_is_help=True)


@teacher_app.command("check")
def check(teacher: TeacherOption = None, base_url: BaseUrlOption = None, project: ProjectOption = None) -> None:
    """Connect, send one short request, report the model, latency and what the backend can do."""
    import asyncio
    import time

    from ..backends import ChatRequest, RequestFailed, make_backend, parse_teacher_spec
    from ..errors import UserError

    proj = open_project_or_defaults(project)  # outside a project: check the flags alone
    spec = parse_teacher_spec(teacher, proj.config.teacher)
    backend = make_backend(spec, proj.config.teacher, base_urls=base_url, project_root=proj.root)

    async def main():
        try:
            info = await backend.preflight()
            start = time.perf_counter()
            try:
                reply = await backend.complete(
                    ChatRequest.from_messages(
                        [{"role": "user", "content": "Say hello in one word."}], max_tokens=8, temperature=0
                    )
                )
            except RequestFailed as exc:  # listed the model but cannot answer: say so plainly
                raise UserError(f"the teacher failed a chat request: {exc}", where=spec.model or spec.backend) from None
            info.update(latency_s=round(time.perf_counter() - start, 3), reply=reply.text)
            return info, await backend.capabilities()
        finally:
            await backend.aclose()

    info, capabilities = asyncio.run(main())
    info.update(capabilities.flags())
    if capabilities.context_tokens:
        info["context_tokens"] = capabilities.context_tokens
    table = Table("check", "result", title="Teacher check")
    for key, value in info.items():
        shown = ("[green]yes[/]" if value else "[yellow]no[/]") if isinstance(value, bool) else escape(str(value))
        note = capabilities.notes.get(key) if value is False else None
        table.add_row(key, shown + (f" [dim]({escape(note)})[/]" if note else ""))
    console.print(table)
