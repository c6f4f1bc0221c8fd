"""What every command shares: consoles and the `--project` option."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.segment import Segment
from rich.table import Column, Table

from ..progress import NoProgress

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


class StageBars(NoProgress):
    """progress.Progress on a terminal: one bar per stage (done of all, time so far, time left), and
    each step, where the work has steps, as a line above them."""

    def __init__(self, bars: Progress, indent: str = ""):
        self.bars, self.indent = bars, indent
        self.tasks: dict[str, TaskID] = {}
        self.totals: dict[str, int] = {}

    def step(self, name: str, round_index: int | None = None) -> None:
        self.bars.console.print(f"[bold]{escape(name)}[/]")

    def _task(self, stage: str) -> TaskID:
        if stage not in self.tasks:
            self.tasks[stage] = self.bars.add_task(f"{self.indent}{stage}", total=0, left="")
        return self.tasks[stage]

    def add_total(self, stage: str, count: int) -> None:
        self.totals[stage] = self.totals.get(stage, 0) + count
        self.bars.update(self._task(stage), total=self.totals[stage])

    def advance(self, stage: str, count: int = 1) -> None:
        self.bars.advance(self._task(stage), count)


class PlainProgress(NoProgress):
    """progress.Progress for output that is not a terminal (a CI log, `make demo > log`, `| tee`): a
    line per stage at most every `every` seconds, and at its end, with counts, time so far and time
    left; a line per step. A command picks this or the bars by where its output goes."""

    def __init__(self, out: Console, every: float = 5.0, clock=None, on_round=None):
        import time

        self.out, self.every, self.clock = out, every, clock or time.monotonic
        self.on_round = on_round
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.shown: dict[str, float] = {}

    def add_total(self, stage: str, count: int) -> None:
        self.totals[stage] = self.totals.get(stage, 0) + count
        self.done.setdefault(stage, 0)
        self.started.setdefault(stage, self.clock())

    def advance(self, stage: str, count: int = 1) -> None:
        self.done[stage] = self.done.get(stage, 0) + count
        now = self.clock()
        started = self.started.setdefault(stage, now)
        total = self.totals.get(stage, 0)
        finished = total and self.done[stage] >= total
        if not finished and now - self.shown.get(stage, started) < self.every:
            return
        self.shown[stage] = now
        elapsed = now - started
        line = f"{stage}: {self.done[stage]}/{total or '?'}, {_duration(elapsed)}"
        if finished:
            line += " (done)"
        elif total and self.done[stage]:
            line += f", about {_duration(elapsed / self.done[stage] * (total - self.done[stage]))} left"
        self.out.print(line, markup=False, highlight=False)

    def step(self, name: str, round_index: int | None = None) -> None:
        where = "" if round_index is None else f"round {round_index}: "
        self.out.print(f"{where}{name}", markup=False, highlight=False)

    def round_done(self, record: dict) -> None:
        if self.on_round is not None:
            self.on_round(record)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def path_column(header: str, paths=()) -> Column:
    """A table column of taxonomy paths that is never cut or wrapped: the other columns wrap or shrink
    first (a path cut to `mathematics/arithme…` names no node)."""
    return Column(header, no_wrap=True)


def comparison_table(title: str, blocks: list[tuple[str, dict | None]], a: str = "A", b: str = "B") -> Table:
    """Two students item by item (students/compare.py's blocks): per row the verdict, the items, both
    accuracies, the paired difference ± its SE and the exact McNemar p; under it, the smallest
    difference each row's items could show at all."""
    from rich import box

    shown = [(name, block) for name, block in blocks if block and block.get("items")]
    table = Table(
        path_column("nodes", [name for name, _ in shown]),
        "verdict",
        "n",
        f"{a} → {b}",
        f"{b} - {a}",
        "p",
        title=title,
        box=box.SIMPLE_HEAD,
        caption="p: exact McNemar. The smallest difference n items can show: "
        + ", ".join(
            f"{d:.2f} at {n}" for n, d in sorted({(blk["items"], blk["smallest_detectable"]) for _, blk in shown})
        ),
    )
    for name, block in shown:
        se = "" if block["se"] is None else f" ± {block['se']:.2f}"
        table.add_row(
            escape(name),
            block["verdict"],
            str(block["items"]),
            f"{block['accuracy_a']:.0%} → {block['accuracy_b']:.0%}",
            f"{block['difference']:+.2f}{se}",
            f"{block['p_value']:.3f}",
        )
    return table
