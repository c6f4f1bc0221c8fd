"""Logit distillation losses: TAID's interpolated target, and plain KL and generalized JSD as baselines.

Text-level distillation (SFT on the teacher's sampled answers) keeps only the tokens the
teacher happened to sample. When teacher and student share a tokenizer the student can
learn the teacher's whole next-token distribution instead. Plain KL to the teacher
struggles across a large capacity gap; TAID (Temporally Adaptive Interpolated
Distillation, Sakana AI, ICLR 2025) trains against a target that moves from the student's
own distribution toward the teacher's:

    p_t = softmax((1 - t) * stopgrad(student_logits) + t * teacher_logits)
    loss = cross-entropy of the student against p_t, over the completion tokens

with t raised per optimizer step by `TaidSchedule`. At t = 1 the target is the teacher's
distribution, and the loss is KL(teacher || student) plus the teacher's entropy (constant
for the student): plain KL is TAID with t fixed at 1.

The losses are computed over chunks of completion positions, so the (positions x
vocabulary) fp32 tensors of a 49,152-token vocabulary never exist all at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

CHUNK = 256  # completion positions whose (position x vocabulary) tensors exist at once


def interpolated_target(student_logits, teacher_logits, t: float):
    """TAID's target distribution p_t (probabilities), with no gradient into the student."""
    import torch

    mixed = (1.0 - t) * student_logits.detach().float() + t * teacher_logits.float()
    return torch.softmax(mixed, dim=-1)


def _masked_mean(student_logits, teacher_logits, mask, chunk: int, summed):
    """The mean over the positions where `mask` is true of `summed(student, teacher)`, a loss summed
    over the rows of a chunk: only the masked positions are gathered, then handled `chunk` at a time,
    so the (positions x vocabulary) fp32 tensors never exist all at once.

    student_logits, teacher_logits: (..., positions, vocabulary); mask: (..., positions) booleans."""
    vocabulary = student_logits.shape[-1]
    if teacher_logits.shape[-1] != vocabulary:
        raise ValueError(f"student and teacher vocabularies differ ({vocabulary} against {teacher_logits.shape[-1]})")
    keep = mask.reshape(-1).bool()
    student = student_logits.reshape(-1, vocabulary)[keep]
    teacher = teacher_logits.reshape(-1, vocabulary)[keep]
    count = student.shape[0]
    if count == 0:
        return student_logits.sum() * 0.0
    total = sum(summed(student[i : i + chunk], teacher[i : i + chunk]) for i in range(0, count, chunk))
    return total / count


def distill_loss(student_logits, teacher_logits, mask, t: float = 1.0, chunk: int = CHUNK):
    """Mean over the masked positions of the cross-entropy of the student against TAID's target at
    `t` (t = 1: against the teacher's distribution, plain KL up to a constant)."""
    import torch

    def summed(student, teacher):
        target = interpolated_target(student, teacher, t)
        return -(target * torch.log_softmax(student.float(), dim=-1)).sum()

    return _masked_mean(student_logits, teacher_logits, mask, chunk, summed)


def _generalized_jsd():
    """TRL's generalized JSD (GKD, Agarwal et al. 2024), where the installed TRL keeps it."""
    try:
        from trl.experimental.gkd import GKDTrainer
    except ImportError:  # TRL before 1.0 kept GKD at the top level
        from trl import GKDTrainer
    return GKDTrainer.generalized_jsd_loss


def jsd_loss(student_logits, teacher_logits, mask, beta: float = 0.5, chunk: int = CHUNK):
    """Mean over the masked positions of TRL's generalized JSD between student and teacher
    (beta = 0: forward KL, 1: reverse KL, between: the mixture's JSD)."""
    divergence = _generalized_jsd()

    def summed(student, teacher):
        return divergence(student.float()[None], teacher.float()[None], beta=beta, reduction="sum")

    return _masked_mean(student_logits, teacher_logits, mask, chunk, summed)


def kl_to_teacher(student_logits, teacher_logits, mask, chunk: int = CHUNK) -> float:
    """Mean KL(teacher || student) over the masked positions: how far the student is from its teacher."""
    import torch

    def summed(student, teacher):
        log_t = torch.log_softmax(teacher.float(), dim=-1)
        log_s = torch.log_softmax(student.float(), dim=-1)
        return (log_t.exp() * (log_t - log_s)).sum()

    with torch.no_grad():
        return float(_masked_mean(student_logits, teacher_logits, mask, chunk, summed))


@dataclass
class TaidSchedule:
    """TAID's t, raised once per optimizer step from the loss's relative change (SakanaAI/TAID,
    src/distil_losses/taid.py): never behind the linear ramp from t_start to t_end over the
    real number of steps, faster while the loss is still falling. Its state goes into every
    checkpoint, so a killed run continues with the same t."""

    total_steps: int
    t_start: float = 0.4
    t_end: float = 1.0
    alpha: float = 5e-4
    beta: float = 0.99
    t: float = -1.0  # set to t_start on creation
    momentum: float = 0.0
    previous_loss: float | None = None
    step: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.t_start <= self.t_end <= 1:
            raise ValueError(f"TAID needs 0 <= t_start <= t_end <= 1, got {self.t_start} and {self.t_end}")
        if self.t < 0:
            self.t = self.t_start

    def linear(self, step: int) -> float:
        share = min(1.0, step / max(1, self.total_steps))
        return self.t_start + (self.t_end - self.t_start) * share

    def update(self, loss: float) -> float:
        """After an optimizer step whose (detached) loss was `loss`: the t of the next step."""
        self.step += 1
        if self.previous_loss is not None:
            delta = (self.previous_loss - loss) / (self.previous_loss + 1e-15)
            self.momentum = self.beta * self.momentum + (1 - self.beta) * delta
        self.previous_loss = loss
        adaptive = self.t + self.alpha * _sigmoid(self.momentum) * (1 - self.t)
        self.t = min(self.t_end, max(self.linear(self.step), adaptive))
        return self.t

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TaidSchedule:
        return cls(**state)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
