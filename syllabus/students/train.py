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
from .data import load_training_data

FINAL = "final"
CHECKPOINTS = "checkpoints"


@dataclass
class TrainOptions:
    method: str  # "sft" | "dpo"
    dataset: Path
    out_dir: Path
    student: str = "embedded"
    learning_rate: float | None = None
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    gradient_accumulation: int = 1
    max_length: int = 256
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_learning_rate: float = 2e-4
    full_learning_rate: float = 2e-5
    dpo_beta: float = 0.1
    save_steps: int = 50
    dtype: str = "auto"
    seed: int = 0
    probes: Path | None = None
    trust_remote_code: bool = False
    quiet: bool = False  # no per-step bar or log lines (the loop draws its own view)
    # Checkpoints exist to resume a killed run; once final/ is written they only fill the disk
    # (1.6 GB for the 135M model: weights and AdamW state). Callers that train many models drop them.
    keep_checkpoints: bool = True

    @classmethod
    def from_config(cls, config, **overrides: Any) -> TrainOptions:
        """Settings from syllabus.yaml's `student:`, then the flags that were given."""
        values = {
            "student": config.model,
            "epochs": config.epochs,
            "max_steps": config.max_steps,
            "batch_size": config.batch_size,
            "gradient_accumulation": config.gradient_accumulation,
            "max_length": config.max_length,
            "lora": config.lora,
            "lora_r": config.lora_r,
            "lora_alpha": config.lora_alpha,
            "lora_learning_rate": config.lora_learning_rate,
            "full_learning_rate": config.learning_rate,
            "dpo_beta": config.dpo_beta,
            "save_steps": config.save_steps,
            "dtype": config.dtype,
            "seed": config.seed,
        }
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


def train(options: TrainOptions) -> TrainResult:
    # The data and the student folder are checked before transformers is imported (seconds):
    # bad input fails at once.
    source = Path(options.dataset)
    dataset = load_training_data(source, options.method)
    if options.probes is not None:
        from .probes import assert_no_probe_leak, load_probes

        assert_no_probe_leak(dataset, load_probes(options.probes), source)
    folder = student_dir(options.student)
    from ..backends.device import training_precision
    from ..backends.local import load_causal_lm

    model, tokenizer = load_causal_lm(folder, trust_remote_code=options.trust_remote_code, for_training=True)

    out = Path(options.out_dir)
    checkpoints = out / CHECKPOINTS
    checkpoints.mkdir(parents=True, exist_ok=True)
    last = last_complete_checkpoint(checkpoints)
    learning_rate = options.learning_rate or (
        options.lora_learning_rate if options.lora else options.full_learning_rate
    )
    common = dict(
        output_dir=str(checkpoints),
        learning_rate=learning_rate,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation,
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
            args=DPOConfig(beta=options.dpo_beta, **common),
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
    final_model = trainer.model
    if options.lora:
        trainer.model.save_pretrained(str(out / "adapter"))
        final_model = trainer.model.merge_and_unload()
    staging = out / f".{FINAL}.tmp"
    final_model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    replace_dir(staging, out / FINAL)
    if not options.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    history = trainer.state.log_history
    atomic_write_text(
        out / "metrics.json",
        json.dumps(
            {
                "method": options.method,
                "steps": trainer.state.global_step,
                "train_loss": train_loss,
                "resumed_from": last,
                "learning_rate": learning_rate,
                "lora": options.lora,
                "log_history": history,
            },
            indent=2,
            default=str,
        )
        + "\n",
    )
    curve = plot_loss(history, out / "loss.png", title=f"{options.method.upper()} loss")
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
