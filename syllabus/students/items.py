"""The loop's three kinds of items, kept apart by one question key.

*exam* items are what the loop examines and corrects: their mistakes become training rows.
*dev* items decide (budgets, stopping, the best round) and are never trained on. *test*
items are the user's final evaluation: the loop never scores them, and reads them only to
refuse training data that holds one. All three are kept apart by `data.keys.question_key`,
the same key that dedup, decontamination and the probe-leak check use, so "the same
question" means one thing everywhere.

Items come from a JSONL file (question, answer, node, and optionally split and solution).
A file with no `split` column is split per node, seeded: `dev_share` of each node's items are dev.

An exam item may carry a worked `solution` that ends at its answer ("One kilometer is 1000
meters, so 7 kilometers is 7 x 1000 = 7000 meters."), as GSM8K and MATH ship theirs. Where
the student cannot answer it, the loop trains on that solution: a procedure a small student
can carry to questions it never saw, where a bare answer only teaches that one question's
value. Solutions of dev and test items are never read.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..data.keys import question_key
from ..data.read import iter_jsonl
from ..errors import UserError
from .probes import Probe, probe_from_row

SPLITS = ("exam", "dev", "test")


@dataclass(frozen=True)
class Items:
    exam: tuple[Probe, ...]
    dev: tuple[Probe, ...]
    test: tuple[Probe, ...]
    source: Path
    solutions: dict[bytes, str] = field(default_factory=dict)  # exam question key -> worked solution

    def solution(self, question: str) -> str | None:
        """The exam item's worked solution, or None."""
        return self.solutions.get(question_key(question))

    def of(self, split: str, node: str) -> list[Probe]:
        return [p for p in getattr(self, split) if p.node == node]

    @property
    def nodes(self) -> list[str]:
        return sorted({p.node for p in (*self.exam, *self.dev)})

    def held_out_keys(self) -> dict[bytes, str]:
        """Question key -> split, for every item the loop must never train on (dev and test)."""
        return {**{p.key: "test" for p in self.test}, **{p.key: "dev" for p in self.dev}}


def load_items(
    path: Path, nodes: Iterable[str], *, dev_share: float = 0.25, seed: int = 0, extra_test: Path | None = None
) -> Items:
    """The items of `path` for the taxonomy `nodes` (discipline paths), checked.

    Refused, naming the file and line: a row for a node the taxonomy lacks, an unknown
    split, a question that is in two splits; naming the node: a node with no exam or no
    dev item (the loop could neither correct nor decide there)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            "the loop's items file does not exist",
            where=path,
            hint="write JSONL lines {question, answer, node, split: exam|dev|test}, or set "
            "loop.items in syllabus.yaml (`syllabus init --example distill` ships one)",
        )
    wanted = list(nodes)
    known = set(wanted)
    by_split: dict[str, list[Probe]] = {s: [] for s in SPLITS}
    unsplit: dict[str, list[Probe]] = defaultdict(list)
    seen: dict[bytes, tuple[str, str]] = {}  # key -> (split, where)
    solutions: dict[bytes, str] = {}
    rows = list(iter_jsonl(path))
    if not rows:
        raise UserError("the loop's items file is empty", where=path)
    for number, row in rows:
        where = f"{path}:{number}"
        probe = probe_from_row(row, where)
        if probe.node not in known:
            raise UserError(
                f"item for node '{probe.node}', which is not a selected discipline",
                where=where,
                hint=f"nodes: {', '.join(sorted(known))}",
            )
        split = row.get("split")
        if split is not None and split not in SPLITS:
            raise UserError(f"unknown split {split!r}", where=where, hint="exam, dev or test")
        if probe.key in seen:
            raise UserError(
                f"this question is also at {seen[probe.key][1]}",
                where=where,
                hint="each question is one item: remove one of the two lines",
            )
        seen[probe.key] = (split or "?", where)
        if row.get("solution") is not None:
            solutions[probe.key] = _checked_solution(row["solution"], probe, where)
        if split is None:
            unsplit[probe.node].append(probe)
        else:
            by_split[split].append(probe)
    rng = random.Random(f"items:{seed}")
    for node in sorted(unsplit):
        group = unsplit[node]
        dev = set(rng.sample(range(len(group)), max(1, round(len(group) * dev_share)))) if len(group) > 1 else set()
        for i, probe in enumerate(group):
            by_split["dev" if i in dev else "exam"].append(probe)
    if extra_test is not None:
        for number, row in iter_jsonl(Path(extra_test)):
            probe = probe_from_row(row, f"{extra_test}:{number}")
            if probe.key in seen:
                raise UserError(
                    f"this test question is also a loop item ({seen[probe.key][1]})",
                    where=f"{extra_test}:{number}",
                    hint="test items must be kept out of the loop",
                )
            by_split["test"].append(probe)
    for node in wanted:
        for split in ("exam", "dev"):
            if not any(p.node == node for p in by_split[split]):
                raise UserError(
                    f"node '{node}' has no {split} item",
                    where=path,
                    hint=f'add lines with "node": "{node}", "split": "{split}" '
                    "(the loop corrects exam items and decides on dev items)",
                )
    exam = tuple(by_split["exam"])
    return Items(
        exam,
        tuple(by_split["dev"]),
        tuple(by_split["test"]),
        path,
        {p.key: solutions[p.key] for p in exam if p.key in solutions},
    )


def _checked_solution(solution: object, probe: Probe, where: str) -> str:
    """A solution the grader credits with the item's answer; anything else is a mistake in the file,
    which the loop would otherwise teach."""
    from .examine import grade

    if not isinstance(solution, str) or not solution.strip():
        raise UserError("`solution` must be a non-empty text", where=where, hint="or leave the key out")
    _, correct = grade(probe.answer, solution, probe.question)
    if correct is False:
        raise UserError(
            f"the solution does not end at the answer {probe.answer!r}: {solution.strip()!r}",
            where=where,
            hint="state the answer last (the grader reads the last value the question does not name), or fix the answer",
        )
    return solution.strip()
