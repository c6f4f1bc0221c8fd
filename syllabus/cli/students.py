"""`syllabus train sft|dpo`, `syllabus probes split` and `syllabus eval`: the student side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..layout import ProjectLayout
from .common import ProjectOption, console, open_project_or_defaults

train_app = typer.Typer(
    help=(
        "Train the student with TRL. Multi-GPU: `accelerate launch -m syllabus train sft DATASET` "
        "(the same command, one process per GPU)."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
probes_app = typer.Typer(help="Held-out probe sets for examining the student.", no_args_is_help=True)


def _student_config(project: Optional[Path]):
    """The project's student settings; outside a project, the defaults."""
    return open_project_or_defaults(project).config.student


def _train(method: str, dataset: Path, out: Optional[Path], project: Optional[Path], **flags) -> None:
    from ..students.train import TrainOptions, train

    config = _student_config(project)
    out = out or ProjectLayout.of(open_project_or_defaults(project)).student(method, dataset.name)
    options = TrainOptions.from_config(config, method=method, dataset=dataset, out_dir=out, **flags)
    result = train(options)
    if result.resumed_from:
        console.print(f"resumed from {escape(result.resumed_from)}")
    console.print(f"[green]trained[/] {result.steps} steps, loss {result.train_loss:.4f}; "
                  f"model in {escape(str(result.final_dir))}")
    if result.loss_curve:
        console.print(f"loss curve: {escape(str(result.loss_curve))}")


StudentOpt = Annotated[Optional[str], typer.Option("--student", help="'embedded' or a model folder. Default: syllabus.yaml.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Output folder (checkpoints/, final/, loss.png). Default: students/METHOD-NAME in the project.")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Learning rate. Default: 2e-5 full, 2e-4 LoRA.")]
EpochsOpt = Annotated[Optional[float], typer.Option("--epochs", help="Passes over the data.")]
StepsOpt = Annotated[Optional[int], typer.Option("--max-steps", min=-1, help="Stop after N steps (overrides --epochs).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Examples per step.")]
LengthOpt = Annotated[Optional[int], typer.Option("--max-length", min=16, help="Tokens per example.")]
LoraOpt = Annotated[Optional[bool], typer.Option("--lora/--full", help="LoRA adapter (peft) or every weight.")]
ProbesOpt = Annotated[Optional[Path], typer.Option("--probes", help="Probe file that must not leak into the training data.")]
SaveOpt = Annotated[Optional[int], typer.Option("--save-steps", min=1, help="Checkpoint every N steps.")]


@train_app.command("sft")
def sft(
    dataset: Annotated[Path, typer.Argument(help="Run folder, datasets folder, JSONL or Parquet (prompt/completion or messages).")],
    student: StudentOpt = None, out: OutOpt = None, lr: LrOpt = None, epochs: EpochsOpt = None,
    max_steps: StepsOpt = None, batch_size: BatchOpt = None, max_length: LengthOpt = None, lora: LoraOpt = None,
    probes: ProbesOpt = None, save_steps: SaveOpt = None, project: ProjectOption = None,
) -> None:
    """Supervised fine-tuning on generated data (loss on the completion only).

    Example: `syllabus train sft runs/default/train --max-steps 20 --lora --probes runs/default/probes.jsonl`

    A killed run resumes from its last checkpoint when the same command is run again.
    """
    _train("sft", dataset, out, project, student=student, learning_rate=lr, epochs=epochs, max_steps=max_steps,
           batch_size=batch_size, max_length=max_length, lora=lora, probes=probes, save_steps=save_steps)


@train_app.command("dpo")
def dpo(
    dataset: Annotated[Path, typer.Argument(help="Preference pairs: prompt, chosen, rejected (e.g. EVAL/pairs from `syllabus eval`).")],
    student: StudentOpt = None, out: OutOpt = None, lr: LrOpt = None, epochs: EpochsOpt = None,
    max_steps: StepsOpt = None, batch_size: BatchOpt = None, max_length: LengthOpt = None, lora: LoraOpt = None,
    probes: ProbesOpt = None, save_steps: SaveOpt = None, project: ProjectOption = None,
) -> None:
    """Direct preference optimisation: the teacher's answer chosen, the student's wrong one rejected.

    Example: `syllabus train dpo exams/round0/pairs --student students/sft-train/final --max-steps 10`
    """
    _train("dpo", dataset, out, project, student=student, learning_rate=lr, epochs=epochs, max_steps=max_steps,
           batch_size=batch_size, max_length=max_length, lora=lora, probes=probes, save_steps=save_steps)


@probes_app.command("split")
def split(
    source: Annotated[Path, typer.Argument(help="A run folder or generated dataset.")],
    fraction: Annotated[float, typer.Option(help="Share of each node's rows held out.")] = 0.1,
    minimum: Annotated[int, typer.Option("--min", help="At least this many probes per node (nodes with 2+ rows).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
) -> None:
    """Hold out probes per node: writes probes.jsonl and the training split `train/` beside the dataset."""
    from ..students.probes import split_probes

    probes_file, train_dir, probes, rows = split_probes(source, fraction=fraction, minimum=minimum, seed=seed)
    console.print(f"[green]{probes} probes[/] in {escape(str(probes_file))}; {rows} training rows in {escape(str(train_dir))}")


def evaluate(
    probes: Annotated[Path, typer.Option("--probes", help="Probe JSONL (question, answer, node; or options + correct).")],
    student: StudentOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where results.json, answers, mistakes and pairs/ go. Default: exams/NAME in the project.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Probes answered per batch.")] = 8,
    max_tokens: Annotated[int, typer.Option(min=1, help="Longest student answer, in tokens.")] = 128,
    project: ProjectOption = None,
) -> None:
    """Examine the student per taxonomy node: exact/numeric match, choice accuracy, reference log-probability.

    Example: `syllabus eval --student students/sft-train/final --probes runs/default/probes.jsonl`

    Wrong answers are kept (mistakes.jsonl) and turned into DPO pairs (pairs/) for the next round.
    """
    from rich.progress import Progress

    from ..students.examine import examine, write_examination
    from ..students.probes import load_probes
    from ..students.train import student_dir

    spec = student or _student_config(project).model
    items = load_probes(probes)
    folder = student_dir(spec)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("examining", total=len(items))
        results = examine(folder, items, batch_size=batch_size, max_tokens=max_tokens,
                          progress=lambda n: bar.advance(task, n))
    out = out or ProjectLayout.of(open_project_or_defaults(project)).exam(spec)
    summary, outputs = write_examination(results, out, spec)
    table = Table("node", "probes", "graded", "accuracy", "mean logprob", title=f"Examination of {escape(spec)}")
    for node, block in [*summary["nodes"].items(), ("(all)", summary["overall"])]:
        accuracy = "-" if block["accuracy"] is None else f"{block['accuracy']:.0%}"
        table.add_row(escape(node), str(block["probes"]), str(block["graded"]), accuracy, f"{block['mean_logprob']:.3f}")
    console.print(table)
    console.print(f"results in {escape(str(outputs['results']))}" +
                  (f"; DPO pairs in {escape(str(outputs['pairs']))}" if "pairs" in outputs else ""))
