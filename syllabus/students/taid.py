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

A served teacher returns only its top-k log-probabilities at each position: `sparse_distill_loss`
is the same loss over k + 1 buckets (the listed tokens and a tail holding the rest), equal to
the dense one when k covers the vocabulary.

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
    over the rows of a chunk (dense: both (..., positions, vocabulary), of one vocabulary)."""
    vocabulary = student_logits.shape[-1]
    if teacher_logits.shape[-1] != vocabulary:
        raise ValueError(f"student and teacher vocabularies differ ({vocabulary} against {teacher_logits.shape[-1]})")
    return _masked_chunks(mask, chunk, summed, student_logits, teacher_logits)


def _masked_chunks(mask, chunk: int, summed, *per_position):
    """The mean over the positions where `mask` is true of `summed(*chunk_of_each)`, a loss summed over
    the rows of a chunk: only the masked positions of each tensor are gathered, then handled `chunk` at a
    time, so the (positions x vocabulary) fp32 tensors never exist all at once.

    per_position: tensors (..., positions, width) sharing `mask`'s leading shape (..., positions); the
    first is the student's logits (a loss with no masked position is its zero, with its gradient)."""
    keep = mask.reshape(-1).bool()
    rows = [tensor.reshape(-1, tensor.shape[-1])[keep] for tensor in per_position]
    count = rows[0].shape[0]
    if count == 0:
        return per_position[0].sum() * 0.0
    total = sum(summed(*(r[i : i + chunk] for r in rows)) for i in range(0, count, chunk))
    return total / count


def distill_loss(student_logits, teacher_logits, mask, t: float = 1.0, chunk: int = CHUNK):
    """Mean over the masked positions of the cross-entropy of the student against TAID's target at
    `t` (t = 1: against the teacher's distribution, plain KL up to a constant)."""
    import torch

    def summed(student, teacher):
        target = interpolated_target(student, teacher, t)
        return -(target * torch.log_softmax(student.float(), dim=-1)).sum()

    return _masked_mean(student_logits, teacher_logits, mask, chunk, summed)


LOG_FLOOR = -69.0  # log(1e-30): a teacher's log-probability below it (or -inf) counts as this


def local_topk(teacher_logits, k: int):
    """A local teacher as a served one is known: the ids and log-probabilities of its `k` likeliest
    tokens at each position (k = the vocabulary: all of it, in another order)."""
    import torch

    logprobs, ids = torch.topk(torch.log_softmax(teacher_logits.float(), dim=-1), k, dim=-1)
    return ids, logprobs


def sparse_buckets(student_logits, topk_ids, topk_logprobs):
    """The student and the teacher over K+1 buckets: the K ids the teacher listed (id -1: an unused
    slot) and the tail, everything else (TRL's server distillation adds the same tail bucket).

    Returns (student log-probs, teacher log-probs, valid), each (rows, K+1). The student's tail is the
    logsumexp of its log-probabilities outside the listed ids (exact, where 1 - sum would lose a small
    tail to rounding); the teacher's is log(1 - sum of its listed probabilities). Where the listed ids
    cover the whole vocabulary there is no tail: that bucket is marked invalid, so with k = V the
    buckets are the full distributions and the sparse loss is the dense one. Listed ids must be
    distinct within a row."""
    import torch

    log_q = torch.log_softmax(student_logits.float(), dim=-1)
    listed = topk_ids >= 0
    ids = topk_ids.clamp(min=0).long()
    student_top = log_q.gather(-1, ids)
    # Counted with scatter_add: an unused slot's id 0 must not unmark a listed id 0.
    covered = torch.zeros_like(log_q, dtype=torch.long).scatter_add(-1, ids, listed.long()) > 0
    has_tail = ~covered.all(dim=-1, keepdim=True)
    rest = log_q.masked_fill(covered, float("-inf"))
    # With no tail every entry is -inf, and logsumexp's gradient would be NaN even where the bucket is
    # masked out: give such a row one finite entry (the bucket is invalid, its value unused).
    first = torch.zeros(log_q.shape[-1], dtype=torch.bool, device=log_q.device)
    first[0] = True
    student_tail = torch.logsumexp(rest.masked_fill(first & ~has_tail, 0.0), dim=-1, keepdim=True)
    teacher_top = topk_logprobs.float().clamp(min=LOG_FLOOR).masked_fill(~listed, float("-inf"))
    listed_mass = torch.logsumexp(teacher_top, dim=-1, keepdim=True)
    teacher_tail = torch.log((-torch.expm1(listed_mass)).clamp(min=math.exp(LOG_FLOOR)))
    valid = torch.cat([listed, has_tail], dim=-1)
    student = torch.cat([student_top, student_tail], dim=-1).masked_fill(~valid, 0.0)
    teacher = torch.cat([teacher_top, teacher_tail], dim=-1).masked_fill(~valid, 0.0)
    return student, teacher, valid


def sparse_distill_loss(student_logits, topk_ids, topk_logprobs, mask, t: float = 1.0, chunk: int = CHUNK):
    """`distill_loss` for a teacher known only by its top-k at each position (a served teacher's
    logprobs): TAID's target over the K+1 buckets of `sparse_buckets`, from log-probabilities,
    softmax((1 - t) * stopgrad(student) + t * teacher); the student's cross-entropy against it, mean
    over the masked positions. With k = the vocabulary it equals `distill_loss` at every t.

    student_logits: (..., positions, V); topk_ids, topk_logprobs: (..., positions, K), id -1 unused."""
    import torch

    if topk_ids.shape != topk_logprobs.shape:
        raise ValueError(f"top-k ids {tuple(topk_ids.shape)} and log-probs {tuple(topk_logprobs.shape)} differ")

    def summed(student, ids, logprobs):
        log_q, log_p, valid = sparse_buckets(student, ids, logprobs)
        mixed = ((1.0 - t) * log_q.detach() + t * log_p).masked_fill(~valid, float("-inf"))
        return -(torch.softmax(mixed, dim=-1) * log_q).sum()

    return _masked_chunks(mask, chunk, summed, student_logits, topk_ids, topk_logprobs)


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
