"""Exact duplicates: the same normalised question (or question and answer); the first is kept.

Normalised = case, Unicode forms, punctuation and whitespace folded (`text.normalise`),
hashed with sha256 so the memory per row is one short digest.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .text import answer_of, normalise, question_of, refs_for

REASON = "exact_duplicate"


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(normalise(p) for p in parts).encode()).digest()


def find(rows: list[dict[str, Any]], key: str = "question", refs=None) -> dict[int, tuple[str, str]]:
    """`key`: 'question' drops a row whose question was seen before; 'question_answer' only
    one whose question and answer were both seen together before."""
    if key == "off":
        return {}
    refs = refs_for(rows, refs)
    first_question: dict[bytes, int] = {}
    first_pair: dict[bytes, int] = {}
    marks = {}
    for i, row in enumerate(rows):
        question, answer = question_of(row), answer_of(row)
        q, qa = _digest(question), _digest(question, answer)
        if qa in first_pair:
            j = first_pair[qa]
            marks[i] = (REASON, f"same question and answer as {refs[j]}")
            continue
        if key == "question" and q in first_question:
            j = first_question[q]
            marks[i] = (REASON, f"same question as {refs[j]}")
            continue
        first_pair[qa] = i
        first_question.setdefault(q, i)
    return marks
