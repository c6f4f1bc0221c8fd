"""The student side on the embedded model: real TRL steps, reloads, examination, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli

from syllabus.students.probes import load_probes

pytestmark = pytest.mark.slow
QUICK = ["--max-steps", "2", "--batch-size", "2", "--max-length", "96"]


@pytest.fixture(scope="session")
def split_run(embedded_run):
    """The generated run with probes held out: RUN/probes.jsonl and RUN/train."""
    run = embedded_run / "runs/default"
    result = run_cli("probes", "split", str(run), "--fraction", "0.5")
    assert result.returncode == 0, result.stderr
    return run


@pytest.fixture(scope="session")
def sft_full(split_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "full"
    result = run_cli(
        "train",
        "sft",
        str(split_run / "train"),
        "--out",
        str(out),
        "--full",
        "--probes",
        str(split_run / "probes.jsonl"),
        *QUICK,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_probes_are_held_out_of_the_training_split(split_run):
    from datasets import load_from_disk

    probes = load_probes(split_run / "probes.jsonl")
    train = load_from_disk(str(split_run / "train"))
    full = load_from_disk(str(split_run / "dataset"))
    assert probes and len(train) + len(probes) == len(full)
    held = {p.question for p in probes}
    assert not held & {row["prompt"][-1]["content"] for row in train}


def test_training_on_a_set_that_holds_probes_fails_loudly(split_run, tmp_path):
    result = run_cli(
        "train",
        "sft",
        str(split_run / "dataset"),
        "--out",
        str(tmp_path / "leak"),
        "--probes",
        str(split_run / "probes.jsonl"),
        *QUICK,
    )
    assert result.returncode == 2
    assert "probe question(s) found in the training set" in result.stderr and "Traceback" not in result.stderr


def test_sft_full_trains_saves_and_reloads(sft_full):
    from transformers import AutoModelForCausalLM

    metrics = json.loads((sft_full / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["method"] == "sft" and metrics["lora"] is False
    assert (sft_full / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = AutoModelForCausalLM.from_pretrained(sft_full / "final")
    assert model.config.architectures == ["LlamaForCausalLM"]


def test_sft_lora_merges_into_a_plain_model(split_run, tmp_path, embedded_dir):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "lora"
    result = run_cli("train", "sft", str(split_run / "train"), "--out", str(out), "--lora", *QUICK)
    assert result.returncode == 0, result.stderr
    assert (out / "adapter" / "adapter_config.json").is_file()
    tuned = AutoModelForCausalLM.from_pretrained(out / "final")
    base = AutoModelForCausalLM.from_pretrained(embedded_dir)
    assert not any("lora" in name for name in tuned.state_dict())  # merged, loads without peft
    changed = [n for n, p in tuned.named_parameters() if not torch.equal(p, base.state_dict()[n])]
    assert changed  # the adapter moved some weights


def test_examination_then_dpo_on_the_students_mistakes(sft_full, split_run, tmp_path):
    exam = tmp_path / "exam"
    result = run_cli(
        "eval",
        "--student",
        str(sft_full / "final"),
        "--probes",
        str(split_run / "probes.jsonl"),
        "--out",
        str(exam),
        "--max-tokens",
        "32",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((exam / "results.json").read_text())
    assert summary["overall"]["probes"] == len(load_probes(split_run / "probes.jsonl"))
    assert "mathematics/linear-algebra" in summary["nodes"] and summary["overall"]["mean_logprob"] < 0
    assert (exam / "pairs").is_dir()
    for lora in ("--full", "--lora"):
        out = tmp_path / f"dpo{lora}"
        result = run_cli(
            "train", "dpo", str(exam / "pairs"), "--student", str(sft_full / "final"), "--out", str(out), lora, *QUICK
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads((out / "metrics.json").read_text())["steps"] == 2
        assert (out / "final" / "config.json").is_file()


def test_reference_answer_scores_higher_than_a_wrong_one(embedded_dir):
    import asyncio

    from syllabus.backends.local import LocalBackend

    backend = LocalBackend(embedded_dir)

    async def scores():
        try:
            return await backend.score(
                [{"role": "user", "content": "What is the capital of France?"}],
                ["The capital of France is Paris.", "The capital of France is a banana sandwich."],
            )
        finally:
            await backend.aclose()

    right, wrong = asyncio.run(scores())
    assert right.mean > wrong.mean


def test_killed_training_resumes_from_its_checkpoint(split_run, tmp_path):
    out = tmp_path / "resume"
    command = [
        sys.executable,
        "-m",
        "syllabus",
        "train",
        "sft",
        str(split_run / "train"),
        "--out",
        str(out),
        "--max-steps",
        "3",
        "--batch-size",
        "1",
        "--max-length",
        "96",
        "--save-steps",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (out / "checkpoints" / "checkpoint-1" / "trainer_state.json").is_file():
        assert process.poll() is None and time.time() < deadline, "training ended before a checkpoint"
        time.sleep(0.2)
    time.sleep(0.5)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "final").exists()
    result = run_cli(
        "train",
        "sft",
        str(split_run / "train"),
        "--out",
        str(out),
        "--max-steps",
        "3",
        "--batch-size",
        "1",
        "--max-length",
        "96",
        "--save-steps",
        "1",
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["resumed_from"] and "checkpoint-" in metrics["resumed_from"]
    assert "resumed from" in result.stdout
