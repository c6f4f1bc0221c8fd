"""End to end against a real OpenAI-compatible server (llama.cpp serving the embedded GGUF)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import copy_project, run_cli

pytestmark = pytest.mark.server

NODE = "mathematics/linear-algebra"


def teacher_args(server) -> list[str]:
    return ["--teacher", "openai:smollm2", "--base-url", server.base_url]


def rows_of(project):
    return [json.loads(line) for line in (project / "runs/default/dataset.jsonl").read_text().splitlines()]


def cached_answers(project) -> int:
    db = project / "runs/default/cache.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_full_generation_against_the_server(llama_server, make_project):
    project = make_project()
    result = run_cli(
        "generate", "--project", str(project), "--nodes", NODE, "--questions", "3", *teacher_args(llama_server)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = rows_of(project)
    assert rows and all(row["teacher"] == "smollm2" and row["teacher_backend"] == "openai" for row in rows)
    assert "Generation summary" in result.stdout


def test_answers_the_checks_would_drop_are_drawn_again_and_a_rerun_asks_nothing(llama_server, make_project):
    """Answers cut at 12 tokens fail the truncation check: each is drawn again (twice at most), each
    redraw its own cached request, counted by reason; the last draw goes on to the filters."""
    project = make_project(
        max_tokens={"subjects": 60, "syllabus": 120, "question": 48, "answer": 12}, drop_truncated=True, replacements=0
    )
    command = ["generate", "--project", str(project), "--nodes", NODE, "--questions", "3", *teacher_args(llama_server)]
    run_cli(*command)
    summary = json.loads((project / "runs/default/summary.json").read_text())
    assert summary["nodes"][0]["replaced"] == 0  # replacements: 0 turns the quota off
    answer = summary["stages"]["answer"]
    redrawn = answer["redrawn"].get("truncated", 0)
    assert redrawn > 0 and answer["requested"] == 3 + redrawn <= 3 * 3
    assert answer["kept"] == 3  # every sample ends with one draw, kept or not, for the filters to judge
    truncated = summary["filters"]["counts"]["truncated"]
    assert truncated <= 3 and redrawn >= 2 * truncated  # a row dropped as cut off had used both redraws
    before = cached_answers(project)
    run_cli(*command)
    again = json.loads((project / "runs/default/summary.json").read_text())["stages"]["answer"]
    assert cached_answers(project) == before and again["answered"] == 0 and again["from_cache"] == answer["requested"]


def test_a_question_whose_row_the_checks_refuse_is_replaced_up_to_the_share_and_a_rerun_asks_nothing(
    llama_server, make_project
):
    """Answers cut at 10 tokens, no redraws: a truncated row goes to the filters (dropped, with its
    reason) and a new question of the node takes its place, while `replacements` x questions last."""
    from syllabus.yamlio import dump, load

    project = make_project(
        max_tokens={"subjects": 60, "syllabus": 120, "question": 48, "answer": 10},
        drop_truncated=True,
        replacements=1.0,
    )
    config = load(project / "syllabus.yaml")
    for stage in ("question", "answer"):
        config["generation"]["stages"][stage]["redraws"] = 0
    dump(config, project / "syllabus.yaml")
    command = ["generate", "--project", str(project), "--nodes", NODE, "--questions", "2", *teacher_args(llama_server)]
    result = run_cli(*command)
    summary = json.loads((project / "runs/default/summary.json").read_text())
    node, question = summary["nodes"][0], summary["stages"]["question"]
    refused = summary["filters"]["counts"]["truncated"]
    assert refused > 0, result.stdout + result.stderr
    # Every refused row was replaced while the share lasted (2 x 1.0), each a new question index.
    assert node["replaced"] == min(2, refused) and question["requested"] == 2 + node["replaced"]
    assert node["delivered"] == 2 + node["replaced"]  # the refused rows too: the filters drop them, saying why
    indices = sorted(row["question_index"] for row in rows_of(project)) if node["kept"] else []
    assert all(0 <= i < 2 + node["replaced"] for i in indices)
    dropped = [json.loads(line) for line in (project / "runs/default/dropped.jsonl").read_text().splitlines()]
    assert sum(row["filtered_by"] == "truncated" for row in dropped) == refused
    if node["kept"] < 2:
        assert "Nodes short of their share" in result.stdout and "replacements" in result.stdout
    # The same command again: the same replacements, every one from the cache.
    before = cached_answers(project)
    run_cli(*command)
    again = json.loads((project / "runs/default/summary.json").read_text())
    assert cached_answers(project) == before and again["nodes"] == summary["nodes"]
    assert sum(stage["answered"] for stage in again["stages"].values()) == 0


def test_kill_then_resume_sends_only_missing_requests(llama_server, make_project):
    base = make_project("base", questions=6)
    reference = copy_project(base, base.parent / "reference")
    killed = copy_project(base, base.parent / "killed")

    result = run_cli("generate", "--project", str(reference), "--nodes", NODE, *teacher_args(llama_server))
    assert result.returncode == 0, result.stdout + result.stderr

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syllabus",
            "generate",
            "--project",
            str(killed),
            "--nodes",
            NODE,
            "--concurrency",
            "1",
            *teacher_args(llama_server),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while cached_answers(killed) < 4 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    answered_before = cached_answers(killed)
    sent_before = llama_server.wait_idle(quiet=6.0)  # the killed client's last request may still be served

    result = run_cli("generate", "--project", str(killed), "--nodes", NODE, *teacher_args(llama_server))
    assert result.returncode == 0, result.stdout + result.stderr
    sent_by_rerun = llama_server.wait_idle(quiet=1.0) - sent_before
    missing = cached_answers(killed) - answered_before
    assert sent_by_rerun == missing > 0
    summary = json.loads((killed / "runs/default/summary.json").read_text())
    assert sum(stage["answered"] for stage in summary["stages"].values()) == sent_by_rerun
    # The same rows as the run that was never interrupted: none lost, none twice.
    strip = lambda rows: [{k: v for k, v in row.items()} for row in rows]  # noqa: E731
    assert strip(rows_of(killed)) == strip(rows_of(reference))


def test_requests_overlap_under_concurrency(llama_server):
    from syllabus.backends.base import ChatRequest
    from syllabus.backends.openai_backend import OpenAIBackend

    async def peak(concurrency: int) -> int:
        backend = OpenAIBackend(
            model="smollm2", base_urls=[llama_server.base_url], api_key=None, concurrency=concurrency
        )
        requests = [
            ChatRequest.from_messages([{"role": "user", "content": f"Count to {i + 3}."}], max_tokens=12, temperature=0)
            for i in range(6)
        ]
        try:
            replies = await asyncio.gather(*(backend.complete(r) for r in requests))
        finally:
            await backend.aclose()
        assert all(reply.completion_tokens > 0 for reply in replies)
        return backend.peak_in_flight

    assert asyncio.run(peak(4)) == 4  # four HTTP requests open at once against the real server
    assert asyncio.run(peak(1)) == 1  # and the bound holds


def test_unreachable_server_fails_before_any_work(make_project, tmp_path):
    from conftest import free_port

    project = make_project()
    result = run_cli(
        "generate",
        "--project",
        str(project),
        "--teacher",
        "openai:x",
        "--base-url",
        f"http://127.0.0.1:{free_port()}/v1",
    )
    assert result.returncode == 2
    assert "cannot reach the teacher server" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "runs/default/dataset").exists()
    assert not list((project / "taxonomy").rglob("subjects"))


def test_unknown_model_is_named_before_any_work(llama_server, make_project):
    project = make_project()
    result = run_cli(
        "generate", "--project", str(project), "--teacher", "openai:no-such-model", "--base-url", llama_server.base_url
    )
    assert result.returncode == 2
    assert "does not offer model 'no-such-model'" in result.stderr and "smollm2" in result.stderr
    assert "Traceback" not in result.stderr


def test_teacher_check_reports_features(llama_server, tmp_path):
    result = run_cli(
        "teacher", "check", "--teacher", "openai:smollm2", "--base-url", llama_server.base_url, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "latency_s" in result.stdout and "logprobs" in result.stdout and "json_mode" in result.stdout


@pytest.mark.parametrize("key", ["sk-test-PLANTED-abcdef123456"])
def test_api_key_never_reaches_run_files(llama_server, make_project, key):
    project = make_project()
    result = run_cli(
        "generate",
        "--project",
        str(project),
        "--nodes",
        NODE,
        "--questions",
        "1",
        *teacher_args(llama_server),
        env={"OPENAI_API_KEY": key},
    )
    assert result.returncode == 0, result.stderr
    assert key not in result.stdout + result.stderr
    for file in project.rglob("*"):
        if file.is_file():
            assert key.encode() not in file.read_bytes(), file
