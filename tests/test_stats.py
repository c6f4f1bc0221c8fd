"""`syllabus stats`: the numbers of a run or dataset made here, its JSON, its charts, bad input.

Rows are in the generator's format with provenance; no model is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from syllabus.data.levels import bloom_rank, level_rank, ordered_counts
from syllabus.data.read import read_source
from syllabus.data.stats import STATS_FILE, compute_stats, dataset_stats, distribution
from syllabus.data.write import write_dataset
from syllabus.errors import UserError
from syllabus.outdir import MARKER, owner

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_row(
    node: str,
    index: int,
    question: str,
    answer: str = "A worked answer with its reasoning.",
    *,
    level: str = "undergraduate",
    difficulty: str = "single-session",
    subject: str | None = None,
    round_index: int = 0,
    **extra,
) -> dict:
    """One row as GlanGenerator._row writes it (plus `filtered_by` as the filters leave it)."""
    return {
        "prompt": [{"role": "user", "content": question}],
        "completion": [{"role": "assistant", "content": answer}],
        "taxonomy_path": node,
        "discipline": node.rsplit("/", 1)[-1],
        "subject": subject or f"{node.rsplit('/', 1)[-1].title()} I",
        "level": level,
        "sessions": ["Session one"],
        "session_indices": [0],
        "key_concepts": ["concept"],
        "difficulty": difficulty,
        "question_index": index,
        "teacher": "teacher-model",
        "teacher_backend": "openai",
        "templates": {"question": "q-version", "answer": "a-version"},
        "sampling": {"question": {"temperature": 0.9}, "answer": {"temperature": 0.3}},
        "seed": 1,
        "round": round_index,
        "finish_reason": "stop",
        "content_hash": f"{node}#{index}@{round_index}",
        "filtered_by": "",
        **extra,
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_run(folder: Path, rows: list[dict], dropped: list[dict] | None = None, summary: dict | None = None) -> Path:
    """A run folder as `syllabus generate` leaves it: dataset/ + dataset.jsonl, dropped.jsonl, summary.json."""
    folder.mkdir(parents=True, exist_ok=True)
    if rows:
        write_dataset(rows, folder)
    write_jsonl(folder / "dropped.jsonl", dropped or [])
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


ALG, ETH, MECH = "mathematics/algebra", "humanities/ethics", "natural-sciences/physics/mechanics"


def run_rows() -> tuple[list[dict], list[dict], dict]:
    """7 kept rows over 3 nodes with known duplicates, lengths and levels; 3 dropped; a summary."""
    rows = [
        make_row(ALG, 0, "What is a group?", "one two three four five six", bloom_level="remember"),
        make_row(ALG, 1, "what is a GROUP", "one two", bloom_level="apply"),  # normalised duplicate of 0
        make_row(ALG, 2, "What is a group?", "one two three", bloom_level="create"),  # exact duplicate of 0
        make_row(
            ALG,
            3,
            "Prove that every subgroup of a cyclic group is cyclic.",
            "a b c d e f g h i j",
            bloom_level="analyse",
            difficulty="two-session",
        ),
        make_row(ETH, 0, "Compare two theories of justice.", "one", level="high school", bloom_level="evaluate"),
        make_row(ETH, 1, "Define utilitarianism.", "one two three four", level="high school", bloom_level="understand"),
        make_row(
            MECH,
            0,
            "State Newton's second law and give one example of its use in daily life.",
            "one two three four five",
            level="graduate",
            bloom_level="remember",
            difficulty="two-session",
        ),
    ]
    dropped = [
        {**make_row(ALG, 4, "What is a group?"), "filtered_by": "exact_duplicate", "filter_detail": f"{ALG}#0"},
        {**make_row(ETH, 2, "Define justice.", ""), "filtered_by": "empty_answer", "filter_detail": ""},
        {**make_row(ETH, 3, "Define utilitarianism!"), "filtered_by": "exact_duplicate", "filter_detail": f"{ETH}#1"},
    ]
    summary = {
        "rows": 7,
        "generated": 10,
        "dropped": 3,
        "failed_requests": 1,
        "stages": {
            "question": {
                "requested": 11,
                "from_cache": 4,
                "answered": 7,
                "parsed": 10,
                "kept": 10,
                "failed": {"timeout": 1},
                "unparsed": {},
            }
        },
        "filters": {
            "rows_in": 10,
            "kept": 7,
            "dropped": 3,
            "counts": {"empty_answer": 0, "restated_question": 0, "exact_duplicate": 2, "near_duplicate_minhash": 0},
        },
        "nodes": [
            {"path": ALG, "requested": 6, "delivered": 5, "kept": 4, "note": ""},
            {"path": ETH, "requested": 4, "delivered": 4, "kept": 2, "note": ""},
            {"path": "mathematics/topology", "requested": 2, "delivered": 0, "kept": 0, "note": "no subjects"},
        ],
    }
    # summary.json's counts say 0 empty answers: the dropped rows are what is counted, the
    # summary only adds the reasons that dropped nothing.
    return rows, dropped, summary


def png_ok(path: Path) -> tuple[int, int]:
    """The file is a PNG that PIL and matplotlib both read back; its (width, height)."""
    from matplotlib.image import imread
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        size = image.size
    pixels = imread(path)
    assert pixels.shape[0] == size[1] and pixels.shape[1] == size[0]
    return size


# Numbers ------------------------------------------------------------------------------
def test_distribution_min_median_p90_max():
    d = distribution(list(range(1, 11)))
    assert (d["min"], d["median"], d["p90"], d["max"], d["mean"], d["count"]) == (1, 5.5, 9, 10, 5.5, 10)
    assert distribution([7]) == {
        "count": 1,
        "min": 7,
        "median": 7,
        "p90": 7,
        "max": 7,
        "mean": 7.0,
        "histogram": {"7": 1},
    }
    assert distribution([]) is None
    assert distribution([3, 1, 3, 20])["histogram"] == {"1": 1, "3": 2, "20": 1}


def test_level_orders_and_histograms():
    assert [
        bloom_rank(v) for v in ("Remember", "understanding", "apply", "analyze", "Analysing", "evaluate", "create", 3)
    ] == [0, 1, 2, 3, 3, 4, 5, 2]
    assert bloom_rank("dance") > bloom_rank("create") and bloom_rank(None) > bloom_rank("dance")
    levels = ["elementary school", "middle school", "high school", "undergraduate", "graduate", "PhD"]
    assert [level_rank(v) for v in levels] == sorted(level_rank(v) for v in levels)
    assert level_rank("undergraduate level") < level_rank("graduate school")
    assert list(ordered_counts(["create", "remember", None, "apply", "remember"], "bloom_level")) == [
        "remember",
        "apply",
        "create",
        "(none)",
    ]
    assert list(ordered_counts([10, 2, 1], "round")) == ["1", "2", "10"]


def test_run_stats_every_number(tmp_path):
    rows, dropped, summary = run_rows()
    run = make_run(tmp_path / "runs" / "r1", rows, dropped, summary)
    result = dataset_stats(run)

    assert (result["kind"], result["rows"], result["dropped"], result["generated"]) == ("run", 7, 3, 10)
    nodes = {n["node"]: n for n in result["nodes"]}
    assert nodes[ALG] == {"node": ALG, "rows": 4, "dropped": 1, "requested": 6, "delivered": 5}
    assert nodes[ETH] == {"node": ETH, "rows": 2, "dropped": 2, "requested": 4, "delivered": 4}
    assert nodes[MECH] == {"node": MECH, "rows": 1, "dropped": 0}
    assert nodes["mathematics/topology"]["rows"] == 0 and nodes["mathematics/topology"]["note"] == "no subjects"
    assert result["stages"]["question"]["failed"] == {"timeout": 1} and result["failed_requests"] == 1
    # Every reason summary.json lists, zeros included, counted from dropped.jsonl's filtered_by.
    assert result["filters"] == {
        "empty_answer": 1,
        "restated_question": 0,
        "exact_duplicate": 2,
        "near_duplicate_minhash": 0,
    }
    # Duplicates: "What is a group?" x2 exact; + "what is a GROUP" normalised.
    assert result["duplicates"]["dataset"] == {
        "rows_with_question": 7,
        "exact": 1,
        "exact_rate": round(1 / 7, 4),
        "normalised": 2,
        "normalised_rate": round(2 / 7, 4),
    }
    generated = result["duplicates"]["generated"]  # + a third exact copy and "Define utilitarianism!"
    assert (generated["rows_with_question"], generated["exact"], generated["normalised"]) == (10, 2, 4)
    q, a = result["lengths"]["question_words"], result["lengths"]["answer_words"]
    # question words: 4 4 4 10 5 2 14 -> sorted 2 4 4 4 5 10 14; p90 is the 7th of 7 (nearest rank)
    assert (q["min"], q["median"], q["p90"], q["max"]) == (2, 4, 14, 14)
    # answer words: 6 2 3 10 1 4 5 -> sorted 1 2 3 4 5 6 10
    assert (a["min"], a["median"], a["p90"], a["max"], a["mean"]) == (1, 4, 10, 10, 4.43)
    assert list(result["bloom_level"].items()) == [
        ("remember", 2),
        ("understand", 1),
        ("apply", 1),
        ("analyse", 1),
        ("evaluate", 1),
        ("create", 1),
    ]
    assert list(result["level"].items()) == [("high school", 2), ("undergraduate", 4), ("graduate", 1)]
    assert result["difficulty"] == {"single-session": 5, "two-session": 2}
    assert result["round"] == {"0": 7} and result["missing_columns"] == ["strategy", "mix_source"]

    out = run / "stats"
    assert Path(result["outputs"]["json"]) == out / STATS_FILE
    saved = json.loads((out / STATS_FILE).read_text())
    assert saved["rows"] == 7 and saved["filters"] == result["filters"] and saved["level"] == result["level"]
    for name in ("nodes.png", "lengths.png", "bloom.png", "level.png", "difficulty.png"):
        width, height = png_ok(out / name)
        assert width > 100 and height > 100
    assert sorted(p.name for p in out.iterdir()) == [
        MARKER,
        "bloom.png",
        "difficulty.png",
        "lengths.png",
        "level.png",
        "nodes.png",
        STATS_FILE,
    ]
    assert owner(out) == "stats"


def test_stats_without_bloom_level_column_and_stale_charts_removed(tmp_path):
    """A dataset from before `bloom_level` existed: no histogram, no chart, and the bloom.png
    an earlier `stats` drew in the same stats folder does not survive to describe it."""
    rows = [make_row(ALG, i, f"Question number {i} about rings?") for i in range(5)]
    source = write_jsonl(tmp_path / "old.jsonl", rows)
    out = tmp_path / "report"
    newer = write_jsonl(tmp_path / "new.jsonl", [make_row(ALG, 0, "Why?", bloom_level="remember")])
    dataset_stats(newer, out)
    png_ok(out / "bloom.png")
    result = dataset_stats(source, out)
    assert result["kind"] == "jsonl" and result["dropped"] is None and result["filters"] is None
    assert result["bloom_level"] is None and "bloom_level" in result["missing_columns"]
    assert result["stages"] is None and result["nodes"] == [{"node": ALG, "rows": 5}]
    assert result["level"] == {"undergraduate": 5}
    assert not (out / "bloom.png").exists()
    assert "bloom_chart" not in result["outputs"]
    png_ok(out / "nodes.png")
    png_ok(out / "level.png")


def test_parquet_and_saved_dataset_sources_write_beside_them(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [make_row(ETH, i, f"Why does rule {i} matter?", bloom_level="understand") for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part.parquet")
    result = dataset_stats(tmp_path / "part.parquet", charts=False)
    assert result["kind"] == "parquet" and result["rows"] == 3 and result["bloom_level"] == {"understand": 3}
    assert Path(result["outputs"]["json"]) == tmp_path / "part-stats" / STATS_FILE
    assert not list((tmp_path / "part-stats").glob("*.png"))  # --no-charts

    write_dataset(rows, tmp_path / "run")
    saved = read_source(tmp_path / "run" / "dataset")
    assert saved.kind == "dataset" and len(saved.rows) == 3
    result = dataset_stats(tmp_path / "run" / "dataset", charts=False)
    assert Path(result["outputs"]["json"]) == tmp_path / "run" / "dataset-stats" / STATS_FILE


def test_a_run_whose_filters_dropped_everything(tmp_path):
    dropped = [{**make_row(ALG, i, "Same question?"), "filtered_by": "exact_duplicate"} for i in range(2)]
    run = tmp_path / "empty-run"
    make_run(run, [], dropped, {"filters": {"counts": {"exact_duplicate": 2}}, "empty_reason": "filters"})
    result = dataset_stats(run)
    assert result["rows"] == 0 and result["dropped"] == 2 and result["filters"] == {"exact_duplicate": 2}
    assert result["lengths"] == {"question_words": None, "answer_words": None}
    assert result["nodes"] == [{"node": ALG, "rows": 0, "dropped": 2}]
    png_ok(run / "stats" / "nodes.png")  # the dropped rows still have a node
    assert not (run / "stats" / "lengths.png").exists()


def test_compute_stats_reads_messages_rows(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Say hi twice"}, {"role": "assistant", "content": "hi hi"}]}]
    result = compute_stats(read_source(write_jsonl(tmp_path / "m.jsonl", rows)))
    assert result["nodes"] == [{"node": "(none)", "rows": 1}]
    assert result["lengths"]["question_words"]["max"] == 3 and result["lengths"]["answer_words"]["max"] == 2
    assert result["difficulty"] is None and result["level"] is None


def test_a_system_message_in_the_prompt_is_not_the_question(tmp_path):
    """Rows whose prompt starts with a system message (prompt erasure) and carry a strategy."""
    row = make_row(ALG, 0, "Name two groups.", strategy="step_by_step", bloom_level="remember")
    row["prompt"] = [{"role": "system", "content": "You are a helpful, knowledgeable assistant."}, *row["prompt"]]
    result = compute_stats(read_source(write_jsonl(tmp_path / "s.jsonl", [row])))
    assert result["lengths"]["question_words"]["max"] == 3
    assert result["strategy"] == {"step_by_step": 1} and result["bloom_level"] == {"remember": 1}


def test_bad_sources_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="source not found"):
        dataset_stats(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="folder holds no dataset"):
        dataset_stats(tmp_path / "empty")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(UserError, match=r"unsupported format '.csv'"):
        dataset_stats(tmp_path / "data.csv")


# The command --------------------------------------------------------------------------
def test_cli_stats_prints_tables_and_writes_files(tmp_path):
    rows, dropped, summary = run_rows()
    run = make_run(tmp_path / "runs" / "r1", rows, dropped, summary)
    result = run_cli("stats", str(run))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for text in (
        "7 rows in",
        "3 dropped of 10 generated",
        ALG,
        "exact_duplicate",
        "Duplicate questions",
        "Bloom level",
        "remember",
        "high school",
        "single-session",
        "stats.json",
        "bloom.png",
    ):
        assert text in out, text
    assert json.loads((run / "stats" / STATS_FILE).read_text())["rows"] == 7
    png_ok(run / "stats" / "nodes.png")


def test_cli_stats_bad_input_exits_2_without_traceback(tmp_path):
    missing = run_cli("stats", str(tmp_path / "missing-run"))
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "source not found" in missing.stderr and "Traceback" not in missing.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(make_row(ALG, 0, "Fine?")) + "\n{not json\n")
    bad = run_cli("stats", str(broken))
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert f"{broken}:2" in bad.stderr.replace("\n", "") and "Traceback" not in bad.stderr
    assert not (tmp_path / "broken-stats").exists()


def test_a_saved_dataset_keeps_the_columns_its_first_row_lacks(tmp_path):
    """pyarrow infers a batch's columns from its first row: a column only later rows have (a mixed
    row's taxonomy_paths after single-node rows) must still reach the datasets folder."""
    rows = [make_row(ALG, 0, "What is a vector?"), make_row(ALG, 1, "Why?", taxonomy_paths=[ALG, ETH], skill_mix=2)]
    write_dataset(rows, tmp_path / "run")
    saved = read_source(tmp_path / "run" / "dataset").rows
    assert [(r.get("taxonomy_paths"), r.get("skill_mix")) for r in saved] == [(None, None), ([ALG, ETH], 2)]
    assert (tmp_path / "run" / "dataset.jsonl").read_text().count("taxonomy_paths") == 1  # the JSONL as written
