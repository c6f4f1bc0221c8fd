"""Streaming a run: the spool gives rows back in taxonomy order, cleans up after a killed
run, and the chunked filter chain decides exactly as one pass over every row would."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_filters import DECON_ROWS, EVAL_LONG, EXACT_ROWS, MATRIX, NEAR_ROWS, row

import syllabus.generators.filters as filters_module
from syllabus.generators.filters import load_eval_set, run_filters
from syllabus.generators.spool import PREFIX, RowSpool
from syllabus.project import FiltersConfig


def test_rows_come_back_in_taxonomy_order_whatever_order_they_arrived(tmp_path):
    with RowSpool(tmp_path) as spool:
        for node, index in [(1, 2), (0, 5), (1, 0), (0, 0), (0, 10), (1, 1)]:
            spool.add(node, index, {"node": node, "index": index, "text": "é ✓"})
        assert len(spool) == 6
        chunks = list(spool.chunks(4))
        assert [len(c) for c in chunks] == [4, 2]
        keys = [key for chunk in chunks for key, _ in chunk]
        assert keys == [(0, 0), (0, 5), (0, 10), (1, 0), (1, 1), (1, 2)]
        assert all(row["index"] == key[1] and row["text"] == "é ✓" for chunk in chunks for key, row in chunk)
        assert [r["index"] for r in spool.rows([(1, 1), (0, 5)])] == [1, 5]  # any order asked
        path = spool.path
        assert path.is_file()
    assert not path.exists()  # scratch: gone when the run ends


def test_a_killed_runs_spool_is_removed_but_a_live_ones_is_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f"{PREFIX}{int(dead.stdout)}-deadbeef.sqlite"
    orphan.write_bytes(b"left by a kill -9")
    live = tmp_path / f"{PREFIX}{os.getppid()}-cafef00d.sqlite"  # our parent is alive
    live.write_bytes(b"another run, still going")
    with RowSpool(tmp_path):
        assert not orphan.exists() and live.exists()


MIXED = [
    *EXACT_ROWS,
    *NEAR_ROWS,
    *DECON_ROWS,
    row(90, "What is a group?", ""),
    row(91, MATRIX),
    row(92, "what is a GROUP", "same as row 1 again"),
]
ALL_ON = {
    "checks": {"empty_answer": True, "restated_question": True, "truncated": True},
    "exact": "question",
    "minhash": {"enabled": True, "threshold": 0.8},
}


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_chunked_filters_decide_as_one_pass_over_all_rows(monkeypatch, tmp_path, chunk):
    rows = [dict(r, question_index=i) for i, r in enumerate(MIXED)]  # unique refs across the mixed sets
    evals = tmp_path / "evals.jsonl"
    evals.write_text(f'{{"question": "{EVAL_LONG}"}}\n')
    config = FiltersConfig.model_validate(ALL_ON)
    sets = [load_eval_set(evals, "evals")]
    whole = run_filters(rows, config, eval_sets=sets)
    monkeypatch.setattr(filters_module, "CHUNK", chunk)
    chunked = run_filters(rows, config, eval_sets=sets)
    assert chunked[0] == whole[0] and chunked[1] == whole[1]
    assert chunked[2].as_dict() | {"seconds": {}} == whole[2].as_dict() | {"seconds": {}}
    reasons = {r["filtered_by"] for r in whole[1]}
    assert {"exact_duplicate", "near_duplicate_minhash", "contaminated", "empty_answer"} <= reasons
    # Duplicates across chunk boundaries name the kept row from an earlier chunk.
    assert any("same question as" in r["filter_detail"] for r in chunked[1])
