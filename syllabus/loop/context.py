"""What a step of a round may use of its loop: the run's settings, items, folder and helpers.

The steps (steps.py) are written against this protocol rather than the Loop class, so the
loop imports its steps and no step imports the loop back.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..layout import RunLayout
from ..project import LoopConfig, Project
from ..students.items import Items
from .budgets import BudgetRule
from .decide import RoundScores
from .examination import Examination


class RoundContext(Protocol):
    project: Project
    options: Any  # DistillOptions: baseline, align, command
    settings: LoopConfig
    layout: RunLayout
    items: Items
    nodes: dict[str, Any]  # discipline path -> taxonomy Node
    seed: int
    budget: int
    rule: BudgetRule
    history: list[RoundScores]  # the rounds examined so far, round 0 first
    student: str  # the starting student
    teacher: str | None
    view: Any  # progress.Progress

    def current_student(self, k: int) -> str: ...

    def examine(self, student: str, splits: tuple[str, ...] = ("exam", "dev")) -> Examination: ...

    def align_view(self) -> Any: ...
