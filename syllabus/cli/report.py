"""`syllabus report RUN`: one self-contained HTML page of a generation run or a loop run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from .common import ProjectOption, console, err_console


def report(
    run: Annotated[
        Path, typer.Argument(help="Run folder: made by `syllabus generate` or `syllabus distill`.", show_default=False)
    ],
    out: Annotated[Optional[Path], typer.Option("--out", help="The HTML file. Default: RUN/report.html.")] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    compare: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--compare",
            help="Another loop run to set against this one per node (for example runs/distill-baseline); repeatable.",
            show_default=False,
        ),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Charts and tables of a run in one HTML file that opens from disk, offline.

    A generation run: teacher and settings, requests per stage, rows dropped per filter (with
    examples), taxonomy coverage, Bloom/level/difficulty/strategy mixes, lengths, sample rows.
    A loop run: dev accuracy per node and round, budgets and the allocator's reasons, training
    data by kind, training loss, the best round, and `--compare` runs per node.

    The page comes from a jinja2 template: put `report.html.j2` in the project's prompts
    folder to change it.

    Examples:

    `syllabus report runs/default`

    `syllabus report runs/distill --compare runs/distill-baseline --open`
    """
    from ..report import write_report

    outcome = write_report(run, out, compare=compare or [], template_dir=_template_dir(project, run))
    for missing in outcome.missing:
        err_console.print(f"[yellow]missing:[/] {escape(missing)}")
    console.print(
        f"[green]wrote[/] {escape(str(outcome.path))} ({outcome.kind} run, {len(outcome.charts)} charts, "
        f"{outcome.bytes / 2**20:.1f} MiB, {outcome.seconds:.1f} s)"
    )
    if open_:
        import webbrowser

        webbrowser.open(outcome.path.resolve().as_uri())


def _template_dir(project: Optional[Path], run: Path) -> Optional[Path]:
    """The prompts folder of the project that holds the report's template override: --project,
    else the project the run lies in, else the one around the current folder; none is fine."""
    from ..project import CONFIG_FILE, Project

    if project is not None:
        return Project.find(project).prompts_dir
    for start in (run.resolve(), Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / CONFIG_FILE).is_file():
                return Project.load(folder).prompts_dir
    return None
