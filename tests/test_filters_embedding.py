"""Near duplicates by embedding similarity: the greedy pass on made-up vectors, then the real model."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_filters import dropped_by, only, row

from syllabus.generators.filters import embedding, run_filters


def unit(*values):
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_greedy_pass_keeps_the_first_and_compares_with_kept_rows_only():
    vectors = np.stack(
        [
            unit(1, 0, 0),
            unit(1, 0.05, 0),  # ~0.999 to row 0: marked
            unit(0, 1, 0),
            unit(0.6, 0.8, 0),  # 0.8 to row 2 and 0.6 to row 0: kept at 0.9
            unit(0, 0, 1),
            unit(0.05, 0, 1),  # near row 4
        ]
    )
    marks = embedding.greedy_marks(vectors, 0.9)
    assert sorted(marks) == [1, 5]
    assert marks[1][0] == 0 and marks[1][1] > 0.99 and marks[5][0] == 4
    assert sorted(embedding.greedy_marks(vectors, 0.5)) == [1, 3, 5]  # row 3 is now near row 2 (0.8)
    assert embedding.greedy_marks(vectors, 1.0) == {}


def test_greedy_pass_across_blocks(monkeypatch):
    monkeypatch.setattr(embedding, "BLOCK", 2)
    monkeypatch.setattr(embedding, "KEPT_CHUNK", 2)  # kept rows compared a chunk at a time too
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    vectors = np.concatenate([base, base[[3, 0]]])  # rows 5, 6 repeat rows 3, 0 in later blocks
    marks = embedding.greedy_marks(vectors, 0.99)
    assert {i: j for i, (j, _) in marks.items()} == {5: 3, 6: 0}


QUESTIONS = [
    "How do I compute the determinant of a 2x2 matrix?",
    "How can I calculate the determinant of a 2 by 2 matrix?",  # a paraphrase of 0 (cosine ~0.94)
    "Describe the main causes of the French Revolution.",
    "What were the main causes of the French Revolution?",  # a paraphrase of 2 (cosine ~0.96)
    "Prove that the square root of two is irrational.",
    "Explain how photosynthesis converts light into chemical energy.",
    "How do I compute the determinant of a 2x2 matrix",  # 0 without its question mark (cosine ~1)
]


@pytest.mark.slow
def test_embedding_filter_with_the_packaged_model():
    import datasets  # noqa: F401 - the hub library already imported, as in a real run

    rows = [row(i, q) for i, q in enumerate(QUESTIONS)]
    kept, dropped, report = run_filters(rows, only(embedding={"enabled": True, "threshold": 0.9}))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert [r["question_index"] for r in kept] == [0, 2, 4, 5]
    assert dropped_by(dropped) == {
        1: "near_duplicate_embedding",
        3: "near_duplicate_embedding",
        6: "near_duplicate_embedding",
    }
    details = {r["question_index"]: r["filter_detail"] for r in dropped}
    assert details[1].startswith("near duplicate of mathematics/algebra#0 (cosine 0.9")
    assert details[3].startswith("near duplicate of mathematics/algebra#2 (cosine 0.9")
    assert report.counts == {"near_duplicate_embedding": 3}
    # A stricter threshold keeps the paraphrases and drops only the copy.
    _, dropped, _ = run_filters(rows, only(embedding={"enabled": True, "threshold": 0.97}))
    assert dropped_by(dropped) == {6: "near_duplicate_embedding"}
    # With the other filters on, the exact copy goes to an earlier filter first.
    rows.append(row(7, QUESTIONS[0], "A different answer."))
    _, dropped, report = run_filters(rows, only(exact="question", embedding={"enabled": True, "threshold": 0.97}))
    assert dropped_by(dropped) == {6: "exact_duplicate", 7: "exact_duplicate"}
    assert embedding.available() is None


def test_greedy_index_carries_kept_rows_across_calls():
    """A run feeds the filter a chunk at a time: a row near one kept in an earlier call is still
    marked, with that row's id, exactly as in one call over all rows."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(6, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    vectors = np.concatenate([base, base[[4, 1]]])
    whole = embedding.greedy_marks(vectors, 0.99)
    index = embedding.GreedyIndex(0.99, dim=16)
    pieces = {}
    for start in range(0, len(vectors), 3):
        for local, (kept_id, sim) in index.add(vectors[start : start + 3], ids=range(start, start + 3)).items():
            pieces[start + local] = (kept_id, sim)
    assert {i: j for i, (j, _) in pieces.items()} == {i: j for i, (j, _) in whole.items()} == {6: 4, 7: 1}
    assert index.size == 6
