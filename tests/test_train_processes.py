"""Training on several processes (`--processes N`, `student.processes`): data parallel under torchrun.

On this machine's CPUs with gloo, two processes of the real embedded student: each trains on
its share of every batch (8 rows at batch 1 make 4 steps, not 8), only the main process writes
final/ and the metrics, and a run killed (the whole process group, SIGKILL) after a
checkpoint resumes from it when the same command is run again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_env, small_example, write_jsonl

pytestmark = pytest.mark.slow

ROWS = [
    {
        "prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
        "completion": [{"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}],
    }
    for i in range(8)
]


def _command(data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "syllabus", "train", "sft", str(data), "--processes", "2", "--epochs", "1",
        "--batch-size", "1", "--max-length", "64", "--save-steps", "1", "--out", str(out),
    ]  # fmt: skip


def _workers_of(out: Path, wait: float = 20.0) -> list[int]:
    """The processes still running this launch (torchrun or a worker), after up to `wait` seconds."""
    marker = str(out / "launch.json").encode()
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes():
                    alive.append(int(proc.name))
            except OSError:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def test_two_processes_share_the_batches_write_once_and_resume_after_a_kill(tmp_path):
    data = write_jsonl(tmp_path / "data.jsonl", ROWS)
    out = tmp_path / "out"
    run = subprocess.Popen(
        _command(data, out), cwd=tmp_path, env=cli_env(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    second = out / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.monotonic() + 600
    while not second.is_file() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(run.pid, signal.SIGKILL)  # the command alone: torchrun and its workers must die with it
    said = run.communicate()[0]
    assert second.is_file(), f"the run ended before its second checkpoint: {said[-3000:]}"
    assert not _workers_of(out), "a worker trained on after the command was killed"
    assert not (out / "final").exists()

    again = subprocess.run(_command(data, out), cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["steps"] == 4  # 8 rows, 1 a process and step, 2 processes: each ran its half
    assert metrics["resumed_from"] and Path(metrics["resumed_from"]).name.startswith("checkpoint-")
    assert int(Path(metrics["resumed_from"]).name.split("-")[1]) >= 2
    assert (out / "final" / "model.safetensors").is_file()
    assert [p.name for p in out.iterdir() if "final" in p.name] == ["final"]  # no staging left behind
    assert "resumed from" in again.stdout


def test_the_loops_train_step_uses_the_processes_of_student_settings(tmp_path):
    from syllabus.loop import steps
    from syllabus.loop.distill import DistillOptions, Loop
    from syllabus.project import Project

    folder = small_example(tmp_path / "p")
    config = folder / "syllabus.yaml"
    text = config.read_text()
    assert "  processes: 1 " in text
    config.write_text(text.replace("  processes: 1 ", "  processes: 2 ", 1))
    loop = Loop(Project.load(folder), DistillOptions(budget=8))
    r1 = loop.layout.round(1)
    r1.root.mkdir(parents=True)
    write_jsonl(r1.train, ROWS)
    steps.write_json(r1.rows, {"train": len(ROWS), "pairs": 0})
    steps.train(loop, 1)
    trained = Path(steps.read_json(r1.trained)["student"])
    assert trained == r1.student / "sft" / "final" and (trained / "model.safetensors").is_file()
    metrics = json.loads((r1.student / "sft" / "metrics.json").read_text())
    assert metrics["processes"] == 2
