"""Near duplicates by MinHash LSH over word shingles of the normalised question.

Rows are taken in order; a row whose question has an earlier kept question with an
estimated Jaccard similarity of shingle sets >= `threshold` is marked, else it joins
the index. LSH only proposes candidates; each is checked against the threshold with
the signatures, so a marked row always names the kept row it is near.

The signatures and the banding (b bands of r rows for the threshold) are datasketch's,
computed by minhash_math.py without importing datasketch (and scipy with it); the band
buckets are our own plain dicts of int keys (a band folded into 64 bits). datasketch's
in-memory index keeps a set per bucket and a second copy of every band key, about
3.2 KB per kept row against 0.6 KB here: 300 MB of a 100k-row run's memory.
"""

from __future__ import annotations

from typing import Any

from ...data.keys import words
from ...data.rows import question_of
from .refs import refs_for

REASON = "near_duplicate_minhash"
SEED = 1
BLOCK = 256  # rows signed at once: numpy's per-call cost shared, a block's shingle hashes in memory


def shingles(text: str, size: int) -> list[bytes]:
    """Distinct word `size`-grams of the normalised text; a shorter text is one shingle."""
    tokens = words(text)
    if len(tokens) <= size:
        return [" ".join(tokens).encode()] if tokens else []
    return list({" ".join(tokens[i : i + size]).encode() for i in range(len(tokens) - size + 1)})


def _banding(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for `threshold`; where no banding of 2 bands or more fits it (a threshold near 1
    with few permutations), that of the nearest lower one: more candidates, each still checked."""
    from .minhash_math import banding

    candidate = threshold
    while True:
        try:
            return banding(candidate, num_perm)
        except ValueError:
            if candidate <= 0.05:
                raise
            candidate = round(candidate - 0.01, 2)


class MinHashFilter:
    """The LSH buckets and signatures of every row kept so far, across the chunks of a run."""

    def __init__(self, threshold: float = 0.8, shingle: int = 3, num_perm: int = 128):
        import numpy as np

        self.threshold, self.shingle, self.num_perm = threshold, shingle, num_perm
        bands, rows = _banding(threshold, num_perm)
        self._bands, self._band_rows = bands, rows
        self._buckets: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]  # band key -> kept row(s)
        # Odd multipliers that fold a band's values into one key (see `_signed`).
        self._fold = np.random.RandomState(SEED).randint(1, 1 << 62, rows, dtype=np.uint64) * np.uint64(2) + 1
        # Signatures of kept rows, one compact row each (hash values fit 32 bits), for the check;
        # grown by doubling as rows are kept.
        self._signatures = np.zeros((1024, num_perm), dtype=np.uint32)
        self._refs: list[str] = []

    def marks(self, rows: list[dict[str, Any]], refs) -> dict[int, tuple[str, str]]:
        import numpy as np

        marks = {}
        for start in range(0, len(rows), BLOCK):
            block = range(start, min(start + BLOCK, len(rows)))
            grams = {i: shingles(question_of(rows[i]), self.shingle) for i in block}
            # no words: nothing to compare (the checks judge empty text)
            compared = [i for i in block if grams[i]]
            values, keys = self._signed([grams[i] for i in compared])
            for i, row_values, row_keys in zip(compared, values, keys):
                best, best_j = 0.0, -1
                for j in self._candidates(row_keys):
                    similarity = float(np.count_nonzero(self._signatures[j] == row_values)) / self.num_perm
                    if similarity > best:
                        best, best_j = similarity, j
                if best_j >= 0 and best >= self.threshold:
                    marks[i] = (REASON, f"near duplicate of {self._refs[best_j]} (MinHash Jaccard ~{best:.2f})")
                    continue
                self._keep(row_values, row_keys, refs[i])
        return marks

    def _signed(self, shingle_sets: list[list[bytes]]):
        """The signatures of a block of rows and each row's band keys: a band's values folded into
        one 64-bit int by fixed odd multipliers (wrapping). Two bands that collide only add a
        candidate, which the signatures then check."""
        import numpy as np

        from .minhash_math import signatures

        values = signatures(shingle_sets, self.num_perm, SEED)
        bands, width = self._bands, self._band_rows
        with np.errstate(over="ignore"):
            folded = values[:, : bands * width].reshape(-1, bands, width).astype(np.uint64) * self._fold
            keys = folded.sum(axis=2, dtype=np.uint64).tolist()
        return values, keys

    def _candidates(self, keys: list[int]) -> set[int]:
        found: set[int] = set()
        for key, bucket in zip(keys, self._buckets):
            hit = bucket.get(key)
            if hit is None:
                continue
            if isinstance(hit, list):
                found.update(hit)
            else:
                found.add(hit)
        return found

    def _keep(self, values, keys: list[int], ref: str) -> None:
        import numpy as np

        j = len(self._refs)
        if j == len(self._signatures):
            grown = np.zeros((2 * j, self.num_perm), dtype=np.uint32)
            grown[:j] = self._signatures
            self._signatures = grown
        self._signatures[j] = values
        self._refs.append(ref)
        for key, bucket in zip(keys, self._buckets):
            hit = bucket.get(key)
            if hit is None:
                bucket[key] = j  # most buckets hold one row: a bare int, not a list
            elif isinstance(hit, list):
                hit.append(j)
            else:
                bucket[key] = [hit, j]


def find(
    rows: list[dict[str, Any]], threshold: float = 0.8, shingle: int = 3, num_perm: int = 128, refs=None
) -> dict[int, tuple[str, str]]:
    """Marks for the near duplicates among `rows`, by position."""
    return MinHashFilter(threshold, shingle, num_perm).marks(rows, refs_for(rows, refs))
