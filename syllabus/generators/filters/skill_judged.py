"""The Skill-Mix rubric as a filter step: mixed questions short of their points are dropped.

The grading (`generators/skill_mix_judge.py`) talks to the teacher and counts the points;
this step only gets a `grade(rows) -> [verdict | None]` callable, so the filters stay free
of networking, as the LLM judge's step (`judged.py`) is. Only mixed rows (`skill_mix` >= 2)
are graded; every graded row carries `skill_mix_score` (its points out of skill_mix + 3;
null when no grader reply parsed: such a row is kept, and counted as ungraded).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

REASON = "skill_mix_judge"


def is_mixed(row: dict[str, Any]) -> bool:
    k = row.get("skill_mix")
    return isinstance(k, int) and not isinstance(k, bool) and k >= 2


def needed(total: int, threshold: float) -> int:
    """The points a question of `total` must earn at `threshold` (a share of them)."""
    return max(1, math.ceil(threshold * total - 1e-9))


class SkillMixJudgeFilter:
    def __init__(self, grade: Callable[[list[dict[str, Any]]], list[Any]], threshold: float):
        self.grade = grade
        self.threshold = threshold
        self.ungraded = 0

    def marks(self, rows: list[dict[str, Any]], refs=None) -> dict[int, tuple[str, str]]:
        mixed = [i for i, row in enumerate(rows) if is_mixed(row)]
        if not mixed:
            return {}
        marks = {}
        for i, verdict in zip(mixed, self.grade([rows[i] for i in mixed]), strict=True):
            rows[i]["skill_mix_score"] = verdict.points if verdict else None
            if verdict is None:
                self.ungraded += 1
                continue
            least = needed(verdict.total, self.threshold)
            if verdict.points < least:
                marks[i] = (REASON, verdict.detail(least))
        return marks
