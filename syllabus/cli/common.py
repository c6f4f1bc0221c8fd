"""What every command shares: consoles and the `--project` option."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.segment import Segment

# C0 controls but tab and newline, DEL, C1 controls, and lone surrogates (the undecodable
# bytes of a file name that is not UTF-8).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` with every control character written out as `\\xNN` (a surrogate from an
    undecodable file name as the byte it stands for), so data can never drive the terminal."""
    return _UNPRINTABLE.sub(_escaped, text) if _UNPRINTABLE.search(text) else text


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class SafeConsole(Console):
    """A console that never sends a control character from data to the terminal.

    Dataset values, node and folder names and file paths are other people's text: an ESC in
    one could recolour the terminal, move the cursor, retitle the window or hide a line. Every
    string is cleaned as it becomes text (so tables measure what is shown), and every segment
    again as it is rendered (text built elsewhere); rich's own escape codes are made later,
    from styles and control segments, so they are untouched."""

    def render_str(self, text: str, **kwargs):
        return super().render_str(printable(text), **kwargs)

    def render(self, renderable, options=None):
        for segment in super().render(renderable, options):
            if segment.control is None and _UNPRINTABLE.search(segment.text):
                segment = Segment(printable(segment.text), segment.style)
            yield segment


console = SafeConsole()
err_console = SafeConsole(stderr=True)

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


def bar_columns(width: int = 24, *extra: ProgressColumn) -> tuple[ProgressColumn, ...]:
    """The columns of a long job's bars: what, how far, done of all, time so far and time left."""
    return (
        TextColumn(f"[bold]{{task.description:<{width}}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
    )
