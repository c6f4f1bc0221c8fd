"""Where the next round spends its rows: learning progress and weakness, with a floor.

A taxonomy node is an arm of a bandit. Its learning progress is the absolute slope of
its dev score over the last rounds (Teacher-Student Curriculum Learning; ALP-GMM and
RIAC use |change| for the same reason): a node the student is moving on, up or down,
is where rows pay, and |slope| also catches forgetting. Weakness (1 - score) is added,
so a node that stays bad is not abandoned, and is all there is in the first round. An
exploration floor is spread evenly so no node starves and a node at 100% is still
looked at. Budgets are exact integers that add up to the total (largest remainder,
ties broken by a seeded draw), and every decision keeps its inputs and a reason, so a
person can see why a node got its rows.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from ..data.shares import largest_remainder
from ..errors import UserError


@dataclass(frozen=True)
class BudgetRule:
    exploration: float = 0.2  # share of the total spread evenly over every node
    window: int = 3  # rounds the progress slope is fitted over
    progress_weight: float = 1.0
    weakness_weight: float = 1.0

    def check(self) -> None:
        if not 0.0 <= self.exploration <= 1.0:
            raise UserError(f"exploration must be within [0, 1], not {self.exploration}", where="loop.exploration")
        if self.window < 2:
            raise UserError(f"window must be at least 2 rounds, not {self.window}", where="loop.window")
        if self.progress_weight < 0 or self.weakness_weight < 0 or self.progress_weight + self.weakness_weight == 0:
            raise UserError("progress_weight and weakness_weight must be >= 0 and not both 0", where="loop")


@dataclass(frozen=True)
class Decision:
    node: str
    rows: int
    score: float | None  # the latest dev score in [0, 1]; None when never examined
    progress: float  # |slope| of the dev score over the window, per round
    weakness: float  # 1 - score
    priority: float  # progress_weight * progress + weakness_weight * weakness
    floor: float  # rows from the exploration share, before rounding
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def slope(scores: Sequence[float]) -> float:
    """Least-squares slope of `scores` against their round index (0 for fewer than 2)."""
    n = len(scores)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(scores) / n
    num = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(scores))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den


def seeded_ties(total: int, quotas: Mapping[str, float], *, seed: int = 0) -> dict[str, int]:
    """Largest remainder with equal fractional parts ordered by a seeded draw, so a tie does
    not always favour the same name."""
    rng = random.Random(f"budget-ties:{seed}")
    draw = {k: rng.random() for k in sorted(quotas)}
    return largest_remainder(total, quotas, tie=draw.__getitem__)


def allocate(
    total: int, history: Mapping[str, Sequence[float]], rule: BudgetRule = BudgetRule(), *, seed: int = 0
) -> list[Decision]:
    """Budgets for the next round from each node's dev scores so far (oldest first, in [0, 1]).

    Every node of `history` gets a decision, in the order given; a node with no score yet
    counts as fully weak."""
    rule.check()
    nodes = list(history)
    if not nodes:
        raise UserError("no taxonomy node to allocate rows to")
    if total < len(nodes):
        raise UserError(
            f"a budget of {total} rows cannot give each of the {len(nodes)} nodes a row",
            where="--budget",
            hint=f"use --budget {len(nodes)} or more, or select fewer nodes",
        )
    for node, scores in history.items():
        bad = [s for s in scores if not 0.0 <= s <= 1.0]
        if bad:
            raise UserError(f"dev scores must lie in [0, 1], found {bad[0]}", where=node)
    first_round = all(len(history[n]) < 2 for n in nodes)
    progress = {n: abs(slope(list(history[n])[-rule.window :])) for n in nodes}
    weakness = {n: 1.0 - history[n][-1] if history[n] else 1.0 for n in nodes}
    w_progress = 0.0 if first_round else rule.progress_weight
    priority = {n: w_progress * progress[n] + rule.weakness_weight * weakness[n] for n in nodes}
    floor_each = total * rule.exploration / len(nodes)
    rest = total - floor_each * len(nodes)
    mass = sum(priority.values())
    quotas = {n: floor_each + (rest * priority[n] / mass if mass > 0 else rest / len(nodes)) for n in nodes}
    rows = seeded_ties(total, quotas, seed=seed)
    # Every node is examined every round anyway; the floor guarantees it also gets data. A
    # node whose quota rounds to 0 still gets one row, taken from the largest budget.
    for node in nodes:
        if rows[node] == 0:
            donor = max(nodes, key=lambda n: rows[n])
            rows[donor] -= 1
            rows[node] = 1
    decisions = []
    for n in nodes:
        score = history[n][-1] if history[n] else None
        if first_round:
            why = "first round: by weakness" if score is not None else "never examined: fully weak"
        elif priority[n] == 0:
            why = "mastered and not moving: exploration floor only"
        else:
            parts = []
            if w_progress and progress[n] > 0:
                sign = "+" if slope(list(history[n])[-rule.window :]) >= 0 else "-"
                parts.append(f"moving {sign}{progress[n]:.3f}/round")
            if weakness[n] > 0:
                parts.append(f"weak ({score:.0%} on dev)" if score is not None else "weak")
            why = ", ".join(parts)
        decisions.append(Decision(n, rows[n], score, progress[n], weakness[n], priority[n], floor_each, why))
    return decisions
