"""`syllabus train sft|dpo`, `syllabus probes split` and `syllabus eval`: the student side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..layout import ProjectLayout
from .common import ProjectOption, comparison_table, console, open_project_or_defaults, path_column

train_app = typer.Typer(
    help=(
        "Train the student with TRL. Several processes (data parallel, CPU or GPUs): `--processes N` "
        "(student.processes), or the same command under `torchrun` / `accelerate launch`."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
probes_app = typer.Typer(help="Held-out probe sets for examining the student.", no_args_is_help=True)
students_app = typer.Typer(help="Make students: a smaller copy of a model (`shrink`).", no_args_is_help=True)


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
LrOpt = Annotated[
    Optional[float],
    typer.Option(
        "--lr",
        help="Learning rate. Default: student.learning_rate (full), lora_learning_rate (LoRA), dpo_learning_rate (DPO).",
    ),
]
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
ProcessesOpt = Annotated[
    Optional[int],
    typer.Option(
        "--processes",
        min=1,
        help="Training processes, each on its share of every batch (torchrun; gloo on CPU, nccl on GPU). "
        "Default: student.processes.",
    ),
]


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
    processes: ProcessesOpt = None,
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
        processes=processes,
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
    processes: ProcessesOpt = None,
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
        processes=processes,
    )


@train_app.command("distill")
def distill_logits(
    dataset: Annotated[
        Path, typer.Argument(help="Run folder, datasets folder, JSONL or Parquet (prompt/completion or messages).")
    ],
    teacher: Annotated[
        str,
        typer.Option(
            "--teacher",
            help="'embedded', a model folder that shares the student's tokenizer, or 'openai:MODEL' served at "
            "--base-url (distilled from its top-k log-probabilities).",
        ),
    ],
    student: StudentOpt = None,
    method: Annotated[
        Optional[str],
        typer.Option(
            "--method",
            help="taid (a target moving from the student to the teacher), kl, or jsd (generalized JSD, TRL's). Default: distillation.method.",
        ),
    ] = None,
    out: OutOpt = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Default: distillation.learning_rate.")] = None,
    epochs: EpochsOpt = None,
    max_steps: StepsOpt = None,
    batch_size: BatchOpt = None,
    max_length: LengthOpt = None,
    save_steps: SaveOpt = None,
    top_k: Annotated[
        Optional[int],
        typer.Option(
            "--top-k",
            min=1,
            max=100,
            help="A served teacher: log-probabilities per token. Default: distillation.top_k.",
        ),
    ] = None,
    base_url: Annotated[
        Optional[list[str]],
        typer.Option("--base-url", help="OpenAI-compatible server of an 'openai:MODEL' teacher (repeat to spread)."),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Logit distillation: the student learns the teacher's whole next-token distribution (TAID, KL or JSD).

    Teacher and student must share a tokenizer (sizes of one family; a shrunk copy from
    `syllabus students shrink`). Settings: `distillation:` in syllabus.yaml.

    Example: `syllabus students shrink --layers 12 --out students/small && syllabus train distill
    runs/default --teacher embedded --student students/small --max-steps 50`

    A served teacher (`--teacher openai:MODEL --base-url URL`) distils too: its top-k log-probabilities
    at every token of each row (/v1/completions with echo; llama.cpp needs --logits_all True) are asked
    once, kept in OUT/teacher-cache.sqlite, and the loss is TAID's (or KL) over top-k plus a tail.

    A killed run resumes from its last checkpoint, TAID's t included, when the same command is run again.
    """
    from ..students.logit_distill import DistillTrainOptions, train_distill

    proj = open_project_or_defaults(project)
    out = out or ProjectLayout.of(proj).student(f"distill-{method or proj.config.distillation.method}", dataset.name)
    options = DistillTrainOptions.from_config(
        proj.config.student,
        proj.config.distillation,
        dataset=dataset,
        teacher=teacher,
        out_dir=out,
        student=student,
        method=method,
        learning_rate=lr,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        max_length=max_length,
        save_steps=save_steps,
        top_k=top_k,
        base_urls=base_url,
        connection=proj.config.teacher,
    )
    result = train_distill(options)
    if result.resumed_from:
        console.print(f"resumed from {escape(result.resumed_from)}")
    console.print(
        f"[green]distilled[/] {result.steps} steps, loss {result.train_loss:.4f}; model in {escape(str(result.final_dir))}"
    )


@students_app.command("shrink")
def shrink_student(
    layers: Annotated[Optional[int], typer.Option("--layers", min=1, help="Layers to keep, evenly spaced.")] = None,
    out: Annotated[Path, typer.Option("--out", help="The new model folder.")] = Path("students/shrunk"),
    keep: Annotated[
        Optional[str], typer.Option("--keep", help="Exactly these layers instead, by index: '0,3,7,11'.")
    ] = None,
    student: StudentOpt = None,
    project: ProjectOption = None,
) -> None:
    """A weaker student with the same tokenizer: a copy of the model keeping K of its layers.

    The first and last layers are kept and the rest evenly spaced (or `--keep` names them).
    The result is a plain model folder that `train`, `eval`, `distill` and `train distill` accept;
    distillation from the full model recovers much of what was cut (Minitron).

    Example: `syllabus students shrink --layers 12 --out students/small12`
    """
    from ..errors import UserError
    from ..students.shrink import shrink

    if layers is None and not keep:
        raise UserError("say how many layers to keep", where="--layers", hint="--layers 12, or --keep 0,5,10,29")
    chosen = None
    if keep:
        try:
            chosen = [int(x) for x in keep.split(",") if x.strip()]
        except ValueError:
            raise UserError(
                f"--keep {keep!r} is not a list of layer numbers", where="--keep", hint="--keep 0,3,7,11"
            ) from None
    spec = student or _student_config(project).model
    folder, kept = shrink(spec, out, layers or len(chosen or []), chosen)
    console.print(
        f"[green]kept layers[/] {', '.join(map(str, kept))} of {escape(spec)}; model in {escape(str(folder))}"
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
        Optional[Path], typer.Option("--probes", help="Probe JSONL (question, answer, node; or options + correct).")
    ] = None,
    student: EvalStudentOpt = None,
    compare: Annotated[
        Optional[list[str]],
        typer.Option(
            "--compare",
            help="Give twice: two students (examined on --probes) or two finished examination folders (their "
            "answers.jsonl). Prints per node and pooled the paired difference B - A, its standard error, an exact "
            "McNemar p-value and a verdict; writes comparison.json.",
        ),
    ] = None,
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

    Compare two students on the same items: `syllabus eval --compare embedded --compare
    runs/distill/rounds/2/student/sft/final --probes test.jsonl` (or two examination folders).
    """
    from ..errors import UserError

    if compare is not None:
        if len(compare) != 2:
            raise UserError(f"--compare is given twice (A, then B), got {len(compare)}", where="--compare")
        answers = []
        for side in compare:
            folder = Path(side)
            if (folder / "answers.jsonl").is_file():
                from ..data.read import iter_jsonl

                answers.append([row for _, row in iter_jsonl(folder / "answers.jsonl")])
                continue
            if probes is None:
                raise UserError(
                    f"{side!r} is not an examination folder, so it is examined on --probes, which is missing",
                    where="--compare",
                    hint="add --probes FILE, or give two folders `syllabus eval` wrote",
                )
            answers.append(
                _examine(side, probes, base_url, chat_template, None, batch_size, max_tokens, max_context, project)
            )
        _print_comparison(compare, answers, out or ProjectLayout.of(open_project_or_defaults(project)).exams)
        return
    if probes is None:
        raise UserError("--probes is required", where="--probes", hint="a JSONL file of question, answer, node")
    _examine(student, probes, base_url, chat_template, out, batch_size, max_tokens, max_context, project)


def _print_comparison(sides: list[str], answers: list[list[dict]], out: Path) -> None:
    import json

    from ..fsutil import atomic_write_text
    from ..students.compare import compare_answers

    result = {"a": sides[0], "b": sides[1], **compare_answers(answers[0], answers[1])}
    title = f"B ({escape(sides[1])}) against A ({escape(sides[0])}), item by item"
    console.print(comparison_table(title, [*result["nodes"].items(), ("(pooled)", result["pooled"])]))
    if result["unmatched"] or result["ungraded"]:
        console.print(
            f"[yellow]left out[/]: {result['unmatched']} item(s) only one side answered, "
            f"{result['ungraded']} with no exact grade (long references)"
        )
    target = out / "comparison.json" if out.suffix != ".json" else out
    atomic_write_text(target, json.dumps(result, indent=2) + "\n")
    console.print(f"comparison in {escape(str(target))}")


def _examine(
    student: str | None,
    probes: Path,
    base_url: list[str] | None,
    chat_template: str | None,
    out: Path | None,
    batch_size: int,
    max_tokens: int,
    max_context: int | None,
    project: Path | None,
) -> list[dict]:
    """Examine one student on `probes`, write its examination, print its table; its answers."""
    import asyncio
    from dataclasses import asdict

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
        path_column("node", [*summary["nodes"], "(all)"]),
        "probes",
        "graded",
        "accuracy",
        "mean logprob",
        "truncated",
        title=f"Examination of {escape(spec)}",
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
    return [asdict(r) for r in results]
