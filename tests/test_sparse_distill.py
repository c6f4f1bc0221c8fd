"""Sparse (top-k plus a tail bucket) logit distillation: by hand on tiny tensors, equal to the dense loss
when k covers the vocabulary, gradients into the student only."""

from __future__ import annotations

import math

import pytest

from syllabus.students.taid import distill_loss, local_topk, sparse_buckets, sparse_distill_loss

torch = pytest.importorskip("torch")


def _log_softmax(values):
    z = math.log(sum(math.exp(v) for v in values))
    return [v - z for v in values]


def test_the_sparse_loss_matches_a_hand_computation_with_a_tail_bucket():
    student = torch.tensor([[[1.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]]])
    # The teacher lists ids 2 and 0 at the first position (probabilities 0.5 and 0.3, tail 0.2); the
    # second position is masked out.
    ids = torch.tensor([[[2, 0], [1, -1]]])
    logprobs = torch.tensor([[[math.log(0.5), math.log(0.3)], [0.0, 0.0]]])
    mask = torch.tensor([[True, False]])
    t = 0.25
    log_q = _log_softmax([1.0, 0.0, -1.0, 0.5])
    q_buckets = [log_q[2], log_q[0], math.log(math.exp(log_q[1]) + math.exp(log_q[3]))]
    p_buckets = [math.log(0.5), math.log(0.3), math.log(0.2)]
    mixed = [(1 - t) * q + t * p for q, p in zip(q_buckets, p_buckets)]
    target = [math.exp(v) for v in _log_softmax(mixed)]
    expected = -sum(pi * qi for pi, qi in zip(target, q_buckets))
    assert float(sparse_distill_loss(student, ids, logprobs, mask, t)) == pytest.approx(expected, rel=1e-6)
    s, p, valid = sparse_buckets(student[0, :1], ids[0, :1], logprobs[0, :1])
    assert s[0].tolist() == pytest.approx(q_buckets, rel=1e-6)
    assert p[0].tolist() == pytest.approx(p_buckets, rel=1e-6)
    assert valid[0].tolist() == [True, True, True]
    # An unused slot (-1) is no bucket, and does not hide a listed id 0.
    s, p, valid = sparse_buckets(student[0, :1], torch.tensor([[0, -1]]), torch.tensor([[math.log(0.3), 0.0]]))
    assert valid[0].tolist() == [True, False, True]
    assert float(p[0, 2].exp()) == pytest.approx(0.7)
    assert float(s[0, 2].exp()) == pytest.approx(1 - math.exp(log_q[0]), rel=1e-6)
    # At t = 0 the target is the student's own bucket distribution: the loss is its bucket entropy.
    own = -sum(math.exp(q) * q for q in q_buckets)
    assert float(sparse_distill_loss(student, ids, logprobs, mask, 0.0)) == pytest.approx(own, rel=1e-6)


@pytest.mark.parametrize("t", [0.0, 0.4, 0.83, 1.0])
def test_with_k_covering_the_vocabulary_the_sparse_loss_is_the_dense_one(t):
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(2, 5, 11, generator=generator) * 3
    teacher = torch.randn(2, 5, 11, generator=generator) * 3
    mask = torch.rand(2, 5, generator=generator) > 0.3
    ids, logprobs = local_topk(teacher, 11)
    dense = distill_loss(student, teacher, mask, t)
    assert float(sparse_distill_loss(student, ids, logprobs, mask, t)) == pytest.approx(float(dense), rel=1e-6)
    assert float(sparse_distill_loss(student, ids, logprobs, mask, t, chunk=1)) == pytest.approx(float(dense), rel=1e-6)
    # The gradients too, and no NaN from the empty tail.
    a = student.clone().requires_grad_()
    distill_loss(a, teacher, mask, t).backward()
    b = student.clone().requires_grad_()
    sparse_distill_loss(b, ids, logprobs, mask, t).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-7)
    # With k < V the tail holds the rest and the loss differs from the dense one.
    few_ids, few = local_topk(teacher, 3)
    assert float(sparse_distill_loss(student, few_ids, few, mask, t)) != pytest.approx(float(dense), rel=1e-3)


def test_gradients_flow_into_the_student_only_and_match_cross_entropy_on_the_buckets():
    generator = torch.Generator().manual_seed(5)
    student = torch.randn(1, 3, 9, generator=generator, requires_grad=True)
    teacher = torch.randn(1, 3, 9, generator=generator)
    ids, logprobs = local_topk(teacher, 4)
    logprobs.requires_grad_()
    mask = torch.ones(1, 3, dtype=torch.bool)
    t = 0.5
    loss = sparse_distill_loss(student, ids, logprobs, mask, t)
    loss.backward()
    assert logprobs.grad is not None and torch.count_nonzero(logprobs.grad) > 0  # the teacher's side is an input
    # The student's part of the target is detached: the gradient is that of a cross-entropy with the
    # target held fixed.
    log_q, log_p, valid = sparse_buckets(student.detach()[0], ids[0], logprobs.detach()[0])
    target = torch.softmax(((1 - t) * log_q + t * log_p).masked_fill(~valid, float("-inf")), -1)
    fixed = student.detach().clone().requires_grad_()
    log_q2, _, _ = sparse_buckets(fixed[0], ids[0], logprobs.detach()[0])
    (-(target * log_q2).sum() / 3).backward()
    assert torch.allclose(student.grad, fixed.grad, atol=1e-6)
    assert float(student.grad.abs().sum()) > 0


def test_positions_with_nothing_masked_give_zero_and_mismatched_shapes_are_refused():
    student = torch.randn(1, 2, 5, requires_grad=True)
    ids, logprobs = local_topk(torch.randn(1, 2, 5), 2)
    loss = sparse_distill_loss(student, ids, logprobs, torch.zeros(1, 2, dtype=torch.bool))
    assert float(loss.detach()) == 0.0
    loss.backward()
    with pytest.raises(ValueError, match="differ"):
        sparse_distill_loss(student, ids, logprobs[..., :1], torch.ones(1, 2, dtype=torch.bool))
