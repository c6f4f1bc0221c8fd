"""`syllabus distill`: the closed loop, with a live view of its rounds."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.progress import Progress, TaskID, TextColumn
from rich.table import Table

from .common import ProjectOption, bar_columns, console, err_console, open_project


class LiveView:
    """One bar for the loop (steps done of all rounds, with the time left at the pace so far),
    one per stage of the step in flight, and a table of per-node scores as each round ends."""

    def __init__(self, bars: Progress, rounds: int, steps: int):
        self.bars = bars
        self.total = 1 + rounds * steps
        self.loop = bars.add_task("loop", total=self.total, left="")
        self.tasks: dict[str, TaskID] = {}
        self.totals: dict[str, int] = {}
        self.seen: set[str] = set()
        self.started = time.monotonic()
        self.done_here = 0  # steps this process finished (resumed ones cost nothing, so they set no pace)

    def step(self, round_index: int, step: str) -> None:
        key = f"{round_index}:{step}"
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
        self.bars.update(self.loop, description=f"round {round_index} · {step}", left=left)

    def _task(self, stage: str) -> TaskID:
        if stage not in self.tasks:
            self.tasks[stage] = self.bars.add_task(f"  {stage}", total=0, left="")
        return self.tasks[stage]

    def add_total(self, stage: str, count: int) -> None:
        self.totals[stage] = self.totals.get(stage, 0) + count
        self.bars.update(self._task(stage), total=self.totals[stage])

    def advance(self, stage: str, count: int = 1) -> None:
        self.bars.advance(self._task(stage), count)

    def round_done(self, record: dict[str, Any]) -> None:
        k = record["round"]
        table = Table(
            "node", "dev", "exam", "dev logprob", "rows", title=f"Round {k}" + (" (untrained)" if k == 0 else "")
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
        self.bars.console.print(table)


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
        typer.Option("--test", help="Your test items (JSONL): never scored here, only kept out of the training data."),
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
    """Run tailored rounds until the student stops improving: examine, allocate, correct, generate, train.

    Each round examines the student on every node's exam and dev items, spends its rows
    where the student is weak or moving, has the teacher correct the wrong exam answers
    (SFT rows, and DPO pairs against the student's own answer), adds GLAN rows and a
    replay of earlier rounds, trains, and examines again. Dev items decide; they are never
    trained on. Kill it at any point and run the same command again: it continues.

    Examples:

    `syllabus init --example distill my-loop && cd my-loop && syllabus distill --rounds 2`

    `syllabus distill --baseline` (the same rows and training without feedback, to compare)

    Results: RUN/summary.json (per round and node: dev and exam scores, budgets; best and final student).
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
    with Progress(*columns, console=err_console, transient=False) as bars:
        loop.view = LiveView(bars, loop.rounds, len(loop.steps))
        outcome = loop.run()
    summary = outcome.summary
    console.print(f"[green]best round {summary['best_round']}[/]: {escape(str(summary['best_student']))}")
    console.print(f"final student: {escape(str(summary['final_student']))}")
    if summary["stopped"]:
        console.print(f"[yellow]stopped early[/]: {escape(summary['stopped'])}")
    console.print(f"summary in {escape(str(outcome.run_dir / 'summary.json'))}")
