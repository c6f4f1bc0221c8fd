"""`syllabus distill`: the closed loop, with a live view of its rounds."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.progress import Progress, TextColumn
from rich.table import Table

from .common import (
    PlainProgress,
    ProjectOption,
    StageBars,
    bar_columns,
    comparison_table,
    console,
    err_console,
    open_project,
    path_column,
)


class LiveView(StageBars):
    """One bar for the loop (steps done of all rounds, with the time left at the pace so far),
    one per stage of the step in flight, and a table of per-node scores as each round ends."""

    def __init__(self, bars: Progress, rounds: int, steps: int):
        super().__init__(bars, indent="  ")
        self.total = 1 + rounds * steps
        self.loop = bars.add_task("loop", total=self.total, left="")
        self.seen: set[str] = set()
        self.started = time.monotonic()
        self.done_here = 0  # steps this process finished (resumed ones cost nothing, so they set no pace)

    def step(self, name: str, round_index: int | None = None) -> None:
        key = f"{round_index}:{name}"
        if key not in self.seen and self.seen:
            self.bars.advance(self.loop)
            self.done_here += 1
        self.seen.add(key)
        for task in self.tasks.values():  # the last step's bars make way for this one's
            self.bars.remove_task(task)
        self.tasks.clear()
        self.totals.clear()
        left = ""
        if self.done_here:
            remaining = self.total - (len(self.seen) - 1)
            seconds = (time.monotonic() - self.started) / self.done_here * remaining
            left = f"~{seconds / 60:.0f} min left" if seconds >= 60 else f"~{seconds:.0f} s left"
        self.bars.update(self.loop, description=f"round {round_index} · {name}", left=left)

    def round_done(self, record: dict[str, Any]) -> None:
        self.bars.console.print(round_table(record))


def round_table(record: dict[str, Any]) -> Table:
    """A round's scores per node, as the round's record has them."""
    k = record["round"]
    table = Table(
        path_column("node", record["nodes"]),
        "dev",
        "exam",
        "dev logprob",
        "rows",
        title=f"Round {k}" + (" (untrained)" if k == 0 else ""),
    )
    for node, block in sorted(record["nodes"].items()):
        table.add_row(
            escape(node),
            _pct(block.get("dev")),
            _pct(block.get("exam")),
            f"{block.get('dev_logprob', 0.0):.2f}",
            str(record.get("budgets", {}).get(node, "-")),
        )
    table.add_row("(mean)", _pct(record.get("dev")), _pct(record.get("exam")), "", "")
    return table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def distill(
    rounds: Annotated[
        Optional[int], typer.Option("--rounds", min=1, help="Rounds to run. Default: loop.rounds.")
    ] = None,
    budget: Annotated[
        Optional[int], typer.Option("--budget", min=1, help="Rows per round, spread over nodes. Default: loop.budget.")
    ] = None,
    run: Annotated[
        Optional[Path], typer.Option("--run", help="Run folder. Default: runs/distill (runs/distill-baseline).")
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option(help="Seed of budgets, picks and training. Default: generation.seed.")
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option("--baseline", help="Same rows and training without feedback: GLAN rows by node weight only."),
    ] = False,
    test: Annotated[
        Optional[Path],
        typer.Option(
            "--test",
            help="More test items (JSONL): kept out of the training data, and answered once at the end by the best "
            "and the starting student.",
        ),
    ] = None,
    teacher: Annotated[Optional[str], typer.Option("--teacher", "-t", help="Default: syllabus.yaml's teacher.")] = None,
    student: Annotated[
        Optional[str], typer.Option("--student", help="The student to start from. Default: student.model.")
    ] = None,
    align: Annotated[
        bool,
        typer.Option(
            "--align",
            help="Each round, first align the teacher on its two weakest nodes (`syllabus align`: drafts scored by "
            "the student; a local teacher is DPO-trained on the pairs and writes the round's rows).",
        ),
    ] = False,
    project: ProjectOption = None,
) -> None:
    """Run tailored rounds until the student stops improving, then compare it with the start on test items.

    Each round examines the student on every node's exam and dev items and spends its rows
    where the student is weak or moving: the student's own right retries of its wrong exam
    answers first, the teacher's corrections where none was right, rehearsal of what it
    already answers right, each row checked (it reaches the reference, names no competing
    answer, restates the question) and chosen by the student's own likelihood. Each round
    trains the last round's student on its rows and a replay share of earlier ones
    (`loop.restart`, `loop.replay`). Dev items decide;
    they are never trained on. At the end the best and the starting student answer the test
    items once: per node, the paired difference, its standard error and a McNemar p-value.
    Kill it at any point and run the same command again: it continues.

    Examples:

    `syllabus init --example distill my-loop && cd my-loop && syllabus distill`

    `syllabus distill --baseline` (GLAN rows by node weight, no feedback, the same training, to compare)

    Results: RUN/summary.json (per round and node: dev and exam scores, budgets; best and final student),
    RUN/test/comparison.json, RUN/report.html. The recipe is `loop:` in syllabus.yaml (docs/configuration.md).
    """
    from ..loop.distill import DistillOptions, Loop

    proj = open_project(project)
    options = DistillOptions(
        rounds=rounds,
        budget=budget,
        run_dir=run,
        seed=seed,
        baseline=baseline,
        test=test,
        teacher=teacher,
        student=student,
        align=align,
        relative_to=Path.cwd(),
        command=" ".join(["syllabus", *map(shlex.quote, sys.argv[1:])]),
    )
    columns = bar_columns(24, TextColumn("{task.fields[left]}"))
    loop = Loop(proj, options)  # bad input fails here, before the bars are drawn
    if not err_console.is_terminal:  # a log or a pipe: plain lines, the per-round table all the same
        loop.view = PlainProgress(err_console, on_round=lambda record: err_console.print(round_table(record)))
        outcome = loop.run()
    else:
        with Progress(*columns, console=err_console, transient=False) as bars:
            loop.view = LiveView(bars, loop.rounds, len(loop.steps))
            outcome = loop.run()
    summary = outcome.summary
    console.print(f"[green]best round {summary['best_round']}[/]: {escape(str(summary['best_student']))}")
    console.print(f"final student: {escape(str(summary['final_student']))}")
    if summary["stopped"]:
        console.print(f"[yellow]stopped early[/]: {escape(summary['stopped'])}")
    _print_test(outcome.run_dir / "test" / "comparison.json")
    console.print(f"summary in {escape(str(outcome.run_dir / 'summary.json'))}")


def _print_test(path: Path) -> None:
    """The final comparison on test items, as the loop wrote it (none without test items)."""
    import json

    if not path.is_file():
        return
    found = json.loads(path.read_text(encoding="utf-8"))
    blocks = [*found["nodes"].items(), ("(weak nodes)", found.get("group")), ("(all)", found["pooled"])]
    title = f"Round {found['best_round']}'s student against the starting one, on test items no round read"
    console.print(comparison_table(title, blocks, a="start", b="best"))
