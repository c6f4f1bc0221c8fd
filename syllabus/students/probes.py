"""Probe sets: held-out questions with reference answers, per taxonomy node.

Split from generated data (and then kept out of every training set, by the data layer's
question key: the normalisation dedup uses too, so a copy that differs in case, punctuation
or Unicode form is the same question) or imported from a user's JSONL: free-form
{question, answer, node} or multiple choice {question, options, correct, node}.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.keys import question_key
from ..data.read import iter_jsonl
from ..data.rows import CHAT_COLUMN, QUESTION_COLUMNS, answer_of, node_of, question_of, user_turns
from ..data.write import save_dataset
from ..errors import UserError
from ..fsutil import atomic_write_jsonl
from .data import load_checked, open_dataset

PROBES_FILE = "probes.jsonl"


@dataclass
class Probe:
    question: str
    answer: str
    node: str = "unknown"
    options: list[str] = field(default_factory=list)
    correct: int | None = None  # index into options, for multiple choice

    @property
    def key(self) -> bytes:
        return question_key(self.question)


def row_keys(row: dict[str, Any]) -> set[bytes]:
    """The question keys a training row holds: its question, and each user turn on its own."""
    return {question_key(question_of(row)), *(question_key(turn) for turn in user_turns(row))}


def load_probes(path: str | Path) -> list[Probe]:
    """Probes from JSONL; each broken line is named by its number."""
    path = Path(path)
    if path.is_dir():
        path = path / PROBES_FILE
    if not path.exists():
        raise UserError(
            "probe file does not exist",
            where=path,
            hint="split probes off a run with `syllabus probes split RUN`, or give a JSONL file",
        )
    probes = []
    for number, row in iter_jsonl(path):
        probes.append(probe_from_row(row, f"{path}:{number}"))
    if not probes:
        raise UserError("probe file is empty", where=path)
    return probes


def probe_from_row(row: dict[str, Any], where: str) -> Probe:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise UserError("probe has no question", where=where, hint='each line needs "question" and "answer"')
    options = row.get("options") or row.get("choices") or []
    if options:
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options) or len(options) < 2:
            raise UserError("options must be a list of at least two texts", where=where)
        correct = row.get("correct", row.get("answer_index"))
        if isinstance(correct, str) and correct in options:
            correct = options.index(correct)
        elif isinstance(correct, str) and len(correct) == 1 and correct.upper() in "ABCDEFGHIJ":
            correct = "ABCDEFGHIJ".index(correct.upper())
        if not isinstance(correct, int) or not 0 <= correct < len(options):
            raise UserError("multiple choice probe needs `correct`: an option index, letter or text", where=where)
        return Probe(question.strip(), options[correct], str(row.get("node") or "unknown"), list(options), correct)
    answer = row.get("answer")
    if not isinstance(answer, (str, int, float)) or (isinstance(answer, str) and not answer.strip()):
        raise UserError("probe has no answer", where=where, hint='each line needs "question" and "answer"')
    return Probe(question.strip(), str(answer).strip(), str(row.get("node") or "unknown"))


def write_probes(probes: list[Probe], path: Path) -> None:
    atomic_write_jsonl(path, (asdict(p) for p in probes))


def split_probes(
    source: str | Path, *, fraction: float = 0.1, minimum: int = 1, seed: int = 0, out_dir: Path | None = None
) -> tuple[Path, Path, int, int]:
    """Hold out a share of each node's rows as probes; write them and the rest as `train`.

    Returns (probes file, train dataset folder, probes, training rows).
    """
    if not 0 < fraction < 1:
        raise UserError(f"--fraction must be between 0 and 1, got {fraction}")
    source = Path(source)
    # A run is split from its dataset/, never from the train/ an earlier split (or a killed one) left there.
    rows = open_dataset(source, splits=("dataset",))
    if not {"prompt", "completion"} <= set(rows.columns):
        raise UserError("probes are split from generated prompt/completion data", where=rows.path or source)
    dataset = load_checked(rows, ("prompt", "completion"))
    out_dir = Path(out_dir) if out_dir else (source if rows.located.is_run else source.parent)
    by_node: dict[str, list[int]] = defaultdict(list)
    for index, row in enumerate(dataset):
        if question_of(row).strip() and answer_of(row).strip():  # a prompt of only a system turn is no probe
            by_node[node_of(row) or "unknown"].append(index)
    rng = random.Random(seed)
    held: set[int] = set()
    for _node, indices in sorted(by_node.items()):
        if len(indices) < 2:
            continue  # a node with one row trains on it; probing it would leave nothing to learn from
        count = min(len(indices) - 1, max(minimum, round(len(indices) * fraction)))
        held.update(rng.sample(indices, count))
    probes = [
        Probe(question_of(row), answer_of(row), node_of(row) or "unknown") for row in (dataset[i] for i in sorted(held))
    ]
    keys = {p.key for p in probes}
    train = dataset.filter(lambda row: not row_keys(row) & keys)
    probes_file = out_dir / PROBES_FILE
    write_probes(probes, probes_file)
    save_dataset(train, out_dir / "train")
    return probes_file, out_dir / "train", len(probes), len(train)


def assert_no_probe_leak(dataset, probes: list[Probe], source: Path) -> None:
    """Fail loudly when a probe question is in a training set: its scores would mean nothing."""
    keys = {p.key for p in probes}
    columns = [c for c in (*QUESTION_COLUMNS, CHAT_COLUMN) if c in dataset.column_names]
    leaked = [i for i, row in enumerate(dataset.select_columns(columns)) if row_keys(row) & keys] if columns else []
    if leaked:
        raise UserError(
            f"{len(leaked)} probe question(s) found in the training set (first at row {leaked[0]})",
            where=source,
            hint="train on the `train` split that `syllabus probes split` wrote, not on the full dataset",
        )
