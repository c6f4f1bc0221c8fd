"""A loop round's record (`rounds/K/round.json`): written by the loop, read by the CLI and the report.

One typed shape instead of dicts built inline and read back by string keys: a field
added here is written and read in one place. Reading is tolerant (a field an older
build did not write takes its default), because run folders outlive the code that
made them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .fsutil import atomic_write_text


@dataclass(frozen=True)
class RoundRecord:
    round: int
    student: str  # the model examined: the starting student in round 0, else the one the round trained
    nodes: dict[str, dict[str, Any]]  # node -> dev, exam (accuracy), dev_logprob, exam_logprob
    dev: float  # mean over nodes of the dev accuracy
    exam: float | None  # accuracy over every exam item
    finished_at: float
    budgets: dict[str, int] = field(default_factory=dict)  # node -> rows (none in round 0)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # the allocator's, with its reasons
    rows: dict[str, int] = field(default_factory=dict)  # rows by kind (self, corrections, rehearsal, ...)
    selected: dict[str, int] = field(default_factory=dict)  # what became of each candidate row, counted

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, path: Path) -> RoundRecord:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
