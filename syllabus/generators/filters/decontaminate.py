"""Decontamination: drop rows whose question shares an n-gram with an evaluation set's question.

Evaluation sets are what the user names (`--decontaminate PATH`, or
`generation.filters.decontaminate` in syllabus.yaml): a JSONL file, a Parquet file, or a
folder written by `datasets`' save_to_disk, read by the data layer's one reader (a FIFO or
a folder that holds no dataset is refused there). A row's question is the data layer's
`question_of`: the first of `question`, `prompt`, `input`, `problem` (chat messages: their
user turns), then `messages`.

Texts are compared as normalised words (`data.keys.words`, the normalisation dedup and
the probe-leak check use too). A pair of questions overlaps when
- both have at least `ngram` words (13 by default) and share an `ngram`-gram; or
- the shorter has `short` to `ngram`-1 words (8 by default) and they share a `short`-gram;
- or the shorter has fewer than `short` words and appears whole, word for word, in the other
  (the eval side only: a tiny generated question inside a long eval question is not flagged).
Each set is indexed on its own so the report says which set a row overlapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...data.keys import normalise, words
from ...data.read import open_rows
from ...data.rows import CHAT_COLUMN, QUESTION_COLUMNS, question_of
from ...errors import UserError

REASON = "contaminated"
_HINT = "name a JSONL or Parquet file, or a folder saved with datasets' save_to_disk"


@dataclass
class EvalSet:
    name: str  # as the user wrote it: the key of the per-set report
    path: Path
    column: str
    questions: list[str]


# Loading ----------------------------------------------------------------------
def load_eval_set(path: str | Path, name: str | None = None) -> EvalSet:
    """Read one evaluation set's questions (every split of a DatasetDict); a UserError names
    the file and what is wrong. Each row's question is the data layer's `question_of`."""
    path = Path(path).expanduser()
    name = name or str(path)
    rows = open_rows(
        path,
        all_splits=True,
        what="evaluation set",
        missing="evaluation set not found",
        hint=_HINT,
        unsupported="evaluation set",
    )
    columns = rows.columns
    column = next((c for c in (*QUESTION_COLUMNS, CHAT_COLUMN) if c in columns), None)
    if column is None:
        shown = ", ".join(columns[:30]) + (" ..." if len(columns) > 30 else "")
        raise UserError(
            f"evaluation set has no question column (looked for {', '.join(QUESTION_COLUMNS)}); "
            f"its columns: {shown or '(none)'}",
            where=rows.path or path,
            hint=f"rename its question column to one of: {', '.join(QUESTION_COLUMNS)} (or give chat `messages`)",
        )
    questions = [question_of(row) for _, row in rows.iter(columns=(*QUESTION_COLUMNS, CHAT_COLUMN))]
    if not any(q.strip() for q in questions):
        raise UserError(f"evaluation set has no questions in its '{column}' column", where=path, hint=_HINT)
    return EvalSet(name=name, path=path, column=column, questions=questions)


def resolve(paths: list[str], base: Path) -> list[Path]:
    """Paths as written, relative ones taken from `base`; each once."""
    seen: dict[Path, None] = {}
    for raw in paths:
        p = Path(raw).expanduser()
        seen.setdefault(p if p.is_absolute() else base / p, None)
    return list(seen)


# Matching ---------------------------------------------------------------------
@dataclass
class NgramIndex:
    """One evaluation set's n-grams: long (`ngram`), short (`short`), and tiny questions whole."""

    ngram: int
    short: int
    long_grams: set[int] = field(default_factory=set)  # ngram-grams of questions with >= ngram words
    short_grams_all: set[int] = field(default_factory=set)  # short-grams of every question with >= short words
    short_grams_mid: set[int] = field(default_factory=set)  # short-grams of questions with short..ngram-1 words
    tiny: dict[int, set[int]] = field(default_factory=dict)  # length -> whole tiny questions
    questions: list[str] = field(default_factory=list, repr=False)
    _normalised: list[str] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, questions: list[str], ngram: int, short: int) -> NgramIndex:
        index = cls(ngram, short, questions=questions)
        for question in questions:
            tokens = words(question)
            if not tokens:
                continue
            if len(tokens) < short:
                _add(index.tiny.setdefault(len(tokens), set()), [tokens])
                continue
            shorts = _grams(tokens, short)
            _add(index.short_grams_all, shorts)
            if len(tokens) >= ngram:
                _add(index.long_grams, _grams(tokens, ngram))
            else:
                _add(index.short_grams_mid, shorts)
        return index

    def match(self, tokens: list[str]) -> tuple[int, str] | None:
        """(eval question index, the shared words) for the first overlap found, else None."""
        if not tokens:
            return None
        checks: list[tuple[int, set[int]]] = []
        if len(tokens) >= self.ngram:
            checks += [(self.ngram, self.long_grams), (self.short, self.short_grams_mid)]
        elif len(tokens) >= self.short:
            checks.append((self.short, self.short_grams_all))
        checks += [(length, whole) for length, whole in self.tiny.items() if length <= len(tokens)]
        for size, target in checks:
            if not target:
                continue
            for gram in _grams(tokens, size):
                text = " ".join(gram)
                if hash(text) in target:
                    return self.source_of(text), text
        return None

    def source_of(self, shared: str) -> int:
        """Which eval question holds the shared words (searched only when a row matched)."""
        if self._normalised is None:
            self._normalised = [f" {normalise(q)} " for q in self.questions]
        needle = f" {shared} "
        return next((i for i, text in enumerate(self._normalised) if needle in text), -1)


def _add(target: set[int], grams) -> None:
    target.update(hash(" ".join(gram)) for gram in grams)


def _grams(tokens: list[str], size: int):
    return [tokens[i : i + size] for i in range(len(tokens) - size + 1)]


class Decontaminator:
    """Each evaluation set's n-gram index, built once per run; `per_set` counts the rows that
    overlapped each set (a row may count in several)."""

    def __init__(self, eval_sets: list[EvalSet], ngram: int = 13, short: int = 8):
        self.indexes = [(s, NgramIndex.build(s.questions, ngram, short)) for s in eval_sets]
        self.per_set = {s.name: 0 for s in eval_sets}

    def marks(self, rows: list[dict[str, Any]], refs=None) -> dict[int, tuple[str, str]]:
        marks: dict[int, tuple[str, str]] = {}
        if not self.indexes:
            return marks
        for i, row in enumerate(rows):
            tokens = words(question_of(row))
            hits = []
            for eval_set, index in self.indexes:
                found = index.match(tokens)
                if found:
                    self.per_set[eval_set.name] += 1
                    number, shared = found
                    hits.append(
                        f"{eval_set.name} question {number + 1} ({len(shared.split())} words shared: '{_clip(shared)}')"
                    )
            if hits:
                marks[i] = (REASON, "overlaps " + "; ".join(hits))
        return marks


def find(
    rows: list[dict[str, Any]], eval_sets: list[EvalSet], ngram: int = 13, short: int = 8, refs=None
) -> tuple[dict[int, tuple[str, str]], dict[str, int]]:
    """Marks for contaminated rows, and how many rows overlapped each set (a row may count in several)."""
    step = Decontaminator(eval_sets, ngram, short)
    return step.marks(rows), step.per_set


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
