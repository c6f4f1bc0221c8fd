"""`syllabus mix`: recipes, the seeded choice of rows, the orders, the summary, bad recipes.

Sources are run folders and JSONL files made here from rows in the generator's format.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli
from test_stats import ALG, ETH, MECH, make_row, make_run, write_jsonl

from syllabus.data.levels import bloom_rank, difficulty_rank, level_rank
from syllabus.data.mix import (
    load_recipe,
    matches,
    mix,
    order_rows,
    prepare,
    requested,
)
from syllabus.errors import UserError

LIN = "mathematics/linear-algebra"


def write_recipe(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def rounds(tmp_path):
    """Round 0 (a run) and round 1 (a run with bloom_level, sharing one row with round 0)."""
    r0 = [make_row(ALG, i, f"Round zero algebra question {i}?") for i in range(6)]
    r0 += [make_row(ETH, i, f"Round zero ethics question {i}?", level="high school") for i in range(3)]
    r1 = [
        make_row(
            ALG,
            i,
            f"Round one algebra question {i}?",
            round_index=1,
            bloom_level=("remember", "apply", "create")[i % 3],
        )
        for i in range(4)
    ]
    r1 += [
        make_row(
            LIN,
            i,
            f"Round one linear algebra question {i}?",
            round_index=1,
            bloom_level="analyse",
            difficulty="two-session",
        )
        for i in range(5)
    ]
    r1.append(dict(r0[0]))  # the same row (same content_hash) in both rounds
    make_run(tmp_path / "runs" / "round0", r0)
    make_run(tmp_path / "runs" / "round1", r1)
    return tmp_path


# The recipe ---------------------------------------------------------------------------
def test_shares_become_rows_by_largest_remainder(tmp_path):
    recipe, _ = load_recipe(
        write_recipe(
            tmp_path,
            """
total: 10
sources: [a.jsonl]
nodes:
  - {match: a, share: 0.5}
  - {match: b, share: 0.25}
  - {match: c, share: 0.25}
""",
        )
    )
    assert requested(recipe) == {0: 5, 1: 3, 2: 2}
    recipe, _ = load_recipe(
        write_recipe(
            tmp_path,
            """
total: 9
sources: [a.jsonl]
nodes:
  - {match: a, count: 4}
  - {match: b, share: 0.3}
  - {match: c, share: 0.3}
""",
        )
    )
    assert requested(recipe) == {0: 4, 1: 3, 2: 2}  # shares: round(9 * 0.6) = 5 rows, 2.5 + 2.5 -> 3 + 2


@pytest.mark.parametrize(
    "body, message, line",
    [
        (
            "total: 10\nsources: [a.jsonl]\nnodes:\n  - match: x\n    share: 1.5\n",
            "'nodes[0].share': Input should be less than or equal to 1",
            5,
        ),
        (
            "total: 10\nsources: [a.jsonl]\nnodes:\n  - match: x\n    count: 1\n  - match: y\n    share: 0\n",
            "'nodes[1].share': Input should be greater than 0",
            7,
        ),
        (
            "sources: [a.jsonl]\nnodes:\n  - match: x\n    count: 2\n    share: 0.5\n",
            "give either count (rows) or share (a fraction of total), not both",
            3,
        ),
        ("sources: [a.jsonl]\nnodes:\n  - match: x\n", "not neither", 3),
        ("sources: [a.jsonl]\nnodes:\n  - match: x\n    share: 0.5\n", "needs a total", 4),
        (
            "total: 4\nsources: [a.jsonl]\nnodes:\n  - {match: x, count: 3}\n  - {match: y, count: 2}\n",
            "asks for 5 rows",
            1,
        ),
        (
            "total: 4\nsources: [a.jsonl]\nnodes:\n  - {match: x, share: 0.7}\n  - {match: y, share: 0.6}\n",
            "shares add up to 1.3",
            3,
        ),
        ("sources: [a.jsonl]\norder: random\nnodes:\n  - {match: x, count: 1}\n", "'order'", 2),
        ("sources: []\nnodes:\n  - {match: x, count: 1}\n", "'sources'", 1),
        ("sources: [a.jsonl]\nnodes:\n  - {match: x, count: 1}\nweights: 3\n", "'weights': Extra inputs", 4),
    ],
)
def test_bad_recipes_name_the_line(tmp_path, body, message, line):
    path = write_recipe(tmp_path, body)
    with pytest.raises(UserError) as caught:
        load_recipe(path)
    assert message in str(caught.value)
    assert caught.value.where == f"{path}:{line}"


def test_globs_match_the_node_and_its_ancestors():
    assert matches("mathematics/algebra", "mathematics/*") and matches("mathematics/algebra", "mathematics")
    assert matches("natural-sciences/physics/mechanics", "natural-sciences/physics")
    assert matches("mathematics/algebra", "*/algebra") and not matches("mathematics/algebra", "math")
    assert not matches("", "*")


# Ordering -----------------------------------------------------------------------------
def ordering_rows() -> list[dict]:
    rows = []
    for i, (bloom, level, difficulty) in enumerate(
        [
            ("create", "undergraduate", "single-session"),
            ("remember", "graduate", "two-session"),
            ("remember", "high school", "two-session"),
            ("remember", "high school", "single-session"),
            ("apply", "undergraduate", "single-session"),
            ("analyse", "high school", "two-session"),
            ("understand", "graduate", "single-session"),
            ("evaluate", "undergraduate", "two-session"),
            ("remember", "undergraduate", "single-session"),
            ("apply", "undergraduate", "two-session"),
        ]
    ):
        rows.append(make_row(ALG, i, f"Question {i}?", level=level, difficulty=difficulty, bloom_level=bloom))
    return rows


def test_easy_to_hard_sorts_bloom_then_level_then_difficulty():
    rows = ordering_rows()
    ordered = order_rows(rows, "easy_to_hard", seed=1)
    keys = [(bloom_rank(r["bloom_level"]), level_rank(r["level"]), difficulty_rank(r["difficulty"])) for r in ordered]
    assert keys == sorted(keys) and sorted(r["question_index"] for r in ordered) == list(range(10))
    assert [r["question_index"] for r in ordered[:4]] == [3, 2, 8, 1]
    assert ordered[-1]["question_index"] == 0  # create
    assert rows[0]["question_index"] == 0  # the input list is not touched
    # Without the bloom_level column (rows from before it existed): level, then difficulty.
    plain = [{k: v for k, v in r.items() if k != "bloom_level"} for r in rows]
    ordered = order_rows(plain, "easy_to_hard", seed=1)
    keys = [(level_rank(r["level"]), difficulty_rank(r["difficulty"])) for r in ordered]
    assert keys == sorted(keys)
    assert [r["level"] for r in ordered[:3]] == ["high school"] * 3 and ordered[0]["difficulty"] == "single-session"


def test_shuffled_is_a_seeded_permutation():
    rows = [make_row(ALG, i, f"Question {i}?") for i in range(30)]
    first, again, other = (order_rows(rows, "shuffled", seed=s) for s in (5, 5, 6))
    assert [r["question_index"] for r in first] == [r["question_index"] for r in again]
    assert [r["question_index"] for r in first] != [r["question_index"] for r in other]
    assert sorted(r["question_index"] for r in first) == list(range(30))
    with pytest.raises(UserError, match="unknown order"):
        order_rows(rows, "alphabetical", seed=1)


def test_interleaved_round_robins_subjects_in_rising_level():
    rows = [make_row(ALG, i, f"a{i}", subject="Algebra I") for i in range(3)]
    rows += [make_row(LIN, i, f"l{i}", subject="Matrices") for i in range(2)]
    rows += [make_row(ETH, i, f"e{i}", subject="Ethics", level="high school") for i in range(2)]
    rows += [make_row(ETH, 5 + i, f"m{i}", subject="Morals", level="high school") for i in range(2)]
    rows += [make_row(MECH, i, f"g{i}", subject="Mechanics", level="graduate") for i in range(2)]
    ordered = order_rows(rows, "interleaved", seed=3)
    assert [level_rank(r["level"]) for r in ordered] == sorted(level_rank(r["level"]) for r in ordered)
    subjects = [r["subject"] for r in ordered]
    assert subjects == [
        "Ethics",
        "Morals",
        "Ethics",
        "Morals",
        "Algebra I",
        "Matrices",
        "Algebra I",
        "Matrices",
        "Algebra I",
        "Mechanics",
        "Mechanics",
    ]


# Mixing -------------------------------------------------------------------------------
RECIPE = """
seed: 11
order: easy_to_hard
total: 20
sources:
  - runs/round0
  - runs/round1/dataset.jsonl
nodes:
  - match: mathematics/linear-algebra   # narrow first: it keeps its rows from the glob below
    count: 3
  - match: "mathematics/*"
    share: 0.5
  - match: humanities
    count: 5
"""


def test_mix_delivers_what_was_asked_and_says_why_a_node_is_short(rounds):
    recipe = write_recipe(rounds, RECIPE)
    outcome = mix(recipe)
    out = rounds / "recipe"
    lin, maths, hum = outcome.entries
    assert (lin.requested, lin.available, lin.delivered, lin.why()) == (3, 5, 3, None)
    # mathematics/*: 10 algebra rows (6 + 4, the shared one once); the 5 linear-algebra rows
    # belong to the first entry, even the 2 it did not take
    assert (maths.requested, maths.matching, maths.taken_earlier, maths.available, maths.delivered) == (
        10,
        15,
        5,
        10,
        10,
    )
    assert maths.nodes == {ALG: {"available": 10, "delivered": 10}}
    assert (hum.requested, hum.available, hum.delivered) == (5, 3, 3)
    assert hum.why() == "not enough rows in the sources: 3 available"

    summary = json.loads((out / "mix.json").read_text())
    assert (summary["requested"], summary["delivered"], summary["short"]) == (18, 16, 2)
    assert summary["duplicates_skipped"] == 1
    assert [s["pooled"] for s in summary["sources"]] == [9, 9]
    assert [e["why"] for e in summary["entries"]] == [None, None, "not enough rows in the sources: 3 available"]
    assert summary["entries"][2]["short"] == 2 and summary["nodes"][ETH] == 3

    from datasets import load_from_disk

    dataset = load_from_disk(str(out / "dataset"))
    assert len(dataset) == 16
    # round 0 rows have no bloom_level; the column still reaches the dataset (None where absent)
    assert "bloom_level" in dataset.column_names and "mix_source" in dataset.column_names
    jsonl = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()]
    assert [r["content_hash"] for r in jsonl] == dataset["content_hash"]
    assert len({r["content_hash"] for r in jsonl}) == 16
    assert Counter(r["mix_source"] for r in jsonl)["runs/round0"] >= 3  # the ethics rows come from round 0
    keys = [(bloom_rank(r["bloom_level"]), level_rank(r["level"]), difficulty_rank(r["difficulty"])) for r in jsonl]
    assert keys == sorted(keys)

    again = mix(recipe, rounds / "again")  # same recipe, same seed: the same rows in the same order
    assert [r["content_hash"] for r in again.rows] == [r["content_hash"] for r in jsonl]


def test_first_matching_entry_owns_a_row(rounds):
    shadowed = write_recipe(
        rounds,
        """
sources: [runs/round1]
nodes:
  - {match: "mathematics/*", count: 2}
  - {match: mathematics/linear-algebra, count: 2}
""",
    )
    with pytest.raises(UserError, match="belongs to an earlier entry") as caught:
        prepare(shadowed)
    assert caught.value.where == f"{shadowed}:4"


def test_bad_sources_and_outputs_fail_before_any_work(rounds):
    missing = write_recipe(rounds, "sources:\n  - runs/round0\n  - runs/round9\nnodes:\n  - {match: '*', count: 1}\n")
    with pytest.raises(UserError, match="source not found") as caught:
        prepare(missing)
    assert caught.value.where == f"{missing}:3"
    into_source = write_recipe(rounds, "sources: [runs/round0]\nout: runs/round0\nnodes:\n  - {match: '*', count: 1}\n")
    with pytest.raises(UserError, match="would overwrite the source"):
        prepare(into_source)
    with pytest.raises(UserError, match="would overwrite the source"):
        prepare(
            write_recipe(rounds, "sources: [runs/round0/dataset]\nnodes:\n  - {match: '*', count: 1}\n"),
            out=rounds / "runs" / "round0",
        )
    write_jsonl(rounds / "chat.jsonl", [{"messages": [{"role": "user", "content": "hi"}], "taxonomy_path": ALG}])
    formats = write_recipe(rounds, "sources: [runs/round0, chat.jsonl]\nnodes:\n  - {match: '*', count: 1}\n")
    with pytest.raises(UserError, match="different formats"):
        prepare(formats)
    assert not (rounds / "recipe").exists()


# The command --------------------------------------------------------------------------
def test_cli_mix_prints_requested_against_delivered(rounds):
    write_recipe(rounds, RECIPE)
    result = run_cli("mix", "recipe.yaml", "--out", "mixes/r01", cwd=rounds)
    assert result.returncode == 0, result.stdout + result.stderr
    for text in (
        "Mix: 16 of 18 rows requested (total 20)",
        "mathematics/* (share 0.5)",
        "not enough rows in the sources: 3 available",
        "wrote 16 rows",
        "1 duplicate row(s) skipped",
    ):
        assert text in result.stdout, text
    assert "1 entry is short" in result.stderr
    assert json.loads((rounds / "mixes" / "r01" / "mix.json").read_text())["delivered"] == 16
    stats = run_cli("stats", "mixes/r01", "--no-charts", cwd=rounds)  # a mix is a run folder to `stats`
    assert stats.returncode == 0, stats.stdout + stats.stderr
    assert "16 rows in" in stats.stdout and "runs/round0" in stats.stdout


@pytest.mark.parametrize(
    "body, message, line",
    [
        (
            "total: 10\nsources: [runs/round0]\nnodes:\n  - match: humanities\n    share: 1.5\n",
            "share': Input should be less than or equal to 1",
            5,
        ),
        (
            "sources:\n  - runs/round0\n  - runs/gone\nnodes:\n  - {match: humanities, count: 1}\n",
            "source not found",
            3,
        ),
        (
            "sources: [runs/round0]\nnodes:\n  - {match: humanities, count: 1}\n  - {match: 'biology/*', count: 1}\n",
            "node pattern 'biology/*' matches no row in the sources",
            4,
        ),
    ],
)
def test_cli_mix_bad_recipe_exits_2_before_any_work(rounds, body, message, line):
    write_recipe(rounds, body)
    result = run_cli("mix", "recipe.yaml", cwd=rounds)
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr.replace("\n", " ")
    assert message in err and f"recipe.yaml:{line}" in err
    assert "Traceback" not in result.stderr + result.stdout
    assert not (rounds / "recipe").exists()


def test_dry_run_writes_nothing(rounds):
    outcome = mix(write_recipe(rounds, RECIPE), write=False)
    assert (outcome.summary["requested"], outcome.summary["delivered"]) == (18, 16) and not outcome.outputs
    assert not (rounds / "recipe").exists()
