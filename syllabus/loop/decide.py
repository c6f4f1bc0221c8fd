"""Which round's student is best, and whether to go on: decided on dev items only.

Dev accuracy (the mean over nodes, each node alike) leads and the dev log-probability
breaks ties. A round that forgot, one whose dev score on any node fell more than
`forgetting` below the untrained student's, is never the best however high its mean: the
measured failure of this student is to gain on weak nodes by losing strong ones. Round 0,
the untrained student, is a candidate too, so a loop that only harms keeps the student
it started from.

A drop is forgetting only when the node's dev items can tell it from noise: it must also
exceed twice the standard error of the paired per-item difference against the untrained
student. With 15 dev items a node, two items that flip (0.13) are within that noise, and
calling them forgetting discarded a round whose mean dev score had risen 0.39 -> 0.43.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RoundScores:
    index: int
    dev: dict[str, float]  # node -> dev accuracy in [0, 1]
    dev_logprob: dict[str, float]  # node -> mean reference log-probability on dev
    dev_answers: dict[str, dict[str, bool]] = field(default_factory=dict)  # node -> question -> right

    @property
    def overall(self) -> float:
        return sum(self.dev.values()) / len(self.dev) if self.dev else 0.0

    @property
    def overall_logprob(self) -> float:
        return sum(self.dev_logprob.values()) / len(self.dev_logprob) if self.dev_logprob else 0.0


def forgot(scores: RoundScores, base: RoundScores, forgetting: float) -> list[str]:
    """The nodes whose dev score fell more than `forgetting` below the untrained student's, and
    more than its items' noise (2 SE of the paired difference; none known: no allowance)."""
    return [
        n
        for n, s in scores.dev.items()
        if (drop := base.dev.get(n, 0.0) - s) > forgetting + 1e-12 and drop > 2 * paired_se(scores, base, n) + 1e-12
    ]


def paired_se(scores: RoundScores, base: RoundScores, node: str) -> float:
    """The standard error of the per-item difference on the node's dev items both rounds graded (0 when
    fewer than two)."""
    now, then = scores.dev_answers.get(node, {}), base.dev_answers.get(node, {})
    diffs = [float(now[q]) - float(then[q]) for q in now.keys() & then.keys()]
    if len(diffs) < 2:
        return 0.0
    mean = sum(diffs) / len(diffs)
    variance = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return math.sqrt(variance / len(diffs))


def best_round(history: Sequence[RoundScores], forgetting: float) -> int:
    base = history[0]
    eligible = [r for r in history if not forgot(r, base, forgetting)]
    return max(eligible, key=lambda r: (round(r.overall, 9), r.overall_logprob, -r.index)).index


def stop_reason(
    history: Sequence[RoundScores], *, plateau_rounds: int, min_gain: float, regression: float
) -> str | None:
    """Why to stop after the last round of `history`, or None to go on."""
    if len(history) < 2:
        return None
    last = history[-1]
    best_before = max(r.overall for r in history[:-1])
    if last.overall < best_before - regression - 1e-12:
        return f"regression: dev {last.overall:.1%} against {best_before:.1%} before"
    flat = 0
    for i in range(len(history) - 1, 0, -1):
        if history[i].overall - max(r.overall for r in history[:i]) < min_gain:
            flat += 1
        else:
            break
    if flat >= plateau_rounds:
        return f"plateau: {flat} round(s) gaining less than {min_gain:.1%} on dev"
    return None
