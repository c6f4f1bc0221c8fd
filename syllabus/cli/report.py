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

    found = _project(project, run)
    outcome = write_report(
        run,
        out,
        compare=compare or [],
        template_dir=found.prompts_dir if found else None,
        taxonomy=_taxonomy(found),
    )
    for missing in outcome.missing:
        err_console.print(f"[yellow]missing:[/] {escape(missing)}")
    console.print(
        f"[green]wrote[/] {escape(str(outcome.path))} ({outcome.kind} run, {len(outcome.charts)} charts, "
        f"{outcome.bytes / 2**20:.1f} MiB, {outcome.seconds:.1f} s)"
    )
    if open_:
        import webbrowser

        webbrowser.open(outcome.path.resolve().as_uri())


def _project(project: Optional[Path], run: Path):
    """The project whose prompts folder may hold the template override and whose taxonomy the
    coverage shows: --project, else the project the run lies in, else the one around the
    current folder; none is fine (the built-in template, the run's own nodes)."""
    from ..project import CONFIG_FILE, Project

    if project is not None:
        return Project.find(project)
    for start in (run.resolve(), Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / CONFIG_FILE).is_file():
                return Project.load(folder)
    return None


def _taxonomy(project) -> Optional[list[str]]:
    """Every node path of the project's taxonomy; a taxonomy that does not load only costs
    the page its unasked nodes (a warning), never the report."""
    from ..errors import UserError

    if project is None:
        return None
    try:
        return [node.path for node in project.load_taxonomy().select(None)]
    except UserError as exc:
        err_console.print(f"[yellow]warning:[/] coverage without the taxonomy: {escape(str(exc))}")
        return None
