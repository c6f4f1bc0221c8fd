"""The closed loop, `syllabus distill`: items kept apart, decisions, bad input, and two real rounds.

The end-to-end tests run the loop on the shipped example project, shrunk (two exam and one
dev item per node, a budget of 6 rows, one training step), with the embedded model as both
teacher and student, as a user runs it: `python -m syllabus distill`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import cli_env, run_cli, small_example, write_jsonl
from report_helpers import SUMMARY_LOOP_CHARTS, Page, assert_loop_numbers, check_in_browser, pct

from syllabus.errors import UserError
from syllabus.loop.decide import RoundScores, best_round, forgot, paired_se, stop_reason
from syllabus.loop.tailor import degenerate, pick
from syllabus.project import Project
from syllabus.students.items import load_items

NODES = [
    "chemistry/elements",
    "geography/capitals",
    "linguistics/antonyms",
    "mathematics/arithmetic",
    "physics/units",
    "reasoning/calendar",
]


# Items -----------------------------------------------------------------------------------


def test_items_keep_exam_dev_and_test_apart_by_the_question_key(tmp_path):
    folder = small_example(tmp_path / "p", exam=3, dev=2, test=2)
    items = load_items(folder / "items.jsonl", NODES)
    assert (len(items.exam), len(items.dev), len(items.test)) == (18, 12, 12)
    assert items.nodes == NODES
    held = items.held_out_keys()
    assert {p.key for p in items.dev} | {p.key for p in items.test} == set(held)
    assert not {p.key for p in items.exam} & set(held)


def test_a_file_without_splits_is_split_per_node_the_same_way_each_time(tmp_path):
    rows = [{"question": f"What is {i} plus {i}?", "answer": str(2 * i), "node": NODES[i % 2]} for i in range(40)]
    path = write_jsonl(tmp_path / "items.jsonl", rows)
    first, again = load_items(path, NODES[:2], dev_share=0.25), load_items(path, NODES[:2], dev_share=0.25)
    assert [p.question for p in first.dev] == [p.question for p in again.dev]
    assert Counter(p.node for p in first.dev) == {NODES[0]: 5, NODES[1]: 5}
    assert len(first.exam) == 30 and not first.test


def test_worked_solutions_are_kept_for_exam_items_only(tmp_path):
    rows = [
        {
            "question": "What is 12 plus 30?",
            "answer": "42",
            "node": NODES[0],
            "split": "exam",
            "solution": "12 + 30: 10 + 30 = 40, 2 + 0 = 2, so 40 + 2 = 42.",
        },
        {"question": "What is 5 plus 5?", "answer": "10", "node": NODES[0], "split": "dev", "solution": "5 + 5 = 10."},
        {"question": "What is 6 plus 6?", "answer": "12", "node": NODES[0], "split": "test", "solution": "6 + 6 = 12."},
        {"question": "What is 7 plus 7?", "answer": "14", "node": NODES[0], "split": "exam"},
    ]
    items = load_items(write_jsonl(tmp_path / "items.jsonl", rows), [NODES[0]])
    assert items.solution("what is 12 plus 30") == rows[0]["solution"]  # looked up by the question key
    assert items.solution("What is 7 plus 7?") is None
    # Dev and test solutions are never read: the loop could only train on them.
    assert items.solution("What is 5 plus 5?") is None and items.solution("What is 6 plus 6?") is None


@pytest.mark.parametrize(
    "rows, message, line",
    [
        ([{"question": "Q1?", "answer": "1", "node": "nowhere/else", "split": "exam"}], "not a selected discipline", 1),
        ([{"question": "Q1?", "answer": "1", "node": NODES[0], "split": "train"}], "unknown split", 1),
        (
            [
                {"question": "What is 1 plus 1?", "answer": "2", "node": NODES[0], "split": "exam"},
                {"question": "what is 1 PLUS 1", "answer": "2", "node": NODES[0], "split": "dev"},
            ],
            "also at",
            2,
        ),
        (
            [{"question": "Q1?", "answer": "1", "node": NODES[0], "split": "exam"}],
            f"'{NODES[0]}' has no dev item",
            None,
        ),
        (
            [
                {"question": "What is 2 plus 2?", "answer": "4", "node": NODES[0], "split": "dev"},
                {
                    "question": "What is 3 plus 4?",
                    "answer": "7",
                    "node": NODES[0],
                    "split": "exam",
                    "solution": "3 + 4 = 8.",
                },
            ],
            "does not end at the answer '7'",
            2,
        ),
        (
            [{"question": "What is 3 plus 4?", "answer": "7", "node": NODES[0], "split": "exam", "solution": 7}],
            "`solution` must be a non-empty text",
            1,
        ),
    ],
)
def test_bad_items_are_refused_naming_the_file_and_line(tmp_path, rows, message, line):
    path = write_jsonl(tmp_path / "items.jsonl", rows)
    with pytest.raises(UserError) as err:
        load_items(path, [NODES[0]])
    assert message in str(err.value)
    assert str(path) in str(err.value)
    if line:
        assert f"{path}:{line}" in str(err.value)


# Decisions -------------------------------------------------------------------------------


def scores(index: int, **dev: float) -> RoundScores:
    return RoundScores(index, dev, {n: -1.0 for n in dev})


def test_a_round_that_forgot_a_node_is_never_the_best():
    base = scores(0, a=0.8, b=0.1)
    forgetting = scores(1, a=0.5, b=0.9)  # a higher mean, bought by losing node a
    honest = scores(2, a=0.8, b=0.3)
    assert forgot(forgetting, base, 0.1) == ["a"]
    assert best_round([base, forgetting, honest], forgetting=0.1) == 2
    assert best_round([base, forgetting], forgetting=0.1) == 0  # only harm: keep the untrained student


def _answers(right: int, of: int) -> dict[str, bool]:
    return {f"q{i}": i < right for i in range(of)}


def test_a_drop_the_dev_items_cannot_tell_from_noise_is_not_forgetting():
    """15 dev items: two that flip (0.13 below the start) are within 2 SE of the paired difference;
    eight that flip (0.53) are not."""
    base = RoundScores(0, {"calendar": 2 / 15}, {"calendar": -1.0}, {"calendar": _answers(2, 15)})
    noisy = RoundScores(1, {"calendar": 0.0}, {"calendar": -1.0}, {"calendar": _answers(0, 15)})
    assert paired_se(noisy, base, "calendar") == pytest.approx(
        math.sqrt((2 * (13 / 15) ** 2 + 13 * (2 / 15) ** 2) / 14 / 15)
    )
    assert 2 * paired_se(noisy, base, "calendar") > 2 / 15
    assert forgot(noisy, base, 0.1) == []
    start = RoundScores(0, {"capitals": 10 / 15}, {"capitals": -1.0}, {"capitals": _answers(10, 15)})
    lost = RoundScores(1, {"capitals": 2 / 15}, {"capitals": -1.0}, {"capitals": _answers(2, 15)})
    assert forgot(lost, start, 0.1) == ["capitals"]
    assert best_round([start, lost], forgetting=0.1) == 0


def test_the_loop_stops_on_a_plateau_or_a_regression_and_not_before():
    assert stop_reason([scores(0, a=0.2)], plateau_rounds=2, min_gain=0.01, regression=0.15) is None
    rising = [scores(0, a=0.2), scores(1, a=0.4), scores(2, a=0.6)]
    assert stop_reason(rising, plateau_rounds=2, min_gain=0.01, regression=0.15) is None
    flat = [scores(0, a=0.2), scores(1, a=0.4), scores(2, a=0.4), scores(3, a=0.405)]
    assert "plateau" in stop_reason(flat, plateau_rounds=2, min_gain=0.01, regression=0.15)
    assert stop_reason(flat[:3], plateau_rounds=2, min_gain=0.01, regression=0.15) is None
    fall = [scores(0, a=0.6), scores(1, a=0.3)]
    assert "regression" in stop_reason(fall, plateau_rounds=5, min_gain=0.01, regression=0.15)


def test_degenerate_negatives_are_named_and_picks_are_seeded_per_node():
    assert degenerate("", "stop") == "empty"
    assert degenerate("The capital is", "length") == "cut at max_tokens"
    assert degenerate("the day is the day is the day is the day is", "stop") == "repeats itself"
    assert degenerate("The capital of Peru is Cusco.", "stop") is None
    mistakes = [{"node": NODES[i % 2], "question": f"q{i}"} for i in range(20)]
    chosen = pick(mistakes, {NODES[0]: 2, NODES[1]: 1}, seed=0, round_index=1)
    assert Counter(m["node"] for m in chosen) == {NODES[0]: 4, NODES[1]: 2}
    assert chosen == pick(mistakes, {NODES[0]: 2, NODES[1]: 1}, seed=0, round_index=1)
    assert chosen != pick(mistakes, {NODES[0]: 2, NODES[1]: 1}, seed=0, round_index=2)


# Bad input through the CLI ------------------------------------------------------------------


def test_bad_loop_settings_exit_2_with_the_file_and_line(tmp_path):
    folder = small_example(tmp_path / "p")
    config = folder / "syllabus.yaml"
    config.write_text(config.read_text().replace("    plateau_rounds: 2", "    plateau_rounds: 2\n    patience: 3"))
    done = run_cli("distill", cwd=folder)
    assert done.returncode == 2
    assert "loop.stop.patience" in done.stderr and "syllabus.yaml:" in done.stderr

    folder = small_example(tmp_path / "q")
    done = run_cli("distill", "--budget", "4", cwd=folder)
    assert done.returncode == 2 and "6 nodes" in done.stderr and "--budget" in done.stderr
    done = run_cli("distill", "--align", "--baseline", cwd=folder)
    assert done.returncode == 2 and "exclude each other" in done.stderr

    (folder / "items.jsonl").write_text(
        "".join(line + "\n" for line in (folder / "items.jsonl").read_text().splitlines() if '"dev"' not in line)
    )
    done = run_cli("distill", cwd=folder)
    assert done.returncode == 2 and "has no dev item" in done.stderr


def test_a_run_folder_of_another_loop_configuration_is_refused(tmp_path):
    from syllabus.loop.distill import DistillOptions, Loop

    folder = small_example(tmp_path / "p")
    loop = Loop(Project.load(folder), DistillOptions())
    run = loop.layout.root
    run.mkdir(parents=True)
    (run / ".syllabus-output.json").write_text('{"kind": "run"}\n')
    (run / "state.json").write_text(json.dumps({"fingerprint": {**loop.fingerprint, "budget": "0" * 16}}))
    before = (run / "state.json").read_bytes()
    done = run_cli("distill", cwd=folder)
    assert (
        done.returncode == 2
        and "another loop configuration" in " ".join(done.stderr.split())
        and "budget" in done.stderr
    )
    assert (run / "state.json").read_bytes() == before  # nothing overwritten


def test_a_setting_at_its_default_leaves_the_fingerprint_as_it_was(tmp_path):
    """What a later version adds at its default must not make an older run folder another loop's:
    the fingerprint holds settings as changed from their defaults; a changed one still tells."""
    from syllabus.loop.distill import DistillOptions, Loop

    folder = small_example(tmp_path / "p")
    project = Project.load(folder)
    plain = Loop(project, DistillOptions()).fingerprint
    config = project.config
    spelled = config.model_copy(
        update={
            "loop": config.loop.model_copy(update={"restatements": True}),
            "student": config.student.model_copy(update={"processes": 1}),
        }
    )
    assert "restatements" in spelled.loop.model_fields_set
    project.config = spelled
    assert Loop(project, DistillOptions()).fingerprint == plain
    project.config = config.model_copy(update={"loop": config.loop.model_copy(update={"restatements": False})})
    changed = Loop(project, DistillOptions()).fingerprint
    assert [k for k in plain if plain[k] != changed[k]] == ["loop"]


def test_a_dev_question_in_the_training_data_stops_the_round(tmp_path):
    from syllabus.loop import steps
    from syllabus.loop.distill import DistillOptions, Loop

    folder = small_example(tmp_path / "p")
    loop = Loop(Project.load(folder), DistillOptions())
    dev = loop.items.dev[0]
    data = loop.layout.round(1).data
    data.mkdir(parents=True)
    write_jsonl(
        data / "dataset.jsonl",
        [
            {
                "prompt": [{"role": "user", "content": dev.question}],
                "completion": [{"role": "assistant", "content": "x"}],
                "taxonomy_path": dev.node,
            }
        ],
    )
    write_jsonl(loop.layout.round(1).selected, [])
    with pytest.raises(UserError) as err:
        steps.assemble(loop, 1)
    assert "dev question" in str(err.value) and "train.jsonl:1" in str(err.value)
    assert not loop.layout.round(1).train.exists()


# Two real rounds ---------------------------------------------------------------------------


def outcome_of(run: Path) -> dict:
    """The summary without what differs between two equal runs (paths, times)."""
    summary = json.loads((run / "summary.json").read_text())
    for record in summary["rounds"]:
        record.pop("student")
    summary.pop("best_student"), summary.pop("final_student")
    return summary


@pytest.mark.slow
def test_two_rounds_write_every_record_and_the_second_budget_follows_the_first_results(two_rounds):
    folder, done = two_rounds
    run = folder / "runs" / "distill"
    summary = json.loads((run / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    for record in summary["rounds"]:
        assert set(record["nodes"]) == set(NODES)
        assert all({"dev", "exam", "dev_logprob"} <= set(block) for block in record["nodes"].values())
    for k in (1, 2):
        r = run / "rounds" / str(k)
        for name in (
            "budgets.json",
            "self-answers.jsonl",
            "corrections.jsonl",
            "selected.jsonl",
            "kept.jsonl",
            "train.jsonl",
            "pairs.jsonl",
            "round.json",
        ):
            assert (r / name).is_file(), name
        assert (r / "examination" / "results.json").is_file()
        budgets = json.loads((r / "budgets.json").read_text())
        assert sum(d["rows"] for d in budgets["decisions"]) == 6 and all(d["reason"] for d in budgets["decisions"])
        # A finished model keeps final/ and its metrics; its checkpoints (1.6 GB each) are gone.
        assert not list((r / "student").glob("*/checkpoints")) and list((r / "student").glob("*/final"))
        train = [json.loads(line) for line in (r / "train.jsonl").read_text().splitlines()]
        assert len({row["content_hash"] for row in train}) == len(train)  # no row twice
    first = json.loads((run / "rounds/1/budgets.json").read_text())["decisions"]
    second = json.loads((run / "rounds/2/budgets.json").read_text())["decisions"]
    round0 = summary["rounds"][0]["nodes"]
    # Round 1 spends by weakness on round 0's dev scores: a node failed on dev gets at least a node passed.
    rows1 = {d["node"]: d["rows"] for d in first}
    weak = [n for n in NODES if round0[n]["dev"] == 0]
    strong = [n for n in NODES if round0[n]["dev"] == 1]
    assert all(rows1[w] >= rows1[s] for w in weak for s in strong)
    assert [d["score"] for d in second] == [summary["rounds"][1]["nodes"][d["node"]]["dev"] for d in second]
    assert summary["best_student"] and summary["final_student"].endswith("final")
    assert Path(summary["final_student"]).is_dir()
    # Round 0's wrong exam answers were tried again by the student, and each candidate row says what became of it.
    tried = [json.loads(line) for line in (run / "rounds/1/self-answers.jsonl").read_text().splitlines()]
    assert tried and all(len(t["samples"]) == 4 and t["correct"] is False for t in tried)
    selected = [json.loads(line) for line in (run / "rounds/1/selected.jsonl").read_text().splitlines()]
    assert selected and all(r.get("used") or r.get("dropped") for r in selected)
    # Restart from the previous round (the default): round 2 trained round 1's student on its own kept
    # rows and a replay share (0.5) of round 1's rows it did not keep again, each once.
    kept = {
        k: [json.loads(x)["content_hash"] for x in (run / f"rounds/{k}/kept.jsonl").read_text().splitlines()]
        for k in (1, 2)
    }
    train2 = [json.loads(x) for x in (run / "rounds/2/train.jsonl").read_text().splitlines()]
    replayed = [r["content_hash"] for r in train2 if r["source"] == "replay"]
    earlier = set(kept[1]) - set(kept[2])
    assert sorted(r["content_hash"] for r in train2 if r["source"] != "replay") == sorted(kept[2])
    assert len(replayed) == round(len(earlier) * 0.5) and set(replayed) <= earlier
    # After the last round: the best and the starting student on the test items, item by item.
    test = json.loads((run / "test" / "comparison.json").read_text())
    assert test["items"] == 6 and test["best_round"] == summary["best_round"] and test["pooled"]["items"] >= 1
    assert "Round 2" in done.stdout + done.stderr and "exact McNemar" in done.stdout and "(all)" in done.stdout


@pytest.mark.slow
def test_killed_in_round_two_it_resumes_without_redoing_round_one_and_ends_the_same(two_rounds, tmp_path):
    reference, _ = two_rounds
    folder = small_example(tmp_path / "p")
    run = folder / "runs" / "distill"
    process = subprocess.Popen(
        [sys.executable, "-m", "syllabus", "distill", "--rounds", "2", "--budget", "6"],
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline and process.poll() is None:
        state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {}
        if state.get("current") == "2:train":
            break
        time.sleep(0.2)
    assert process.poll() is None, "the loop ended before round 2 trained"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    round1 = {p: p.stat().st_mtime_ns for p in (run / "rounds" / "1").rglob("*") if p.is_file()}
    cache_rows = _cache_rows(run / "cache.sqlite")

    done = run_cli("distill", "--rounds", "2", "--budget", "6", cwd=folder, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (run / "rounds" / "1").rglob("*") if p.is_file()} == round1
    assert _cache_rows(run / "cache.sqlite") == cache_rows  # round 2's requests were all answered before the kill
    assert outcome_of(run) == outcome_of(reference / "runs" / "distill")


@pytest.mark.slow
def test_the_report_of_a_real_two_round_loop_is_written_each_round_and_opens_in_the_browser(two_rounds, tmp_path):
    folder, done = two_rounds
    run = folder / "runs" / "distill"
    page = run / "report.html"
    assert page.is_file()  # distill wrote it, after the last round and the summary
    assert "could not write" not in done.stderr
    copy = shutil.copytree(run, tmp_path / "distill", ignore=shutil.ignore_patterns("final", "checkpoints", "*.sqlite"))
    dom = check_in_browser(copy / "report.html", tmp_path, SUMMARY_LOOP_CHARTS)
    assert_loop_numbers(dom, copy)
    # Killed in round 2 before its examination: the report says so and shows rounds 0 and 1.
    (copy / "rounds/2/examination/results.json").unlink()
    (copy / "rounds/2/round.json").unlink()
    result = run_cli("report", str(copy))
    assert result.returncode == 0, result.stderr
    again = Page((copy / "report.html").read_text())
    assert again.one(node="physics/units", round="2") == "missing"
    summary = json.loads((copy / "summary.json").read_text())
    assert again.one(node="physics/units", round="1") == pct(summary["rounds"][1]["nodes"]["physics/units"]["dev"])
    assert "missing examination/results.json, round.json" in (copy / "report.html").read_text()


def _cache_rows(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        return sum(
            db.execute(f"select count(*) from {t}").fetchone()[0]
            for (t,) in db.execute("select name from sqlite_master where type='table'")
        )
