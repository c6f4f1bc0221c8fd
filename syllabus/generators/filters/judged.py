"""The LLM judge as a filter step: rows scoring under the threshold are dropped.

The scoring itself (`generators/judge.py`) talks to the teacher; this step only gets a
`score(rows) -> [Judgement | None]` callable, so the filters stay free of networking.
Every judged row carries `judge_score` (null when the judgement failed or did not
parse: such a row is kept, and counted in the report as unjudged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REASON = "judge"


class JudgeFilter:
    def __init__(self, score: Callable[[list[dict[str, Any]]], list[Any]], threshold: int):
        self.score = score
        self.threshold = threshold
        self.unjudged = 0

    def marks(self, rows: list[dict[str, Any]], refs=None) -> dict[int, tuple[str, str]]:
        marks = {}
        for i, (row, judgement) in enumerate(zip(rows, self.score(rows), strict=True)):
            row["judge_score"] = judgement.score if judgement else None
            if judgement is None:
                self.unjudged += 1
            elif judgement.score < self.threshold:
                flaws = ", ".join(judgement.flaws) or "none named"
                marks[i] = (REASON, f"judge score {judgement.score} < {self.threshold} (flaws: {flaws})")
        return marks
