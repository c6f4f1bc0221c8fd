"""Rounds: round r asks questions no other round asked, the same round again asks nothing new,
and round 0 asks exactly what a run always asked (so existing caches still answer it).
Also the generation job and the run layout the loop writes into."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli

from syllabus.errors import UserError
from syllabus.generators import job as job_module
from syllabus.generators.sampling import ROUND_STRIDE, draw, draw_style, question_sample, rng_key
from syllabus.layout import ProjectLayout, RunLayout
from syllabus.project import Project, init_project
from syllabus.taxonomy.curriculum import Session, Subject

NODE = "mathematics/linear-algebra"


def question_keys(cache_file: Path) -> set[str]:
    with sqlite3.connect(cache_file) as db:
        return {key for (key,) in db.execute("SELECT key FROM answers WHERE stage = 'question'")}


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "dataset.jsonl").read_text().splitlines()]


# Against the real server --------------------------------------------------------------
@pytest.mark.server
def test_round_one_asks_new_questions_and_its_rerun_asks_nothing(llama_server, make_project):
    project = make_project(questions=3)
    run = project / "runs/default"
    args = [
        "generate",
        "--project",
        str(project),
        "--nodes",
        NODE,
        "--teacher",
        "openai:smollm2",
        "--base-url",
        llama_server.base_url,
    ]
    first = run_cli(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    round0 = question_keys(run / "cache.sqlite")
    assert len(round0) == 3

    # `--round 0` is the same run: every request is already answered.
    sent = llama_server.wait_idle(quiet=1.0)
    again0 = run_cli(*args, "--round", "0")
    assert again0.returncode == 0, again0.stdout + again0.stderr
    assert llama_server.wait_idle(quiet=1.0) == sent
    assert rows(run / "rounds/0/data") == rows(run)

    second = run_cli(*args, "--round", "1")
    assert second.returncode == 0, second.stdout + second.stderr
    sent_by_round1 = llama_server.wait_idle(quiet=1.0) - sent
    data = run / "rounds/1/data"
    summary = json.loads((data / "summary.json").read_text())
    new = question_keys(run / "cache.sqlite") - round0
    assert len(new) == 3  # three questions round 0 never asked
    assert summary["round"] == 1 and summary["stages"]["question"]["answered"] == 3
    assert summary["stages"]["question"]["from_cache"] == 0
    assert summary["stages"]["subjects"]["requested"] == summary["stages"]["syllabus"]["requested"] == 0
    assert sent_by_round1 == sum(stage["answered"] for stage in summary["stages"].values())
    made = rows(data)
    assert made and {row["round"] for row in made} == {1} and {row["round"] for row in rows(run)} == {0}
    assert not (data / "cache.sqlite").exists()  # the run's rounds share one cache

    before = llama_server.wait_idle(quiet=1.0)
    third = run_cli(*args, "--round", "1")
    assert third.returncode == 0, third.stdout + third.stderr
    assert llama_server.wait_idle(quiet=1.0) == before  # the same round again sends no request
    rerun = json.loads((data / "summary.json").read_text())
    assert sum(stage["answered"] for stage in rerun["stages"].values()) == 0
    assert rows(data) == made


# The question RNG ---------------------------------------------------------------------
SUBJECTS = [Subject("Mechanics", sessions=[Session(f"s{i}", [f"c{i}.{j}" for j in range(5)]) for i in range(5)])]


def drawn(index: int, round_index: int | None = None):
    extra = {} if round_index is None else {"round_index": round_index}
    return (
        draw(SUBJECTS, index, seed=3, node_path="physics/mechanics", concepts=(1, 5), two_session_ratio=0.3, **extra),
        draw_style(
            seed=3,
            node_path="physics/mechanics",
            index=index,
            bloom={"apply": 1, "create": 1},
            strategies={"direct": 1, "step_by_step": 1},
            **extra,
        ),
    )


def test_round_zero_keeps_the_historical_seed_and_sample_index():
    assert rng_key(3, "a/b", 7, 0) == "3:a/b:7"  # the seed every existing run was drawn with
    assert [question_sample(k, 0) for k in range(5)] == list(range(5))
    assert [drawn(k, 0) for k in range(30)] == [drawn(k) for k in range(30)]


def test_each_round_draws_its_own_questions_the_same_each_time():
    for round_index in (1, 2):
        assert [drawn(k, round_index) for k in range(30)] == [drawn(k, round_index) for k in range(30)]
    differ = sum(drawn(k, 0) != drawn(k, 1) for k in range(30))
    assert differ >= 25  # a few draws may coincide; their requests still differ by sample index
    assert question_sample(4, 1) == ROUND_STRIDE + 4 != question_sample(4, 0)
    with pytest.raises(ValueError):
        question_sample(ROUND_STRIDE, 0)


# The job --------------------------------------------------------------------------------
@pytest.fixture
def project(tmp_path) -> Project:
    return Project.load(init_project(tmp_path / "proj"))


def test_prepare_makes_a_frozen_job_with_a_budget_and_round(project, tmp_path):
    job = job_module.prepare(project, job_module.GenerateOptions(questions=10, round=2))
    assert sum(job.budget.values()) == 10 and set(job.budget) == {n.path for n in job.disciplines}
    layout = RunLayout(project.runs_dir / "default")
    assert job.out_dir == layout.round(2).data and job.cache_file == layout.cache and job.round == 2
    with pytest.raises(AttributeError):
        job.round = 3  # frozen
    with pytest.raises(TypeError):
        job.budget[NODE] = 99  # type: ignore[index]
    assert project.config.generation.questions == 24  # the project's settings were not touched


def test_a_budget_per_node_is_taken_as_given(project):
    budget = {NODE: 5, "humanities/ethics": 0}
    job = job_module.prepare(project, job_module.GenerateOptions(nodes=[NODE, "humanities/ethics"], budget=budget))
    assert dict(job.budget) == budget and job.settings.questions == 5
    with pytest.raises(UserError, match="not a selected discipline"):
        job_module.prepare(project, job_module.GenerateOptions(nodes=[NODE], budget={"humanities/ethics": 1}))
    with pytest.raises(UserError, match="whole number >= 0"):
        job_module.prepare(project, job_module.GenerateOptions(nodes=[NODE], budget={NODE: -1}))


def test_a_node_given_no_rows_costs_no_request(project):
    """A round may give a node no GLAN rows (its budget went to corrections): neither its subjects
    nor its syllabi are asked for, in the plan or in the run."""
    budget = {NODE: 3, "humanities/ethics": 0}
    options = job_module.GenerateOptions(nodes=[NODE, "humanities/ethics"], budget=budget)
    plan = job_module.dry_run(project, options)["stages"]
    alone = job_module.dry_run(project, job_module.GenerateOptions(nodes=[NODE], budget={NODE: 3}))["stages"]
    assert plan == alone and plan["subjects"]["requests"] > 0


def test_relative_paths_start_where_the_caller_says_not_at_the_current_folder(project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the library must not look here
    job = job_module.prepare(project, job_module.GenerateOptions(run_dir=Path("mine")))
    assert job.out_dir == project.root / "mine" and job.command == "syllabus generate"
    elsewhere = tmp_path / "elsewhere"
    job = job_module.prepare(
        project,
        job_module.GenerateOptions(run_dir=Path("mine"), relative_to=elsewhere, command="syllabus generate --run mine"),
    )
    assert job.out_dir == elsewhere / "mine" and job.command == "syllabus generate --run mine"


def test_the_layout_names_every_folder_of_a_run(tmp_path):
    run = RunLayout(tmp_path / "runs/r")
    assert run.cache == tmp_path / "runs/r/cache.sqlite" and run.state == tmp_path / "runs/r/state.json"
    k = run.round(3)
    assert (k.data, k.student, k.examination, k.pairs, k.budgets, k.corrections, k.train, k.record) == tuple(
        tmp_path / "runs/r/rounds/3" / name
        for name in (
            "data",
            "student",
            "examination",
            "pairs.jsonl",
            "budgets.json",
            "corrections.jsonl",
            "train.jsonl",
            "round.json",
        )
    )
    assert run.data() == run.root and run.data(3) == k.data
    with pytest.raises(ValueError):
        run.round(-1)
    layout = ProjectLayout(tmp_path, tmp_path / "runs")
    assert layout.student("sft", "train") == tmp_path / "students/sft-train"
    assert layout.exam("students/sft-train/final") == tmp_path / "exams/sft-train"
    assert layout.exam("embedded") == tmp_path / "exams/embedded"


@pytest.mark.slow
def test_eval_writes_inside_the_project_by_default_not_the_current_folder(project, tmp_path, embedded_dir):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probes = tmp_path / "probes.jsonl"
    probes.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "4", "node": NODE}) + "\n")
    result = run_cli(
        "eval", "--probes", str(probes), "--max-tokens", "8", "--project", str(project.root), cwd=elsewhere
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project.root / "exams/embedded/results.json").is_file()
    assert not (elsewhere / "exams").exists()
