"""The data layer under both sides: what a row says, one key for dedup / decontamination /
probe leaks, one reader for every format, and the commands that read through it.

Rows and files are made here; only the test marked slow loads the embedded student.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import run_cli
from test_mix import RECIPE, rounds, write_recipe  # noqa: F401 - `rounds` is a fixture
from test_stats import ALG, ETH, make_row, make_run, run_rows, write_jsonl

from syllabus.data.keys import content_hash, normalise, question_key, words
from syllabus.data.rows import answer_of, question_of
from syllabus.errors import UserError
from syllabus.generators.filters import decontaminate, exact
from syllabus.outdir import MARKER, owner
from syllabus.students.probes import Probe, assert_no_probe_leak

SYSTEM = {"role": "system", "content": "You are a helpful, knowledgeable assistant."}


def parts(text: str) -> list[dict]:
    return [{"type": "text", "text": text}]


# What a row says -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "row, question, answer",
    [
        (
            {
                "prompt": [SYSTEM, {"role": "user", "content": "Q?"}],
                "completion": [{"role": "assistant", "content": "A."}],
            },
            "Q?",
            "A.",
        ),
        ({"prompt": "Q?", "completion": "A."}, "Q?", "A."),  # TRL's standard (plain text) prompt-completion
        ({"messages": [SYSTEM, {"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}, "Q?", "A."),
        (
            {"messages": [{"role": "user", "content": parts("Q?")}, {"role": "assistant", "content": parts("A.")}]},
            "Q?",
            "A.",
        ),  # OpenAI content parts
        (
            {
                "prompt": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}, *parts("Q?")]}
                ],
                "completion": [{"role": "assistant", "content": "A."}],
            },
            "Q?",
            "A.",
        ),  # a non-text part is skipped
        ({"question": "Q?", "answer": 4}, "Q?", "4"),  # probe files, evaluation sets
        ({"problem": "Q?", "solution": "x"}, "Q?", ""),
        ({"prompt": None, "question": "Q?", "completion": None, "answer": "A."}, "Q?", "A."),  # a mix's None columns
        ({"prompt": 7, "completion": {"odd": True}}, "7", ""),
    ],
)
def test_question_and_answer_of_every_row_format(row, question, answer):
    assert (question_of(row), answer_of(row)) == (question, answer)


def test_content_hash_is_the_one_generated_rows_carry():
    # The value every dataset written so far holds; mix recognises a row pooled twice by it.
    assert content_hash("What is a group?", "A set with an operation.") == "9ac1a119b57d74d0"


def test_a_probe_differing_in_case_punctuation_and_unicode_is_caught_by_dedup_and_leak_check(tmp_path):
    """Dedup, decontamination and the leak check normalise alike: NFKC (the ligature and the
    full-width letters), case, punctuation and spacing. Before, the leak check had no NFKC."""
    trained = "Ｗhat is the ﬁrst isomorphism theorem?"
    probe = "what is the FIRST isomorphism theorem"
    assert normalise(trained) == normalise(probe) and question_key(trained) == question_key(probe)
    rows = [make_row(ALG, 0, trained), make_row(ALG, 1, probe, "Another answer.")]
    assert exact.find(rows) == {1: ("exact_duplicate", f"same question as {ALG}#0")}
    eval_set = decontaminate.EvalSet("evals", tmp_path / "evals.jsonl", "question", [probe])
    overlap = f"overlaps evals question 1 ({len(words(probe))} words shared: '{normalise(probe)}')"
    assert decontaminate.find(rows[:1], [eval_set])[0] == {0: ("contaminated", overlap)}
    from datasets import Dataset

    with pytest.raises(UserError, match="1 probe question"):
        assert_no_probe_leak(Dataset.from_list(rows[:1]), [Probe(probe, "x")], tmp_path)

    # And through the command, before any model loads (--student names no model at all).
    data = write_jsonl(tmp_path / "train.jsonl", rows[:1])
    probes = write_jsonl(tmp_path / "probes.jsonl", [{"question": probe, "answer": "x"}])
    result = run_cli(
        "train",
        "sft",
        str(data),
        "--probes",
        str(probes),
        "--student",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "1 probe question(s) found in the training set" in result.stderr and "Traceback" not in result.stderr


# Output folders the tool did not make (issue 10, defect 3) -------------------------------------
def test_cli_mix_refuses_an_out_folder_it_did_not_make(rounds):
    write_recipe(rounds, RECIPE)
    mine = rounds / "mine"
    (mine / "dataset").mkdir(parents=True)
    (mine / "dataset" / "thesis.txt").write_text("years of work")
    (mine / "notes.md").write_text("notes")
    result = run_cli("mix", "recipe.yaml", "--out", "mine", cwd=rounds)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not made by syllabus" in result.stderr and "--out" in result.stderr and "Traceback" not in result.stderr
    assert (mine / "dataset" / "thesis.txt").read_text() == "years of work"
    assert sorted(p.name for p in mine.rglob("*")) == ["dataset", "notes.md", "thesis.txt"]
    # A folder mix made is its own: the same command again replaces its dataset.
    for _ in range(2):
        again = run_cli("mix", "recipe.yaml", "--out", "mixes/r1", cwd=rounds)
        assert again.returncode == 0, again.stdout + again.stderr
    assert owner(rounds / "mixes" / "r1") == "mix"
    # A run folder is claimed by generate, not mix.
    run = rounds / "runs" / "claimed"
    run.mkdir()
    (run / MARKER).write_text(json.dumps({"kind": "run"}))
    refused = run_cli("mix", "recipe.yaml", "--out", "runs/claimed", cwd=rounds)
    assert refused.returncode == 2 and "holds a syllabus run, not a mix" in refused.stderr


def test_cli_stats_refuses_an_out_folder_it_did_not_make(tmp_path):
    source = write_jsonl(tmp_path / "old.jsonl", [make_row(ALG, i, f"Question {i}?") for i in range(3)])
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "bloom.png").write_bytes(b"my picture")
    (photos / "level.png").write_bytes(b"another")
    result = run_cli("stats", str(source), "--out", str(photos))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not made by syllabus" in result.stderr and "Traceback" not in result.stderr
    assert (photos / "bloom.png").read_bytes() == b"my picture" and (photos / "level.png").read_bytes() == b"another"
    assert sorted(p.name for p in photos.iterdir()) == ["bloom.png", "level.png"]
    # A stats folder an older version wrote (stats.json, no marker) is taken, its stale chart removed.
    older = tmp_path / "older"
    older.mkdir()
    (older / "stats.json").write_text("{}")
    (older / "bloom.png").write_bytes(b"stale")
    result = run_cli("stats", str(source), "--out", str(older))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (older / "bloom.png").exists() and owner(older) == "stats"
    assert json.loads((older / "stats.json").read_text())["rows"] == 3


# Rows TRL accepts, and odd ones (issue 10, defect 16) ---------------------------------------------
def string_rows(node: str = ALG, n: int = 4) -> list[dict]:
    return [
        {
            "prompt": f"Question {i} about {node}?",
            "completion": f"Answer {i}.",
            "taxonomy_path": node,
            "question_index": i,
        }
        for i in range(n)
    ]


def parts_rows(node: str = ETH, n: int = 4) -> list[dict]:
    return [
        {
            "prompt": [SYSTEM, {"role": "user", "content": parts(f"Ethics question {i}?")}],
            "completion": [{"role": "assistant", "content": parts(f"Ethics answer {i}.")}],
            "taxonomy_path": node,
            "question_index": i,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("make", [string_rows, parts_rows], ids=["string-prompt-completion", "content-parts"])
def test_cli_probes_split_stats_and_mix_read_what_trl_accepts(tmp_path, make):
    from datasets import load_from_disk

    rows = make(n=6)
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    split = run_cli("probes", "split", str(data), "--fraction", "0.5")
    assert split.returncode == 0, split.stdout + split.stderr
    probes = [json.loads(line) for line in (tmp_path / "probes.jsonl").read_text().splitlines()]
    train = load_from_disk(str(tmp_path / "train"))
    assert len(probes) == 3 and len(train) == 3
    questions = {question_of(r) for r in rows}
    assert {p["question"] for p in probes} <= questions and all(
        p["answer"].startswith(("Answer", "Ethics answer")) for p in probes
    )
    assert not {p["question"] for p in probes} & {question_of(r) for r in train}

    stats = run_cli("stats", str(data), "--no-charts")
    assert stats.returncode == 0, stats.stdout + stats.stderr
    saved = json.loads((tmp_path / "data-stats" / "stats.json").read_text())
    assert saved["rows"] == 6 and saved["lengths"]["question_words"]["min"] >= 3
    assert saved["lengths"]["answer_words"]["max"] == (2 if make is string_rows else 3)

    node = rows[0]["taxonomy_path"]
    write_recipe(tmp_path, f"sources: [data.jsonl]\nnodes:\n  - {{match: '{node}', count: 4}}\n")
    mixed = run_cli("mix", "recipe.yaml", "--out", "mixed", cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stdout + mixed.stderr
    assert len(load_from_disk(str(tmp_path / "mixed" / "dataset"))) == 4


def test_cli_stats_reads_rows_of_mixed_types_and_mix_names_the_one_that_breaks_a_column(tmp_path):
    rows = string_rows(n=2) + parts_rows(node=ALG, n=2)
    rows[0]["level"], rows[1]["level"] = 3, "high school"
    rows[2]["bloom_level"] = ["apply"]
    data = write_jsonl(tmp_path / "data.jsonl", rows)
    stats = run_cli("stats", str(data), "--no-charts")
    assert stats.returncode == 0, stats.stdout + stats.stderr
    saved = json.loads((tmp_path / "data-stats" / "stats.json").read_text())
    assert saved["rows"] == 4 and saved["level"] == {"3": 1, "high school": 1, "(none)": 2}
    assert saved["lengths"]["question_words"]["count"] == 4

    write_recipe(tmp_path, f"seed: 1\nsources: [data.jsonl]\nnodes:\n  - {{match: '{ALG}', count: 4}}\n")
    result = run_cli("mix", "recipe.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    err = result.stderr.replace("\n", " ")
    assert f"{data}:" in err and "column 'level' is text here but a number in data.jsonl line 1" in err
    assert "Traceback" not in result.stderr and not (tmp_path / "recipe" / "dataset").exists()


def test_truncated_parquet_is_a_clear_error_for_every_command(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(string_rows(n=50)), file)
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    (tmp_path / "recipe.yaml").write_text(f"sources: [data.parquet]\nnodes:\n  - {{match: '{ALG}', count: 1}}\n")
    for args in (
        ["stats", str(file), "--no-charts"],
        ["train", "sft", str(file), "--out", str(tmp_path / "o")],
        ["probes", "split", str(file)],
        ["mix", "recipe.yaml", "--dry-run"],
    ):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout + result.stderr)
        assert "cannot read as Parquet" in result.stderr and "data.parquet" in result.stderr, args
        assert "Traceback" not in result.stderr, args


def test_cli_train_names_a_bad_row_anywhere_before_any_model_loads(tmp_path):
    """TRL found a bad row past the first 1000 only after the model loaded. Now every row is
    checked first: --student names no model, so reaching the model would be another error."""
    good = {"prompt": [{"role": "user", "content": "Q?"}], "completion": [{"role": "assistant", "content": "A."}]}
    cases = {
        "late-empty": (
            [good] * 1500 + [{**good, "completion": [{"role": "assistant", "content": 5}]}],
            ":1501",
            "line 1501: 'completion' has a message without role or text content",
        ),
        "mixed-formats": (
            [good, good, {"prompt": "Q?", "completion": "A."}],
            ":3",
            "line 3: 'prompt' is text here but messages in line 1",
        ),
        "image-part": (
            [
                good,
                {**good, "prompt": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            ],
            ":2",
            "line 2: 'prompt' has a content part of type 'image_url'",
        ),
        "mixed-column": (
            [{**good, "level": 1}, {**good, "level": "two"}],
            ":2",
            "line 2: column 'level' is text here but a number in line 1",
        ),
    }
    for name, (rows, where, message) in cases.items():
        data = write_jsonl(tmp_path / f"{name}.jsonl", rows)
        start = time.monotonic()
        result = run_cli(
            "train", "sft", str(data), "--student", str(tmp_path / "no-model"), "--out", str(tmp_path / "out")
        )
        assert result.returncode == 2, (name, result.stdout + result.stderr)
        err = result.stderr.replace("\n", " ")
        assert f"{data}{where}" in err and message in err, (name, err)
        assert "Traceback" not in err and "no config.json" not in err
        assert time.monotonic() - start < 60
    # A saved dataset names the row by its index.
    from datasets import Dataset

    Dataset.from_list(
        [{"prompt": "Q?", "completion": "A."}] * 1200 + [{"prompt": "Q?", "completion": " "}]
    ).save_to_disk(str(tmp_path / "saved"))
    result = run_cli("train", "sft", str(tmp_path / "saved"), "--student", str(tmp_path / "no-model"))
    assert result.returncode == 2 and "row 1200: 'completion' is empty" in result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("make", [string_rows, parts_rows], ids=["string-prompt-completion", "content-parts"])
def test_train_sft_takes_string_prompt_completion_and_content_parts(tmp_path, make):
    data = write_jsonl(tmp_path / "data.jsonl", make(n=4))
    result = run_cli(
        "train",
        "sft",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--max-steps",
        "1",
        "--batch-size",
        "2",
        "--max-length",
        "64",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["steps"] == 1


# A damaged run folder (issue 10, defect 20) ---------------------------------------------------
@pytest.mark.parametrize(
    "summary",
    [
        '{"nodes": 5, "stages": {"question": 3}, "filters": "all", "failed_requests": "many"}',
        '{"nodes": [{"path": ["a"]}, "x"], "stages": [], "filters": {"counts": []}}',
        '{"rows": 7, "generat',  # cut short
        "[1, 2]",
    ],
)
def test_cli_stats_reads_a_run_with_a_damaged_summary_and_dropped_file(tmp_path, summary):
    rows, dropped, _ = run_rows()
    run = make_run(tmp_path / "run", rows, [{**dropped[0], "filtered_by": ["exact_duplicate"]}, *dropped[1:]])
    (run / "summary.json").write_text(summary)
    with open(run / "dropped.jsonl", "a") as handle:
        handle.write('{"taxonomy_path": "' + ALG + '", "filtered_by": "exa')  # a run killed mid-line
    result = run_cli("stats", str(run), "--no-charts")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "summary.json" in result.stderr
    assert "1 unreadable line(s)" in result.stderr and "dropped.jsonl:4" in result.stderr.replace("\n", "")
    saved = json.loads((run / "stats" / "stats.json").read_text())
    assert (saved["rows"], saved["dropped"]) == (7, 3)
    assert saved["filters"] == {"['exact_duplicate']": 1, "empty_answer": 1, "exact_duplicate": 1}
    assert saved["warnings"] and saved["stages"] in (None, {})


# Evaluation sets that are not files (issue 10) -----------------------------------------------
def test_cli_generate_refuses_a_fifo_or_a_plain_folder_as_eval_set(make_project, tmp_path):
    project = make_project()
    fifo = tmp_path / "evals.jsonl"
    os.mkfifo(fifo)
    folder = tmp_path / "evals"
    folder.mkdir()
    (folder / "questions.txt").write_text("What is 2 + 2?\n")
    for path, message in ((fifo, "special file (FIFO, socket or device)"), (folder, "folder holds no dataset")):
        result = run_cli("generate", "--project", str(project), "--dry-run", "--decontaminate", str(path), timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert message in result.stderr.replace("\n", " ") and str(path) in result.stderr.replace("\n", "")
        assert "Traceback" not in result.stderr


ARROW_ROWS = [
    {
        "prompt": [{"role": "user", "content": "q1"}],
        "completion": [{"role": "assistant", "content": "a"}],
        "n": 1,
        "x": None,
        "tags": ["a", "b"],
        "flag": True,
        "always_null": None,
        "meta": {"k": 1, "s": "v", "deep": [{"w": 0.5}]},
    },
    {
        "prompt": [{"role": "user", "content": "q2 \u00e9\u4e2d"}],
        "completion": [{"role": "assistant", "content": "b"}],
        "n": 2,
        "x": 1.5,
        "tags": [],
        "flag": False,
        "always_null": None,
        "meta": None,
    },
]


@pytest.mark.parametrize("rows", [ARROW_ROWS, []], ids=["rows", "empty"])
def test_the_dataset_folder_written_without_datasets_is_what_datasets_reads(tmp_path, rows):
    """write_dataset writes the save_to_disk folder with pyarrow alone (arrow_folder.py): its
    features are the ones `datasets` derives from the schema, and load_from_disk reads the rows."""
    import pyarrow as pa
    from datasets import Features, load_from_disk

    from syllabus.data.arrow_folder import features_of
    from syllabus.data.write import write_dataset

    outputs = write_dataset(iter(rows), tmp_path)
    loaded = load_from_disk(str(outputs["dataset"]))
    assert loaded.to_list() == rows and loaded.split == "train"
    if rows:
        schema = pa.Table.from_pylist(rows).schema
        assert features_of(schema) == Features.from_arrow_schema(schema).to_dict()
        assert [json.loads(line) for line in outputs["jsonl"].read_text().splitlines()] == rows
    assert not list(tmp_path.glob(".*"))  # the staging folder is gone


@pytest.mark.parametrize(
    "rows",
    [
        ARROW_ROWS,
        [{"v": 1}, {"v": 2.5}, {"v": None}],
        [{"v": []}, {"v": [[], [1]]}, {"v": [[0.5]]}],
        [{"v": {"a": 1}}, {"v": {"b": "x", "a": None}}, {"v": {"c": True}}],
        [{"v": [{"role": "user", "content": "q"}, {"content": "a", "role": "assistant", "extra": 3}]}],
    ],
    ids=["rows", "int-float", "nested-lists", "struct-fields", "list-of-structs"],
)
def test_column_types_are_inferred_as_pyarrow_infers_them(rows):
    """arrow_folder infers the types itself (pyarrow's inference imports pandas): the same schema."""
    import pyarrow as pa

    from syllabus.data.arrow_folder import infer_schema, unify_schemas

    columns = list(dict.fromkeys(key for row in rows for key in row))
    expected = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]).schema
    assert infer_schema(rows, columns).equals(expected)
    halves = [rows[: len(rows) // 2], rows[len(rows) // 2 :]]
    parts = [pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in half]).schema for half in halves if half]
    assert unify_schemas([infer_schema(half, columns) for half in halves if half]).equals(
        pa.unify_schemas(parts, promote_options="permissive")
    )
