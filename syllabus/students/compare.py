"""Two students on the same items: is the difference a gain, a loss, or noise these items cannot tell?

A gain is measured as the paired per-item difference (each item answered by both), per
node and pooled, with its standard error and an exact McNemar p-value (the two-sided
binomial test on the items only one of them got right). With 20 items a 0/1 accuracy has
a standard error near 0.1, so the verdict says "no detectable change" until the items can
tell, and every block names the smallest change its items could detect at all: six
items flipping one way and none the other, the fewest for which the exact test reaches
p < 0.05. Items are paired by node and question key; an item only one side answered, or
one with no exact grade (a long reference), is left out and counted.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..data.keys import question_key

ALPHA = 0.05


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b items only A got right, c only B; 1.0 with none discordant."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def smallest_detectable_flips(alpha: float = ALPHA) -> int:
    """The fewest discordant items, all one way, for which the exact test gives p < alpha (6 at 0.05)."""
    flips = 1
    while mcnemar_exact(flips, 0) >= alpha:
        flips += 1
    return flips


@dataclass(frozen=True)
class Paired:
    """One block (a node, or every node pooled): B's accuracy minus A's over the same items."""

    items: int
    accuracy_a: float
    accuracy_b: float
    difference: float  # mean over items of correct_b - correct_a
    se: float | None  # standard error of that mean (sample sd of the differences / sqrt(n)); None for one item
    only_a: int  # items only A answered right
    only_b: int
    p_value: float  # exact McNemar
    smallest_detectable: float  # the smallest difference these items could show as significant
    verdict: str  # "gain" | "loss" | "no detectable change"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired(a: list[bool], b: list[bool]) -> Paired:
    n = len(a)
    if n == 0 or n != len(b):
        raise ValueError(f"paired() needs two equal, non-empty lists of outcomes, got {len(a)} and {len(b)}")
    diffs = [int(y) - int(x) for x, y in zip(a, b)]
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else None
    only_a, only_b = diffs.count(-1), diffs.count(1)
    p = mcnemar_exact(only_a, only_b)
    verdict = "no detectable change" if p >= ALPHA else ("gain" if only_b > only_a else "loss")
    return Paired(
        n, sum(a) / n, sum(b) / n, mean, se, only_a, only_b, p, min(1.0, smallest_detectable_flips() / n), verdict
    )


def compare_answers(
    a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]], nodes: Iterable[str] | None = None
) -> dict[str, Any]:
    """Per node and pooled comparison of two answer lists (rows with node, question, correct).

    `nodes` pools a named group too (for example the weak nodes): {"nodes": ..., "pooled": ...,
    "group": ...}. Items are matched by (node, question key)."""

    def graded(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, bytes], bool | None]:
        return {(r["node"], question_key(r["question"])): r.get("correct") for r in rows}

    left, right = graded(a), graded(b)
    shared = [k for k in left if k in right and left[k] is not None and right[k] is not None]
    unmatched = len(set(left) ^ set(right))
    ungraded = sum(1 for k in left if k in right and (left[k] is None or right[k] is None))
    by_node: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for key in shared:
        by_node[key[0]].append(key)

    def block(keys: list[tuple[str, bytes]]) -> dict[str, Any] | None:
        if not keys:
            return None
        return paired([bool(left[k]) for k in keys], [bool(right[k]) for k in keys]).as_dict()

    out: dict[str, Any] = {
        "nodes": {node: block(keys) for node, keys in sorted(by_node.items())},
        "pooled": block(shared),
        "unmatched": unmatched,
        "ungraded": ungraded,
    }
    if nodes is not None:
        group = set(nodes)
        out["group"] = {"nodes": sorted(group), **(block([k for k in shared if k[0] in group]) or {})}
    return out
