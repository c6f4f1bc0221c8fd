"""`syllabus align`: score the teacher's drafts by this student, and align the teacher to the winners."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from .common import ProjectOption, StageBars, bar_columns, console, err_console, open_project


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def align(
    nodes: Annotated[
        Optional[list[str]], typer.Option("--nodes", help="Glob over discipline paths (repeatable). Default: all.")
    ] = None,
    drafts: Annotated[
        Optional[int], typer.Option("--drafts", help="Draft questions per node (K). Default: align.drafts.")
    ] = None,
    rationales: Annotated[
        Optional[int],
        typer.Option(
            "--rationales", help="Rationales per question (R), each in another strategy. Default: align.rationales."
        ),
    ] = None,
    items: Annotated[
        Optional[int],
        typer.Option("--items", help="Preference items per node the drafts are scored on (M). Default: align.items."),
    ] = None,
    scorer: Annotated[
        Optional[str],
        typer.Option(
            "--scorer",
            help="icl: the draft as an in-context example (ARTE); influence: the reference loss after one "
            "step on it (Montessori-Instruct); both: pairs both agree on. Default: align.scorer.",
        ),
    ] = None,
    influence: Annotated[
        Optional[str],
        typer.Option(
            "--influence",
            help="exact (a real step, undone) or fast (first-order, one backward). Default: align.influence.",
        ),
    ] = None,
    mode: Annotated[
        Optional[str],
        typer.Option(
            "--mode",
            help="dpo: train the teacher on the pairs; in_context: pick exemplars and mixes for a served "
            "teacher; auto: dpo when the teacher's weights are here. Default: align.mode.",
        ),
    ] = None,
    probes: Annotated[
        Optional[Path],
        typer.Option("--probes", help="Preference items (JSONL: question, answer, node). Default: loop exam items."),
    ] = None,
    run: Annotated[Optional[Path], typer.Option("--run", help="Run folder. Default: runs/align.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of drafts and training. Default: generation.seed.")] = None,
    teacher: Annotated[Optional[str], typer.Option("--teacher", "-t", help="Default: syllabus.yaml's teacher.")] = None,
    student: Annotated[Optional[str], typer.Option("--student", help="Default: student.model.")] = None,
    learning_rate: Annotated[
        Optional[float], typer.Option("--lr", help="Learning rate of the teacher's DPO. Default: align.learning_rate.")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Align the teacher with what helps this student: drafts, scored by the student, become DPO pairs.

    The teacher writes K draft questions per node and R rationales each; the student scores
    every draft on the node's preference items; drafts that differ beyond the measured noise
    become preference pairs (RUN/align/pairs.jsonl, a TRL DPO dataset). A local teacher is
    then trained on them (RUN/align/teacher/final, a model folder); a served teacher gets
    exemplars and strategy mixes instead (RUN/align/in_context.json). Kill it and run it
    again: no draft is asked or scored twice.

    Examples:

    `syllabus align --drafts 4 --rationales 2 --items 8`

    `syllabus generate --teacher runs/align/align/teacher/final` (regenerate with the aligned teacher)

    `syllabus align --scorer influence --influence fast --nodes 'physics/*'`
    """
    from ..align.run import Aligner, AlignOptions

    proj = open_project(project)
    options = AlignOptions(
        nodes=nodes,
        drafts=drafts,
        rationales=rationales,
        items=items,
        scorer=scorer,
        influence=influence,
        mode=mode,
        probes=probes,
        run_dir=run,
        seed=seed,
        teacher=teacher,
        student=student,
        learning_rate=learning_rate,
        relative_to=Path.cwd(),
    )
    aligner = Aligner(proj, options)  # bad input fails here, before any model loads
    with Progress(*bar_columns(), console=err_console, transient=False) as bars:
        aligner.view = StageBars(bars, indent="  ")
        outcome = aligner.run()
    summary = outcome.summary
    table = Table(
        "node", "drafts", "score spread", "noise floor", "pairs", "mode", title=f"Alignment ({summary['scorer']})"
    )
    for node, block in summary["nodes"].items():
        table.add_row(
            escape(node),
            str(block["drafts"]),
            _num(block["score_spread"]),
            _num(block["noise_floor"], 6),
            str(block["pairs"]),
            block["mode"],
        )
    console.print(table)
    console.print(f"mode {summary['mode']}: {escape(summary['mode_reason'])}")
    if summary["aligned_teacher"]:
        console.print(f"[green]aligned teacher[/]: {escape(summary['aligned_teacher'])}")
        console.print(f"regenerate with: syllabus generate --teacher {escape(summary['aligned_teacher'])}")
    elif summary["in_context"]:
        console.print(f"exemplars and mixes: {escape(summary['in_context'])}")
    console.print(f"summary in {escape(str(outcome.folder / 'summary.json'))}")
