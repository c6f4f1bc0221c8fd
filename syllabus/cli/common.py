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
