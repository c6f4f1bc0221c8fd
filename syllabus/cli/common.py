"""What every command shares: consoles and the `--project` option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

ProjectOption = Annotated[
    Optional[Path],
    typer.Option(
        "--project",
        "-C",
        help="Project folder (holding syllabus.yaml). Default: the current folder or the nearest one above it.",
        show_default=False,
    ),
]


def open_project(path: Optional[Path]):
    from ..project import Project

    return Project.find(path)


def open_project_or_defaults(path: Optional[Path]):
    """The project, or (outside any project, with no --project given) one with default settings.

    Commands that can run without a project (`teacher check`, `train`, `eval`) use this;
    a --project that is wrong is still an error.
    """
    from ..errors import UserError
    from ..project import Project, ProjectConfig

    try:
        return open_project(path)
    except UserError:
        if path is not None:
            raise
        return Project(Path.cwd(), ProjectConfig())
