"""Near duplicates by MinHash LSH (datasketch) over word shingles of the normalised question.

Rows are taken in order; a row whose question has an earlier kept question with an
estimated Jaccard similarity of shingle sets >= `threshold` is marked, else it joins
the index. LSH only proposes candidates; each is checked against the threshold with
the signatures, so a marked row always names the kept row it is near.
"""

from __future__ import annotations

from typing import Any

from .text import question_of, refs_for, words

REASON = "near_duplicate_minhash"
SEED = 1


def shingles(text: str, size: int) -> list[bytes]:
    """Distinct word `size`-grams of the normalised text; a shorter text is one shingle."""
    tokens = words(text)
    if len(tokens) <= size:
        return [" ".join(tokens).encode()] if tokens else []
    return list({" ".join(tokens[i:i + size]).encode() for i in range(len(tokens) - size + 1)})


def _index(lsh_class, threshold: float, num_perm: int):
    """An LSH index for `threshold`; where datasketch finds no banding for it (a threshold near 1
    with few permutations), the nearest lower one: more candidates, each still checked."""
    candidate = threshold
    while True:
        try:
            return lsh_class(threshold=candidate, num_perm=num_perm)
        except ValueError:
            if candidate <= 0.05:
                raise
            candidate = round(candidate - 0.01, 2)


def find(rows: list[dict[str, Any]], threshold: float = 0.8, shingle: int = 3, num_perm: int = 128,
         refs=None) -> dict[int, tuple[str, str]]:
    import numpy as np
    from datasketch import MinHash, MinHashLSH

    refs = refs_for(rows, refs)
    lsh = _index(MinHashLSH, threshold, num_perm)
    # Signatures of kept rows, one compact row each (hash values fit 32 bits), for the check.
    kept_signatures = np.zeros((len(rows), num_perm), dtype=np.uint32)
    template = MinHash(num_perm=num_perm, seed=SEED)
    marks = {}
    for i, row in enumerate(rows):
        grams = shingles(question_of(row), shingle)
        if not grams:
            continue  # no words: nothing to compare (the checks judge empty text)
        signature = template.copy()
        signature.update_batch(grams)
        values = signature.hashvalues.astype(np.uint32)
        best, best_j = 0.0, -1
        for j in lsh.query(signature):
            similarity = float(np.count_nonzero(kept_signatures[j] == values)) / num_perm
            if similarity > best:
                best, best_j = similarity, j
        if best_j >= 0 and best >= threshold:
            marks[i] = (REASON, f"near duplicate of {refs[best_j]} (MinHash Jaccard ~{best:.2f})")
            continue
        kept_signatures[i] = values
        lsh.insert(i, signature, check_duplication=False)
    return marks
