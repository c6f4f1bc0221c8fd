"""Sparse (top-k plus a tail bucket) logit distillation: by hand on tiny tensors, equal to the dense loss
when k covers the vocabulary, gradients into the student only."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from conftest import run_cli, write_jsonl

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


# A real student and a real served teacher ----------------------------------------------------


def _chat(a: int) -> list[dict]:
    return [
        {"role": "user", "content": f"What is {a} plus {a + 3}?"},
        {"role": "assistant", "content": f"{a} plus {a + 3} is {2 * a + 3}. Café “ok” 你好"},
    ]


@pytest.mark.slow
def test_a_local_teachers_full_top_k_gives_the_dense_loss_on_real_logits(shrunk, embedded_dir):
    from syllabus.backends.local import load_causal_lm

    student, tokenizer = load_causal_lm(shrunk, dtype="float32")
    teacher, _ = load_causal_lm(embedded_dir, dtype="float32")
    ids = tokenizer(tokenizer.apply_chat_template(_chat(4), tokenize=False), return_tensors="pt").input_ids
    with torch.no_grad():
        s, t_logits = student(ids).logits[:, :-1], teacher(ids).logits[:, :-1]
    mask = torch.ones(s.shape[:2], dtype=torch.bool)
    full_ids, full = local_topk(t_logits, t_logits.shape[-1])
    for t in (0.4, 1.0):
        assert float(sparse_distill_loss(s, full_ids, full, mask, t, chunk=7)) == pytest.approx(
            float(distill_loss(s, t_logits, mask, t)), rel=1e-5
        )


@pytest.mark.slow
@pytest.mark.server
def test_the_servers_echo_is_matched_to_the_students_tokens_aligned_or_one_late(llama_server, embedded_dir):
    """llama.cpp drops a leading BOS (<|im_start|> for SmolLM2) and every later one from its echo; with the
    BOS there its top-k at entry j predicts echoed token j, without it (plain text) the token after it.
    Either way the aligned top-k agrees with the local copy of the same model on the likeliest token."""
    import asyncio

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from syllabus.backends.openai_backend import OpenAIBackend
    from syllabus.students.served_teacher import TokenTexts, align_row

    tokenizer = AutoTokenizer.from_pretrained(embedded_dir)
    model = AutoModelForCausalLM.from_pretrained(embedded_dir, dtype=torch.float32)
    texts = TokenTexts(tokenizer)
    chat = tokenizer.apply_chat_template(_chat(4), tokenize=False)
    plain = "The capital of France is Paris. It is a beautiful city with many museums and old bridges."
    for text, shifted in ((chat, False), (plain, True)):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        backend = OpenAIBackend(model="smollm2", base_urls=[llama_server.base_url], api_key=None)
        tokens, tops = asyncio.run(backend.echo_topk(tokenizer.decode(ids), 5))
        row = align_row(ids, tokens, tops, texts)
        assert row.shifted is shifted
        with torch.no_grad():
            log_p = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
        known = [p for p in range(1, len(ids)) if row.known[p]]
        assert len(known) >= len(ids) - 4  # the first token, and the BOS ids the server skipped
        agree = sum(row.ids[p][0] == int(log_p[p - 1].argmax()) for p in known)
        assert agree >= 0.85 * len(known), (agree, len(known))  # a Q4 GGUF against the full weights
        assert all(len(row.ids[p]) <= 6 for p in known)  # top-5, and the echoed token beside them


@pytest.mark.slow
@pytest.mark.server
def test_a_served_teacher_distils_and_a_rerun_asks_it_nothing(llama_server, shrunk, tmp_path):
    rows = [{"prompt": c[:1], "completion": c[1:]} for c in map(_chat, range(6))]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out"
    args = [
        "train", "distill", str(train), "--teacher", "openai:smollm2", "--base-url", llama_server.base_url,
        "--student", str(shrunk), "--out", str(out), "--batch-size", "3", "--max-steps", "2", "--top-k", "5",
    ]  # fmt: skip

    def sent() -> tuple[int, int]:
        log = llama_server.log.read_text(errors="replace")
        return log.count("POST /v1/completions"), log.count("/v1/models")

    before = sent()
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "final" / "model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["teacher"] == "openai:smollm2" and metrics["top_k"] == 5 and metrics["steps"] == 2
    assert metrics["teacher_requests"] == {"rows": 6, "from_cache": 0, "answered": 6, "failed": {}}
    assert all(math.isfinite(e["loss"]) for e in metrics["log_history"] if "loss" in e)
    first = sent()
    assert first[0] - before[0] == 6  # one request per row
    shutil.rmtree(out / "final")
    shutil.rmtree(out / "checkpoints")
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sent() == first  # not a completion, not even the preflight's model listing
    assert json.loads((out / "metrics.json").read_text())["teacher_requests"]["from_cache"] == 6


@pytest.mark.slow
@pytest.mark.server
def test_a_server_that_tokenises_a_row_otherwise_is_refused_naming_the_row(llama_server, shrunk, tmp_path):
    from transformers import AutoTokenizer

    other = shutil.copytree(shrunk, tmp_path / "other")
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<syllabus-extra-token>"])  # one id for the student, several for the server
    tokenizer.save_pretrained(other)
    rows = [{"prompt": c[:1], "completion": c[1:]} for c in map(_chat, range(2))]
    rows[1]["completion"][0]["content"] += " <syllabus-extra-token>"
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    done = run_cli(
        "train", "distill", str(train), "--teacher", "openai:smollm2", "--base-url", llama_server.base_url,
        "--student", str(other), "--out", str(tmp_path / "out"), "--max-steps", "1", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    said = " ".join(done.stderr.split())
    assert "row 1:" in said and "does not tokenise the row as the student does" in said and "train.jsonl" in said
    assert not (tmp_path / "out" / "final").exists()


@pytest.mark.slow
@pytest.mark.server
def test_a_server_without_prompt_logprobs_and_bad_options_are_refused_with_exit_2(
    llama_server_last_logits, shrunk, tmp_path
):
    rows = [{"prompt": c[:1], "completion": c[1:]} for c in map(_chat, range(2))]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    common = ["train", "distill", str(train), "--teacher", "openai:smollm2", "--student", str(shrunk)]
    url = ["--base-url", llama_server_last_logits.base_url, "--out", str(tmp_path / "out"), "--max-steps", "1"]
    done = run_cli(*common, *url, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    said = " ".join(done.stderr.split())
    assert "failed row 0" in said and "--logits_all True" in said
    jsd = run_cli(*common, *url, "--method", "jsd", cwd=tmp_path)
    assert jsd.returncode == 2 and "--method jsd needs the teacher's whole distribution" in " ".join(jsd.stderr.split())
    zero = run_cli(*common, *url, "--top-k", "0", cwd=tmp_path)
    assert zero.returncode == 2 and "--top-k" in zero.stderr
