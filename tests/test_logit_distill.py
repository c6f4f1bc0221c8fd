"""Logit distillation: TAID's target, loss and schedule by hand; a shrunk student; real steps that bring it
closer to its teacher; resume with TAID's state; a teacher with another tokenizer refused."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, write_jsonl

from syllabus.students.taid import TaidSchedule, distill_loss, interpolated_target, jsd_loss, kl_to_teacher

torch = pytest.importorskip("torch")


def test_the_interpolated_target_and_loss_match_a_hand_computation():
    student = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]])
    teacher = torch.tensor([[[0.0, 2.0, 0.0], [1.0, -1.0, 3.0]]])
    mask = torch.tensor([[True, False]])  # only the first position counts
    t = 0.25
    mixed = [0.75 * 1.0 + 0.25 * 0.0, 0.75 * 0.0 + 0.25 * 2.0, 0.75 * -1.0 + 0.25 * 0.0]
    z = sum(math.exp(v) for v in mixed)
    p = [math.exp(v) / z for v in mixed]
    log_q = [v - math.log(sum(math.exp(x) for x in (1.0, 0.0, -1.0))) for v in (1.0, 0.0, -1.0)]
    expected = -sum(pi * lq for pi, lq in zip(p, log_q))
    assert interpolated_target(student, teacher, t)[0, 0].tolist() == pytest.approx(p)
    assert float(distill_loss(student, teacher, mask, t)) == pytest.approx(expected)
    # Chunks of one position give the same mean as one chunk of all.
    every = torch.tensor([[True, True]])
    assert float(distill_loss(student, teacher, every, t, chunk=1)) == pytest.approx(
        float(distill_loss(student, teacher, every, t, chunk=64))
    )


def test_at_t_one_the_loss_is_kl_to_the_teacher_plus_its_entropy_and_the_gradient_skips_the_target():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 3, 7, generator=generator, requires_grad=True)
    teacher = torch.randn(2, 3, 7, generator=generator)
    mask = torch.ones(2, 3, dtype=torch.bool)
    p_t = torch.softmax(teacher, -1)
    entropy = float(-(p_t * torch.log(p_t)).sum(-1).mean())
    assert float(distill_loss(student, teacher, mask, 1.0).detach()) == pytest.approx(
        kl_to_teacher(student, teacher, mask) + entropy, rel=1e-5
    )
    # The target's student part is detached: the gradient is that of cross-entropy with a fixed target.
    t = 0.5
    loss = distill_loss(student, teacher, mask, t)
    loss.backward()
    target = interpolated_target(student, teacher, t)
    expected = (torch.softmax(student.detach(), -1) - target) / 6  # mean over 6 positions
    assert torch.allclose(student.grad, expected, atol=1e-6)


def test_jsd_matches_a_hand_computation_and_is_forward_kl_at_beta_zero():
    student = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]]])
    teacher = torch.tensor([[[0.0, 2.0, 0.0], [1.0, -1.0, 3.0]]])
    first = torch.tensor([[True, False]])

    def softmax(values):
        z = sum(math.exp(v) for v in values)
        return [math.exp(v) / z for v in values]

    def kl(p, q):
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))

    p_s, p_t = softmax([1.0, 0.0, -1.0]), softmax([0.0, 2.0, 0.0])
    for beta in (0.5, 0.2):
        mixture = [beta * t + (1 - beta) * s for s, t in zip(p_s, p_t)]
        expected = beta * kl(p_t, mixture) + (1 - beta) * kl(p_s, mixture)
        assert float(jsd_loss(student, teacher, first, beta)) == pytest.approx(expected, rel=1e-5)
    every = torch.tensor([[True, True]])
    assert float(jsd_loss(student, teacher, every, 0.0)) == pytest.approx(kl_to_teacher(student, teacher, every))
    assert float(jsd_loss(student, teacher, every, 0.5, chunk=1)) == pytest.approx(
        float(jsd_loss(student, teacher, every, 0.5, chunk=64))
    )
    assert float(jsd_loss(teacher, teacher, every, 0.5)) == pytest.approx(0.0, abs=1e-7)  # nothing left to learn


def test_the_schedule_follows_taids_update_and_never_falls_behind_the_linear_ramp():
    schedule = TaidSchedule(total_steps=10, alpha=0.1)
    assert schedule.t == 0.4
    schedule.update(2.0)  # the first step has no previous loss: momentum stays 0
    assert schedule.momentum == 0.0
    assert schedule.t == pytest.approx(max(0.4 + 0.06, 0.4 + 0.1 * 0.5 * 0.6))
    t_before = schedule.t
    schedule.update(1.0)  # the loss halved: delta 0.5
    momentum = 0.01 * 0.5
    adaptive = t_before + 0.1 * (1 / (1 + math.exp(-momentum))) * (1 - t_before)
    assert schedule.momentum == pytest.approx(momentum)
    assert schedule.t == pytest.approx(min(1.0, max(0.4 + 0.6 * 2 / 10, adaptive)))
    rng = random.Random(1)
    schedule = TaidSchedule(total_steps=50)
    for step in range(1, 60):
        t = schedule.update(rng.uniform(0.1, 5.0))
        assert schedule.linear(step) - 1e-12 <= t <= 1.0
    assert schedule.t == 1.0
    assert TaidSchedule.from_state(json.loads(json.dumps(schedule.state_dict()))) == schedule


# Real models ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_shrunk_student_has_its_layers_and_the_teachers_tokenizer(shrunk, embedded_dir):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(shrunk, local_files_only=True)
    assert config.num_hidden_layers == 4
    assert json.loads((shrunk / "shrunk.json").read_text())["layers"] == [0, 10, 19, 29]
    assert AutoTokenizer.from_pretrained(shrunk).get_vocab() == AutoTokenizer.from_pretrained(embedded_dir).get_vocab()
    done = run_cli("students", "shrink", "--layers", "31", "--out", str(shrunk.parent / "x"), cwd=shrunk.parent)
    assert done.returncode == 2 and "30 layers" in done.stderr


def _rows(n: int, offset: int = 0) -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"What is {a} plus {a + 3}?"}],
            "completion": [{"role": "assistant", "content": f"{a} plus {a + 3} is {2 * a + 3}."}],
        }
        for a in range(offset, offset + n)
    ]


def _kl(student: Path, teacher: Path, rows: list[dict]) -> float:
    from syllabus.backends.local import load_causal_lm

    s_model, tokenizer = load_causal_lm(student, dtype="float32")
    t_model, _ = load_causal_lm(teacher, dtype="float32")
    total = 0.0
    for row in rows:
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        text = prompt + row["completion"][0]["content"]
        ids = tokenizer(text, return_tensors="pt").input_ids
        start = len(tokenizer(prompt).input_ids)
        mask = torch.zeros(1, ids.shape[1] - 1, dtype=torch.bool)
        mask[0, start - 1 :] = True
        with torch.no_grad():
            total += kl_to_teacher(s_model(ids).logits[:, :-1], t_model(ids).logits[:, :-1], mask)
    return total / len(rows)


@pytest.mark.slow
def test_taid_steps_bring_a_shrunk_student_closer_to_its_teacher_and_resume_keeps_t(shrunk, embedded_dir, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", _rows(16))
    held = _rows(4, offset=40)
    out = tmp_path / "taid"
    common = ["--teacher", "embedded", "--student", str(shrunk), "--out", str(out), "--batch-size", "4"]
    # A first run that stops after 2 steps (as a kill after its checkpoint would), then the full run of 6.
    first = run_cli("train", "distill", str(train), *common, "--max-steps", "2", "--save-steps", "2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    saved = json.loads((out / "checkpoints" / "checkpoint-2" / "taid.json").read_text())
    assert saved["step"] == 2 and saved["t"] > 0.4
    shutil.rmtree(out / "final")
    done = run_cli("train", "distill", str(train), *common, "--max-steps", "6", "--save-steps", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-2")
    assert metrics["taid"]["step"] == 6  # the schedule went on from step 2, not from 0
    assert metrics["taid"]["t"] >= TaidSchedule(total_steps=6).linear(6) - 1e-9
    assert _kl(out / "final", embedded_dir, held) < _kl(shrunk, embedded_dir, held)


@pytest.mark.slow
def test_jsd_steps_bring_a_shrunk_student_closer_to_its_teacher(shrunk, embedded_dir, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", _rows(16))
    out = tmp_path / "jsd"
    done = run_cli(
        "train", "distill", str(train), "--teacher", "embedded", "--student", str(shrunk), "--method", "jsd",
        "--out", str(out), "--batch-size", "4", "--max-steps", "4", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["method"] == "jsd"
    held = _rows(4, offset=40)
    assert _kl(out / "final", embedded_dir, held) < _kl(shrunk, embedded_dir, held)


@pytest.mark.slow
def test_a_teacher_with_another_tokenizer_is_refused_with_exit_2(shrunk, tmp_path):
    from transformers import AutoTokenizer

    other = shutil.copytree(shrunk, tmp_path / "other")
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<syllabus-extra-token>"])
    tokenizer.save_pretrained(other)
    train = write_jsonl(tmp_path / "train.jsonl", _rows(4))
    done = run_cli("train", "distill", str(train), "--teacher", str(other), "--student", str(shrunk), cwd=tmp_path)
    assert done.returncode == 2
    said = " ".join(done.stderr.split())  # the message wraps at the terminal's width
    assert "do not share a tokenizer" in said and str(other) in said


@pytest.mark.slow
def test_the_loops_train_step_distills_a_shrunk_student_on_the_rounds_rows(shrunk, tmp_path):
    """`loop.train: distill`: a round's rows teach the student the teacher's logits (TAID), not their
    text; the model the round names is the distilled one, its checkpoints dropped."""
    from conftest import small_example

    from syllabus.loop import steps
    from syllabus.loop.distill import DistillOptions, Loop
    from syllabus.project import Project

    folder = small_example(tmp_path / "p")
    config = folder / "syllabus.yaml"
    text = config.read_text()
    assert "  train: sft " in text
    config.write_text(text.replace("  train: sft ", "  train: distill ", 1))
    loop = Loop(Project.load(folder), DistillOptions(budget=8, student=str(shrunk)))
    r1 = loop.layout.round(1)
    r1.root.mkdir(parents=True)
    write_jsonl(r1.train, _rows(4))
    steps.write_json(r1.rows, {"train": 4, "pairs": 0})
    steps.train(loop, 1)
    trained = Path(steps.read_json(r1.trained)["student"])
    assert trained == r1.student / "distill" / "final" and (trained / "model.safetensors").is_file()
    metrics = json.loads((r1.student / "distill" / "metrics.json").read_text())
    assert metrics["method"] == "taid" and metrics["teacher"] == "embedded" and metrics["steps"] == 1
    assert not (r1.student / "distill" / "checkpoints").exists()


def test_distilling_from_a_served_teacher_is_refused_before_any_round(tmp_path):
    from conftest import small_example

    folder = small_example(tmp_path / "p")
    config = folder / "syllabus.yaml"
    config.write_text(config.read_text().replace("  train: sft ", "  train: distill ", 1))
    done = run_cli("distill", "--teacher", "openai:gpt-4o-mini", cwd=folder)
    assert done.returncode == 2
    said = " ".join(done.stderr.split())
    assert "loop.train: distill" in said and "served" in said and "syllabus.yaml" in said
    assert not (folder / "runs").exists()
