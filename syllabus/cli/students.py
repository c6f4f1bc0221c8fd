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
    console.print(
        f"[green]trained[/] {result.steps} steps, loss {result.train_loss:.4f}; "
        f"model in {escape(str(result.final_dir))}"
    )
    if result.loss_curve:
        console.print(f"loss curve: {escape(str(result.loss_curve))}")


StudentOpt = Annotated[
    Optional[str], typer.Option("--student", help="'embedded' or a model folder. Default: syllabus.yaml.")
]
OutOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--out", help="Output folder (checkpoints/, final/, loss.png). Default: students/METHOD-NAME in the project."
    ),
]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="Learning rate. Default: 2e-5 full, 2e-4 LoRA.")]
EpochsOpt = Annotated[Optional[float], typer.Option("--epochs", help="Passes over the data.")]
StepsOpt = Annotated[
    Optional[int], typer.Option("--max-steps", min=-1, help="Stop after N steps (overrides --epochs).")
]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Examples per step.")]
LengthOpt = Annotated[Optional[int], typer.Option("--max-length", min=16, help="Tokens per example.")]
LoraOpt = Annotated[Optional[bool], typer.Option("--lora/--full", help="LoRA adapter (peft) or every weight.")]
ProbesOpt = Annotated[
    Optional[Path], typer.Option("--probes", help="Probe file that must not leak into the training data.")
]
SaveOpt = Annotated[Optional[int], typer.Option("--save-steps", min=1, help="Checkpoint every N steps.")]


@train_app.command("sft")
def sft(
    dataset: Annotated[
        Path, typer.Argument(help="Run folder, datasets folder, JSONL or Parquet (prompt/completion or messages).")
    ],
    student: StudentOpt = None,
    out: OutOpt = None,
    lr: LrOpt = None,
    epochs: EpochsOpt = None,
    max_steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    max_length: LengthOpt = None,
    lora: LoraOpt = None,
    probes: ProbesOpt = None,
    save_steps: SaveOpt = None,
    project: ProjectOption = None,
) -> None:
    """Supervised fine-tuning on generated data (loss on the completion only).

    Example: `syllabus train sft runs/default/train --max-steps 20 --lora --probes runs/default/probes.jsonl`

    A killed run resumes from its last checkpoint when the same command is run again.
    """
    _train(
        "sft",
        dataset,
        out,
        project,
        student=student,
        learning_rate=lr,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        max_length=max_length,
        lora=lora,
        probes=probes,
        save_steps=save_steps,
    )


@train_app.command("dpo")
def dpo(
    dataset: Annotated[
        Path, typer.Argument(help="Preference pairs: prompt, chosen, rejected (e.g. EVAL/pairs from `syllabus eval`).")
    ],
    student: StudentOpt = None,
    out: OutOpt = None,
    lr: LrOpt = None,
    epochs: EpochsOpt = None,
    max_steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    max_length: LengthOpt = None,
    lora: LoraOpt = None,
    probes: ProbesOpt = None,
    save_steps: SaveOpt = None,
    project: ProjectOption = None,
) -> None:
    """Direct preference optimisation: the teacher's answer chosen, the student's wrong one rejected.

    Example: `syllabus train dpo exams/round0/pairs --student students/sft-train/final --max-steps 10`
    """
    _train(
        "dpo",
        dataset,
        out,
        project,
        student=student,
        learning_rate=lr,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        max_length=max_length,
        lora=lora,
        probes=probes,
        save_steps=save_steps,
    )


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
    console.print(
        f"[green]{probes} probes[/] in {escape(str(probes_file))}; {rows} training rows in {escape(str(train_dir))}"
    )


EvalStudentOpt = Annotated[
    Optional[str],
    typer.Option(
        "--student", help="'embedded', a model folder, or 'openai:MODEL' served at --base-url. Default: syllabus.yaml."
    ),
]


def evaluate(
    probes: Annotated[
        Path, typer.Option("--probes", help="Probe JSONL (question, answer, node; or options + correct).")
    ],
    student: EvalStudentOpt = None,
    base_url: Annotated[
        Optional[list[str]],
        typer.Option(
            "--base-url", help="OpenAI-compatible server of an 'openai:MODEL' student (repeat to spread requests)."
        ),
    ] = None,
    chat_template: Annotated[
        Optional[str],
        typer.Option(
            "--chat-template",
            help="A served student's tokenizer ('embedded' or a model folder): its chat template "
            "renders the prompts that /v1/completions scores.",
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Where results.json, answers, mistakes and pairs/ go. Default: exams/NAME in the project."
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Probes answered per batch (local) or requests in flight (served).")
    ] = 8,
    max_tokens: Annotated[int, typer.Option(min=1, help="Longest student answer, in tokens.")] = 128,
    max_context: Annotated[
        Optional[int],
        typer.Option(
            "--max-context",
            min=64,
            help="Cut probes to this many tokens (local students). Default: the model's context window.",
        ),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Examine the student per taxonomy node: exact/numeric match, choice accuracy, reference log-probability.

    Example: `syllabus eval --student students/sft-train/final --probes runs/default/probes.jsonl`

    A served student: `syllabus eval --student openai:MODEL --base-url http://127.0.0.1:8000/v1 --chat-template FOLDER`
    (vLLM, or llama.cpp started with --logits_all True; the server must return prompt log-probabilities).

    Wrong answers are kept (mistakes.jsonl) and turned into DPO pairs (pairs/) for the next round.
    A probe longer than the model's context is cut to fit and counted as truncated.
    """
    import asyncio

    from rich.progress import Progress

    from ..backends.base import RequestFailed
    from ..backends.spec import make_backend, parse_student_spec
    from ..errors import UserError
    from ..students.examine import examine, write_examination
    from ..students.probes import load_probes

    proj = open_project_or_defaults(project)
    spec = student or proj.config.student.model
    items = load_probes(probes)
    model_spec = parse_student_spec(spec)
    if model_spec.backend == "openai" and not (base_url or proj.config.teacher.base_url):
        raise UserError(
            "a served student needs the server's URL",
            where="--student",
            hint="add --base-url http://HOST:PORT/v1 (vLLM or llama.cpp)",
        )
    if model_spec.backend == "openai" and max_context:
        raise UserError(
            "--max-context is for a local student",
            where="--max-context",
            hint="a served student's context is the server's (vLLM --max-model-len, llama.cpp --n_ctx)",
        )
    if model_spec.backend != "openai" and chat_template:
        raise UserError(
            "--chat-template is for a served ('openai:MODEL') student",
            where="--chat-template",
            hint="a local student uses its own tokenizer's template",
        )
    backend = make_backend(
        model_spec,
        proj.config.teacher,
        base_urls=base_url,
        concurrency=batch_size,
        project_root=proj.root,
        chat_template=chat_template,
        max_context=max_context,
    )

    async def main():
        try:
            await backend.preflight()
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("examining", total=len(items))
                return await examine(
                    backend,
                    items,
                    max_tokens=max_tokens,
                    in_flight=4 * batch_size,
                    progress=lambda n: bar.advance(task, n),
                )
        except RequestFailed as exc:  # the student failed for good on a probe: nothing half-written
            raise UserError(f"the student failed a request: {exc}", where=spec) from None
        finally:
            await backend.aclose()

    results = asyncio.run(main())
    out = out or ProjectLayout.of(proj).exam(spec)
    summary, outputs = write_examination(results, out, spec)
    table = Table(
        "node", "probes", "graded", "accuracy", "mean logprob", "truncated", title=f"Examination of {escape(spec)}"
    )
    for node, block in [*summary["nodes"].items(), ("(all)", summary["overall"])]:
        accuracy = "-" if block["accuracy"] is None else f"{block['accuracy']:.0%}"
        table.add_row(
            escape(node),
            str(block["probes"]),
            str(block["graded"]),
            accuracy,
            f"{block['mean_logprob']:.3f}",
            str(block["truncated"]),
        )
    console.print(table)
    if summary["overall"]["truncated"]:
        console.print(
            f"[yellow]{summary['overall']['truncated']} probe(s) truncated[/] to the model's context "
            f"(the middle of the question cut; marked truncated in answers.jsonl)"
        )
    console.print(
        f"results in {escape(str(outputs['results']))}"
        + (f"; DPO pairs in {escape(str(outputs['pairs']))}" if "pairs" in outputs else "")
    )
