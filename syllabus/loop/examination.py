"""One examination of a round's student: every node, exam and dev items, scored apart.

The loop reads two things from it: the dev score per node (budgets, stopping, the best
round) and the wrong exam answers (the mistakes the teacher corrects). Accuracy under the
style-robust grader leads; the mean reference log-probability is kept beside it to break
ties, never alone (a change of answer style moves it without any learning). Test items are
never examined here. Written once, atomically, so a kill leaves either a whole
examination or none.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data.read import iter_jsonl
from ..fsutil import atomic_write_jsonl, atomic_write_text
from ..students.examine import ProbeResult, summarise
from ..students.items import Items
from ..students.probes import Probe

RESULTS = "results.json"
ANSWERS = "answers.jsonl"


@dataclass(frozen=True)
class Examination:
    """Per split ("exam", "dev"): the summary of `summarise` (overall and per node)."""

    splits: dict[str, dict[str, Any]]
    answers: list[dict[str, Any]]  # every result, with its split

    def dev_score(self, node: str) -> float:
        """The node's dev accuracy in [0, 1] (0 when none of its dev items is graded)."""
        block = self.splits["dev"]["nodes"].get(node) or {}
        return float(block.get("accuracy") or 0.0)

    def dev_answers(self, node: str) -> dict[str, bool]:
        """The node's graded dev items: question -> answered right."""
        return {
            a["question"]: a["correct"]
            for a in self.answers
            if a["split"] == "dev" and a["node"] == node and isinstance(a["correct"], bool)
        }

    def dev_logprob(self, node: str) -> float:
        return float((self.splits["dev"]["nodes"].get(node) or {}).get("mean_logprob") or 0.0)

    @property
    def dev_overall(self) -> float:
        """Mean over nodes of the dev accuracy: each node counts alike, whatever its item count."""
        nodes = self.splits["dev"]["nodes"]
        return sum(self.dev_score(n) for n in nodes) / len(nodes) if nodes else 0.0

    def mistakes(self) -> list[dict[str, Any]]:
        """Wrong exam answers, in item order: what the teacher corrects."""
        return [a for a in self.answers if a["split"] == "exam" and a["correct"] is False]

    def per_node(self) -> dict[str, dict[str, Any]]:
        """node -> {dev, exam, dev_logprob, exam_logprob}: the table of the round's record."""
        out: dict[str, dict[str, Any]] = {}
        for split in ("dev", "exam"):
            for node, block in self.splits[split]["nodes"].items():
                out.setdefault(node, {})[split] = block["accuracy"]
                out[node][f"{split}_logprob"] = block["mean_logprob"]
        return out


async def examine_items(
    backend, items: Items, *, max_tokens: int, in_flight: int, progress=None, splits: tuple[str, ...] = ("exam", "dev")
) -> Examination:
    """The student's answers to every item of `splits` (exam and dev by default; test only at the very end)."""
    from ..students.examine import examine

    probes: list[tuple[str, Probe]] = [(split, p) for split in splits for p in getattr(items, split)]
    results = await examine(
        backend, [p for _, p in probes], max_tokens=max_tokens, in_flight=in_flight, progress=progress
    )
    return _examination([split for split, _ in probes], results, splits)


def _examination(splits: list[str], results: list[ProbeResult], names: tuple[str, ...]) -> Examination:
    by_split: dict[str, list[ProbeResult]] = {name: [] for name in names}
    answers = []
    for split, result in zip(splits, results):
        by_split[split].append(result)
        answers.append({"split": split, **asdict(result)})
    return Examination({split: summarise(rs) for split, rs in by_split.items()}, answers)


def write(examination: Examination, folder: Path, student: str) -> None:
    """answers.jsonl first, results.json last: results.json present means the examination is whole."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(folder / ANSWERS, examination.answers)
    atomic_write_text(folder / RESULTS, json.dumps({"student": student, **examination.splits}, indent=2) + "\n")


def read(folder: Path) -> Examination | None:
    """The examination written in `folder`, or None where it was never finished."""
    if not (folder / RESULTS).is_file():
        return None
    results = json.loads((folder / RESULTS).read_text(encoding="utf-8"))
    answers = [row for _, row in iter_jsonl(folder / ANSWERS)]
    return Examination({s: block for s, block in results.items() if s != "student"}, answers)
