"""`syllabus train distill`: the student learns the teacher's next-token distribution (TAID, KL or JSD).

Built on TRL's SFTTrainer, which turns the project's prompt-completion rows into input ids
with the completion tokens marked, checkpoints and resumes; only the loss is ours
(taid.py): the teacher, a local model with the student's tokenizer, runs beside the
student without gradients, and the student is trained against TAID's moving target or the
teacher's distribution itself. A served teacher (`openai:MODEL`) has no logits to share: its
top-k log-probabilities at every token of each row are fetched once, before training, through
the request cache (served_teacher.py), and the loss is the sparse one over top-k plus a tail. TAID's state (t, momentum, previous loss) is written into
every checkpoint and read back on resume, so a killed run continues with the same t.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsutil import atomic_write_text
from ..project import DistillationConfig, StudentConfig
from .data import load_training_data
from .taid import TaidSchedule, distill_loss, jsd_loss, sparse_distill_loss

STATE_FILE = "taid.json"  # TAID's schedule state, in each checkpoint
TEACHER_CACHE = "teacher-cache.sqlite"  # a served teacher's top-k per row, in OUT
METHODS = ("taid", "kl", "jsd")


def _default(section: Any, name: str) -> Any:
    """A setting's default, declared once: in project.StudentConfig or project.DistillationConfig."""
    return section.model_fields[name].default


_FROM_STUDENT = ("epochs", "max_steps", "batch_size", "max_length", "save_steps", "seed", "dtype")


@dataclass
class DistillTrainOptions:
    """One distillation run; the recipe's defaults are `student:`'s and `distillation:`'s."""

    dataset: Path
    teacher: str  # 'embedded', a model folder sharing the student's tokenizer, or 'openai:MODEL' (served)
    out_dir: Path
    student: str = _default(StudentConfig, "model")
    method: str = _default(DistillationConfig, "method")
    learning_rate: float = _default(DistillationConfig, "learning_rate")
    epochs: float = _default(StudentConfig, "epochs")
    max_steps: int = _default(StudentConfig, "max_steps")
    batch_size: int = _default(StudentConfig, "batch_size")
    max_length: int = _default(StudentConfig, "max_length")
    save_steps: int = _default(StudentConfig, "save_steps")
    seed: int = _default(StudentConfig, "seed")
    t_start: float = _default(DistillationConfig, "t_start")
    t_end: float = _default(DistillationConfig, "t_end")
    alpha: float = _default(DistillationConfig, "alpha")
    beta: float = _default(DistillationConfig, "beta")
    jsd_beta: float = _default(DistillationConfig, "jsd_beta")
    chunk: int = _default(DistillationConfig, "chunk")
    top_k: int = _default(DistillationConfig, "top_k")
    dtype: str = _default(StudentConfig, "dtype")
    quiet: bool = False
    keep_checkpoints: bool = True  # False: dropped once final/ is written (the loop trains many models)
    base_urls: list[str] | None = None  # a served teacher's servers (default: teacher.base_url)
    connection: Any = None  # a served teacher's connection settings: the project's TeacherConfig

    @classmethod
    def from_config(
        cls, training: StudentConfig, distillation: DistillationConfig, **overrides: Any
    ) -> DistillTrainOptions:
        """Settings from `student:` (batch, length, checkpoints) and `distillation:`, then the flags given."""
        values = {"student": training.model, **{name: getattr(training, name) for name in _FROM_STUDENT}}
        values.update(distillation.model_dump())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def same_tokenizer(student_tokenizer, teacher_tokenizer, student: str, teacher: str) -> None:
    """Refuse a pair whose token ids differ: logits of different vocabularies cannot be compared."""
    same = student_tokenizer.get_vocab() == teacher_tokenizer.get_vocab() and _merges(student_tokenizer) == _merges(
        teacher_tokenizer
    )
    if not same:
        raise UserError(
            f"the student ({student}) and the teacher ({teacher}) do not share a tokenizer "
            "(different vocabularies or merges), so the teacher's logits mean nothing to the student",
            where="--teacher",
            hint="distil between sizes of one family (SmolLM2, Qwen2.5, Llama 3), or use `syllabus train sft` "
            "on the teacher's answers",
        )


def _merges(tokenizer) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return json.loads(backend.to_str()).get("model", {}).get("merges")


def train_distill(options: DistillTrainOptions):
    """Distil the teacher into the student on a prompt-completion dataset; OUT/final, as `train sft` writes."""
    if options.method not in METHODS:
        raise UserError(f"unknown --method {options.method!r}", where="--method", hint=", ".join(METHODS))
    from ..backends.spec import parse_model_spec

    served = parse_model_spec(options.teacher, folder_must_exist=False).backend == "openai"
    if served and options.method == "jsd":
        raise UserError(
            "--method jsd needs the teacher's whole distribution, and a served teacher gives only its top-k",
            where="--method",
            hint="use --method taid or kl with a served teacher, or a local teacher for jsd",
        )
    if served and not 1 <= options.top_k <= 100:
        raise UserError(f"--top-k must be between 1 and 100, got {options.top_k}", where="--top-k", hint="e.g. 20")
    source = Path(options.dataset)
    dataset = load_training_data(source, "sft")
    from ..backends.local import load_causal_lm
    from .train import (
        CHECKPOINTS,
        FINAL,
        TrainResult,
        last_complete_checkpoint,
        main_process,
        student_dir,
        trainer_arguments,
        write_run,
    )

    model, tokenizer = load_causal_lm(student_dir(options.student), for_training=True)
    if not served:
        teacher, teacher_tokenizer = load_causal_lm(student_dir(options.teacher), dtype=options.dtype)
        same_tokenizer(tokenizer, teacher_tokenizer, options.student, options.teacher)

    import torch
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    out = Path(options.out_dir)
    checkpoints = out / CHECKPOINTS
    checkpoints.mkdir(parents=True, exist_ok=True)
    last = last_complete_checkpoint(checkpoints)

    class Distiller(SFTTrainer):
        schedule: TaidSchedule | None = None
        losses: list[float]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, attention = inputs["input_ids"], inputs["attention_mask"]
            outputs = model(input_ids=ids, attention_mask=attention, use_cache=False)
            mask = inputs["labels"][:, 1:] != -100  # the completion tokens each position predicts
            student_logits = outputs.logits[:, :-1]
            t = self.schedule.t if self.schedule is not None else 1.0
            if served:
                topk_ids, topk_logprobs, known = _batch_topk(ids, attention, topk["rows"], options.top_k + 1)
                device = student_logits.device
                mask = mask & known[:, 1:].to(device)  # no teacher where the server gave none
                loss = sparse_distill_loss(
                    student_logits, topk_ids[:, 1:].to(device), topk_logprobs[:, 1:].to(device), mask, t, options.chunk
                )
                self.losses.append(float(loss.detach()))
                return (loss, outputs) if return_outputs else loss
            with torch.no_grad():
                target = teacher(input_ids=ids.to(teacher.device), attention_mask=attention.to(teacher.device))
            teacher_logits = target.logits[:, :-1].to(outputs.logits.device)
            if options.method == "jsd":
                loss = jsd_loss(student_logits, teacher_logits, mask, options.jsd_beta, options.chunk)
            else:
                loss = distill_loss(student_logits, teacher_logits, mask, t, options.chunk)
            self.losses.append(float(loss.detach()))
            return (loss, outputs) if return_outputs else loss

    class Schedule(TrainerCallback):
        """TAID's t after every optimizer step; its state saved with every checkpoint."""

        def on_step_end(self, args, state, control, **kwargs):
            if trainer.schedule is not None and trainer.losses:
                trainer.schedule.update(sum(trainer.losses) / len(trainer.losses))
                state.log_history.append({"step": state.global_step, "taid_t": trainer.schedule.t})
            trainer.losses.clear()

        def on_save(self, args, state, control, **kwargs):
            if trainer.schedule is not None:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write_text(folder / STATE_FILE, json.dumps(trainer.schedule.state_dict()) + "\n")

    args = SFTConfig(**trainer_arguments(options, checkpoints, options.learning_rate))
    trainer = Distiller(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.losses = []
    topk: dict = {"counts": None}
    if served:
        topk = _served_topk(options, trainer, tokenizer, out, source)
    if options.method == "taid":
        steps = _optimizer_steps(trainer, options)
        trainer.schedule = TaidSchedule(
            total_steps=steps, t_start=options.t_start, t_end=options.t_end, alpha=options.alpha, beta=options.beta
        )
        if last is not None and (Path(last) / STATE_FILE).is_file():
            saved = json.loads((Path(last) / STATE_FILE).read_text(encoding="utf-8"))
            trainer.schedule = TaidSchedule.from_state({**saved, "total_steps": steps})  # this run's plan
    trainer.add_callback(Schedule())
    if options.quiet:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    train_loss = trainer.train(resume_from_checkpoint=last).training_loss
    if not main_process(trainer):
        return TrainResult(out / FINAL, trainer.state.global_step, train_loss, last, None)
    return write_run(
        trainer,
        trainer.model,
        tokenizer,
        out,
        last,
        train_loss,
        keep_checkpoints=options.keep_checkpoints,
        title=f"{options.method.upper()} distillation loss",
        method=options.method,
        teacher=options.teacher,
        taid=trainer.schedule.state_dict() if trainer.schedule else None,
        teacher_requests=topk["counts"],
        top_k=options.top_k if served else None,
    )


def _optimizer_steps(trainer, options: DistillTrainOptions) -> int:
    """The real number of optimizer steps of this run: max_steps, or the epochs over the batches."""
    if options.max_steps > 0:
        return options.max_steps
    import math

    batches = math.ceil(len(trainer.train_dataset) / options.batch_size)
    return max(1, math.ceil(batches * options.epochs))


def _served_topk(options: DistillTrainOptions, trainer, tokenizer, out: Path, source: Path) -> dict:
    """A served teacher's top-k for every row the trainer will see, keyed by its token ids: fetched
    once per row through OUT/teacher-cache.sqlite, so a rerun or a resume sends nothing."""
    from ..backends.spec import make_backend, parse_model_spec
    from ..project import TeacherConfig
    from .served_teacher import served_topk

    backend = make_backend(
        parse_model_spec(options.teacher), options.connection or TeacherConfig(), base_urls=options.base_urls
    )
    rows = [list(row["input_ids"]) for row in trainer.train_dataset]
    fetched = served_topk(backend, rows, tokenizer, options.top_k, out / TEACHER_CACHE, where=str(source))
    width = options.top_k + 1  # the server's top-k, and the row's own token beside them
    fetched["rows"] = {key: row.tensors(width) for key, row in fetched["rows"].items()}
    return fetched


def _batch_topk(ids, attention, rows: dict, width: int):
    """The batch's teacher top-k (ids, log-probs, known), laid out as its tokens are (padding: unknown)."""
    import torch

    batch, length = ids.shape
    topk_ids = torch.full((batch, length, width), -1, dtype=torch.long)
    topk_logprobs = torch.zeros((batch, length, width), dtype=torch.float32)
    known = torch.zeros((batch, length), dtype=torch.bool)
    for b in range(batch):
        where = attention[b].bool().cpu()
        row_ids, row_logprobs, row_known = rows[tuple(ids[b].cpu()[where].tolist())]
        topk_ids[b, where], topk_logprobs[b, where], known[b, where] = row_ids, row_logprobs, row_known
    return topk_ids, topk_logprobs, known
