"""Splitting a whole number by weight: the question budget per node, a mix's shares of its total."""

from __future__ import annotations


def allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split `total` by weight with the largest-remainder method: the parts add up to `total`."""
    positive = {k: w for k, w in weights.items() if w > 0}
    if not positive or total <= 0:
        return {k: 0 for k in weights}
    scale = sum(positive.values())
    exact = {k: total * w / scale for k, w in positive.items()}
    shares = {k: int(v) for k, v in exact.items()}
    left = total - sum(shares.values())
    for key in sorted(exact, key=lambda k: (-(exact[k] - shares[k]), k))[:left]:
        shares[key] += 1
    return {k: shares.get(k, 0) for k in weights}
