"""Train the student with TRL: SFT on prompt-completion data, DPO on preference pairs.

Full fine-tune or LoRA (peft). bf16 mixed precision where the hardware has it (TRL's default,
and faster than fp32 on this project's CPUs), fp32 where it does not: the same choice, loader
and model spec as the teacher and the examined student (backends/device.py, local.py, spec.py). Checkpoints go to
OUT/checkpoints; a killed run resumes from the last complete one when run again. The
final model (LoRA merged in) is written to OUT/final in one rename, with a loss curve.
"""

from __future__ import annotations

import io
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsutil import atomic_write_bytes, atomic_write_text, replace_dir
from ..project import StudentConfig
from .data import load_training_data

FINAL = "final"
CHECKPOINTS = "checkpoints"


def _recipe(name: str) -> Any:
    """A training setting's default, declared once: in project.StudentConfig (`student:`)."""
    return StudentConfig.model_fields[name].default


# StudentConfig's names that TrainOptions spells otherwise (a flag's --lr overrides whichever rate applies).
_RENAMED = {"model": "student", "learning_rate": "full_learning_rate"}


@dataclass
class TrainOptions:
    """One training run: what to train on and where to write (no defaults of their own), and the recipe,
    whose defaults are `student:`'s. `learning_rate` overrides the rate the method would use."""

    method: str  # "sft" | "dpo"
    dataset: Path
    out_dir: Path
    student: str = _recipe("model")
    learning_rate: float | None = None
    epochs: float = _recipe("epochs")
    max_steps: int = _recipe("max_steps")
    batch_size: int = _recipe("batch_size")
    gradient_accumulation: int = _recipe("gradient_accumulation")
    max_length: int = _recipe("max_length")
    lora: bool = _recipe("lora")
    lora_r: int = _recipe("lora_r")
    lora_alpha: int = _recipe("lora_alpha")
    lora_learning_rate: float = _recipe("lora_learning_rate")
    full_learning_rate: float = _recipe("learning_rate")
    dpo_beta: float = _recipe("dpo_beta")
    dpo_learning_rate: float = _recipe("dpo_learning_rate")  # full fine-tune; LoRA DPO uses it x 10
    dpo_nll: float = _recipe("dpo_nll")
    save_steps: int = _recipe("save_steps")
    dtype: str = _recipe("dtype")
    seed: int = _recipe("seed")
    processes: int = _recipe("processes")
    probes: Path | None = None
    trust_remote_code: bool = False
    quiet: bool = False  # no per-step bar or log lines (the loop draws its own view)
    # Checkpoints exist to resume a killed run; once final/ is written they only fill the disk
    # (1.6 GB for the 135M model: weights and AdamW state). Callers that train many models drop them.
    keep_checkpoints: bool = True

    @classmethod
    def from_config(cls, config: StudentConfig, **overrides: Any) -> TrainOptions:
        """Settings from syllabus.yaml's `student:`, then the flags that were given."""
        values = {_RENAMED.get(name, name): getattr(config, name) for name in StudentConfig.model_fields}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class TrainResult:
    final_dir: Path
    steps: int
    train_loss: float
    resumed_from: str | None
    loss_curve: Path | None


def student_dir(spec: str) -> Path:
    """The weights behind a student spec: `embedded` or a local model folder (the one spec of backends/spec.py)."""
    from ..backends.spec import model_folder, parse_student_spec

    return model_folder(parse_student_spec(spec))


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint whose save finished, or None.

    Trainer writes a checkpoint in place and its `trainer_state.json` last, so a run killed
    while saving leaves a folder without it (or with it cut short): resuming from that one
    would fail, so it is passed over and the step is trained again.
    """
    done = []
    for child in Path(folder).glob("checkpoint-*"):
        state = child / "trainer_state.json"
        if not child.name.removeprefix("checkpoint-").isdigit() or not state.is_file():
            continue
        try:
            json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        done.append((int(child.name.removeprefix("checkpoint-")), child))
    return str(max(done)[1]) if done else None


def _holds_every_step(checkpoint: str, options: TrainOptions) -> bool:
    """True when `checkpoint` already has every step this command plans."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    if options.max_steps > 0:
        planned = options.max_steps
    elif state.get("num_train_epochs") == math.ceil(options.epochs):
        planned = state.get("max_steps")  # the plan it was saved under: the same epochs over the same data
    else:
        return False
    return isinstance(planned, int) and planned > 0 and state.get("global_step", 0) >= planned


def trainer_arguments(options: Any, checkpoints: Path, learning_rate: float) -> dict[str, Any]:
    """The Trainer arguments every training command shares (SFT, DPO, logit distillation): the run's
    schedule and batch, a checkpoint every `save_steps` (two kept, for resume), the precision choice."""
    from ..backends.device import training_precision

    return dict(
        output_dir=str(checkpoints),
        learning_rate=learning_rate,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=getattr(options, "gradient_accumulation", 1),
        max_length=options.max_length,
        logging_steps=1,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=2,
        report_to=[],
        seed=options.seed,
        disable_tqdm=options.quiet,
        **training_precision(options.dtype),
    )


def default_learning_rate(options: TrainOptions) -> float:
    """SFT: the full or LoRA rate. DPO: its own, far lower (at the SFT rate it undoes what SFT taught);
    LoRA updates fewer weights, so LoRA DPO runs 10x higher, as LoRA SFT does against full SFT."""
    if options.method == "dpo":
        return options.dpo_learning_rate * (10 if options.lora else 1)
    return options.lora_learning_rate if options.lora else options.full_learning_rate


def dpo_loss(config_class, nll: float) -> dict[str, Any]:
    """The DPO loss with an NLL term on the chosen answer, as the installed TRL spells it: a list of
    losses (`loss_type=["sigmoid", "sft"]`, TRL 1.x) or `rpo_alpha` (older releases)."""
    if nll <= 0:
        return {}
    fields = getattr(config_class, "__dataclass_fields__", {})
    if "loss_weights" in fields:
        return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, nll]}
    if "rpo_alpha" in fields:
        return {"rpo_alpha": nll}
    raise UserError("the installed TRL offers no NLL term for DPO", hint="set student.dpo_nll: 0, or upgrade trl")


def train(options: TrainOptions) -> TrainResult:
    # The data and the student folder are checked before transformers is imported (seconds):
    # bad input fails at once.
    if options.processes > 1:
        from .launch import under_launcher

        if not under_launcher():
            load_training_data(Path(options.dataset), options.method)  # bad data: one message, not N
            return _on_processes(options)
    source = Path(options.dataset)
    dataset = load_training_data(source, options.method)
    if options.probes is not None:
        from .probes import assert_no_probe_leak, load_probes

        assert_no_probe_leak(dataset, load_probes(options.probes), source)
    folder = student_dir(options.student)
    from ..backends.local import load_causal_lm

    model, tokenizer = load_causal_lm(folder, trust_remote_code=options.trust_remote_code, for_training=True)

    out = Path(options.out_dir)
    checkpoints = out / CHECKPOINTS
    checkpoints.mkdir(parents=True, exist_ok=True)
    last = last_complete_checkpoint(checkpoints)
    learning_rate = options.learning_rate or default_learning_rate(options)
    common = trainer_arguments(options, checkpoints, learning_rate)
    peft_config = None
    if options.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=options.lora_r,
            lora_alpha=options.lora_alpha,
            lora_dropout=0.05,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    if options.method == "sft":
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    elif options.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(beta=options.dpo_beta, **dpo_loss(DPOConfig, options.dpo_nll), **common),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    else:
        raise UserError(f"unknown training method {options.method!r}", hint="sft or dpo")
    if options.quiet:  # without its bar, Trainer prints each step's logs instead
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    if trainer.train_dataset is not None and len(trainer.train_dataset) == 0:
        # TRL drops an example whose prompt fills max_length (no completion token left to learn from);
        # with none left, torch would fail with "num_samples=0".
        raise UserError(
            f"no example is left to train on: in all {len(dataset)}, the prompt alone fills "
            f"--max-length {options.max_length} tokens (chat template included)",
            where=source,
            hint="raise --max-length (student.max_length in syllabus.yaml)",
        )
    if last is not None and _holds_every_step(last, options):
        # Killed after its last step, while final/ was written: Trainer would resume it with one
        # step too many, so the last checkpoint is loaded as the trained model instead.
        from transformers.trainer_callback import TrainerState

        trainer._load_from_checkpoint(last)
        trainer.state = TrainerState.load_from_json(str(Path(last) / "trainer_state.json"))
        losses = [h["loss"] for h in trainer.state.log_history if isinstance(h.get("loss"), (int, float))]
        train_loss = sum(losses) / len(losses) if losses else float("nan")
    else:
        train_loss = trainer.train(resume_from_checkpoint=last).training_loss
    if not main_process(trainer):
        return TrainResult(out / FINAL, trainer.state.global_step, train_loss, last, None)
    final_model = trainer.model
    if options.lora:
        trainer.model.save_pretrained(str(out / "adapter"))
        final_model = trainer.model.merge_and_unload()
    return write_run(
        trainer,
        final_model,
        tokenizer,
        out,
        last,
        train_loss,
        keep_checkpoints=options.keep_checkpoints,
        title=f"{options.method.upper()} loss",
        method=options.method,
        learning_rate=learning_rate,
        lora=options.lora,
    )


LAUNCH_FILE = "launch.json"  # a launched run's options, read by each of its processes
_PATHS = ("dataset", "out_dir", "probes")


def _on_processes(options: TrainOptions) -> TrainResult:
    """The run in `options.processes` processes (launch.py); the main one's result, from its files."""
    import dataclasses

    from .launch import run_processes

    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = out / LAUNCH_FILE
    fields = {k: (str(v) if k in _PATHS and v is not None else v) for k, v in dataclasses.asdict(options).items()}
    atomic_write_text(spec, json.dumps(fields, indent=2) + "\n")
    code = run_processes(options.processes, "syllabus.students.worker", spec)
    metrics_file = out / "metrics.json"
    if code != 0 or not (out / FINAL).is_dir() or not metrics_file.is_file():
        raise UserError(
            f"training on {options.processes} processes failed (exit {code})",
            where=out,
            hint="see the processes' output above; the same command resumes from the last checkpoint",
        )
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    loss = metrics.get("train_loss")
    curve = out / "loss.png"
    return TrainResult(
        out / FINAL,
        metrics["steps"],
        loss if isinstance(loss, (int, float)) else math.nan,
        metrics.get("resumed_from"),
        curve if curve.is_file() else None,
    )


def options_from_spec(spec: Path) -> TrainOptions:
    """The options `_on_processes` wrote, for each launched process."""
    fields = json.loads(spec.read_text(encoding="utf-8"))
    for name in _PATHS:
        if fields.get(name) is not None:
            fields[name] = Path(fields[name])
    return TrainOptions(**fields)


def main_process(trainer) -> bool:
    """After training, every process waits for the others; only the main one goes on to write
    final/, the metrics and the loss curve (one process: always)."""
    trainer.accelerator.wait_for_everyone()
    return trainer.is_world_process_zero()


def write_run(
    trainer,
    model,
    tokenizer,
    out: Path,
    last: str | None,
    train_loss: float,
    *,
    keep_checkpoints: bool,
    title: str,
    **fields,
) -> TrainResult:
    """The main process's outputs of a finished run (SFT, DPO, distillation): final/, then the
    checkpoints dropped unless kept, then the metrics and the loss curve."""
    save_final(model, tokenizer, out)
    if not keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return record_run(trainer, out, last, train_loss, title=title, **fields)


def save_final(model, tokenizer, out: Path) -> None:
    """OUT/final, whole or not at all: staged under a fixed name, then renamed into place."""
    staging = out / f".{FINAL}.tmp"
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    replace_dir(staging, out / FINAL)


def record_run(trainer, out: Path, last: str | None, train_loss: float, *, title: str, **fields: Any) -> TrainResult:
    """OUT/metrics.json (the method's `fields`, steps, loss, resume point, the log) and the loss curve."""
    history = trainer.state.log_history
    metrics = {
        **fields,
        "steps": trainer.state.global_step,
        "processes": trainer.args.world_size,
        "train_loss": train_loss,
        "resumed_from": last,
        "log_history": history,
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    curve = plot_loss(history, out / "loss.png", title=title)
    return TrainResult(out / FINAL, trainer.state.global_step, train_loss, last, curve)


def plot_loss(history: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    points = [
        (h["step"], h["loss"])
        for h in history
        if "loss" in h and isinstance(h["loss"], (int, float)) and math.isfinite(h["loss"])
    ]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o" if len(points) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
