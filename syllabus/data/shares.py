"""Splitting a whole number by weight: the question budget per node, a mix's shares of its total."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split `total` by weight with the largest-remainder method: the parts add up to `total`."""
    positive = {k: w for k, w in weights.items() if w > 0}
    if not positive or total <= 0:
        return {k: 0 for k in weights}
    scale = sum(positive.values())
    shares = largest_remainder(total, {k: total * w / scale for k, w in positive.items()})
    return {k: shares.get(k, 0) for k in weights}


def largest_remainder(total: int, quotas: Mapping[str, float], tie: Callable[[str], object] = str) -> dict[str, int]:
    """Integers that add up to `total`, each the floor of its quota plus at most one: the units
    left after the floors go to the largest fractional parts, equal parts ordered by `tie`."""
    whole = {k: int(q) for k, q in quotas.items()}
    left = total - sum(whole.values())
    for key in sorted(quotas, key=lambda k: (-(quotas[k] - whole[k]), tie(k)))[: max(left, 0)]:
        whole[key] += 1
    return whole
