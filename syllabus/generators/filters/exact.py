"""Exact duplicates: the same normalised question (or question and answer); the first is kept.

The key is the data layer's question key (`data/keys.py`): case, Unicode forms, punctuation
and whitespace folded, hashed with sha256 so the memory per row is one short digest. The
probe-leak check uses the same key, so what dedup calls one question, it does too.
"""

from __future__ import annotations

from typing import Any

from ...data.keys import question_key, text_key
from ...data.rows import answer_of, question_of
from .refs import refs_for

REASON = "exact_duplicate"


class ExactFilter:
    """The digests of every row kept so far, across the chunks of a run: one short digest per row.

    `key`: 'question' drops a row whose question was seen before; 'question_answer' only
    one whose question and answer were both seen together before."""

    def __init__(self, key: str = "question"):
        self.key = key
        self._first_question: dict[bytes, str] = {}
        self._first_pair: dict[bytes, str] = {}

    def marks(self, rows: list[dict[str, Any]], refs) -> dict[int, tuple[str, str]]:
        if self.key == "off":
            return {}
        marks = {}
        for i, row in enumerate(rows):
            question, answer = question_of(row), answer_of(row)
            q, qa = question_key(question), text_key(question, answer)
            if qa in self._first_pair:
                marks[i] = (REASON, f"same question and answer as {self._first_pair[qa]}")
                continue
            if self.key == "question" and q in self._first_question:
                marks[i] = (REASON, f"same question as {self._first_question[q]}")
                continue
            self._first_pair[qa] = refs[i]
            self._first_question.setdefault(q, refs[i])
        return marks


def find(rows: list[dict[str, Any]], key: str = "question", refs=None) -> dict[int, tuple[str, str]]:
    """Marks for the duplicates among `rows`, by position."""
    return ExactFilter(key).marks(rows, refs_for(rows, refs))
