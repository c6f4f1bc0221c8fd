"""Bad input to the student commands, and the graders: fast, no model is trained."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from syllabus.students.examine import grade
from syllabus.students.probes import Probe, load_probes


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d.joinpath("x.jsonl").write_text('{"foo": "bar"}\n'), "none of the SFT formats"),
        (lambda d: d.joinpath("x.jsonl").write_text(""), "dataset is empty"),
        (lambda d: d.joinpath("x.jsonl").write_text('{"prompt": "a"}\nnot json\n'), "line 2 is not valid JSON"),
    ],
)
def test_bad_training_data_is_named(tmp_path, make, message):
    make(tmp_path)
    result = run_cli("train", "sft", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_dpo_without_pairs_names_the_missing_columns(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    result = run_cli("train", "dpo", str(tmp_path / "x.jsonl"), cwd=tmp_path)
    assert result.returncode == 2 and "chosen, rejected" in result.stderr


@pytest.mark.parametrize("folder_kind", ["missing", "not-causal"])
def test_student_that_is_not_a_causal_lm_is_refused(tmp_path, folder_kind):
    (tmp_path / "x.jsonl").write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    student = tmp_path / "model"
    if folder_kind == "not-causal":
        student.mkdir()
        (student / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    result = run_cli("train", "sft", str(tmp_path / "x.jsonl"), "--student", str(student), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert ("not a causal language model" if folder_kind == "not-causal" else "no config.json") in result.stderr


def test_broken_probe_file_names_the_line(tmp_path):
    file = tmp_path / "probes.jsonl"
    file.write_text(
        json.dumps({"question": "What is 2+2?", "answer": "4"}) + "\n" + json.dumps({"question": "x"}) + "\n"
    )
    result = run_cli("eval", "--probes", str(file), cwd=tmp_path)
    assert result.returncode == 2 and f"{file}:2" in result.stderr and "no answer" in result.stderr


@pytest.mark.parametrize(
    "reference, answer, expected",
    [
        ("42", "Adding them gives 40 + 2 = 42.", ("numeric", True)),
        ("1,000", "The total is 1000", ("numeric", True)),
        ("42", "It is 41.", ("numeric", False)),
        ("Paris", "The capital is Paris.", ("short", True)),
        ("Paris", "The capital is Lyon.", ("short", False)),
        ("A long reference answer that explains many things in detail here", "whatever", ("long", None)),
    ],
)
def test_grading_of_short_and_numeric_answers(reference, answer, expected):
    assert grade(reference, answer) == expected


def test_multiple_choice_probes_load_by_letter_index_or_text(tmp_path):
    file = tmp_path / "mc.jsonl"
    rows = [
        {"question": "2+2?", "options": ["3", "4"], "correct": "B", "node": "math"},
        {"question": "Sky?", "options": ["blue", "green"], "correct": 0},
        {"question": "Sun?", "options": ["star", "planet"], "correct": "star"},
    ]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    probes = load_probes(file)
    assert [p.answer for p in probes] == ["4", "blue", "star"]
    assert probes[0] == Probe("2+2?", "4", "math", ["3", "4"], 1)
