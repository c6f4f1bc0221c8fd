"""Length and format checks: each row on its own, no other row involved.

- empty_answer: the answer has no word at all (blank, or punctuation only);
- restated_question: the answer is (nearly) the question again, by the similarity of
  their normalised word sequences (difflib ratio >= `restate_similarity`);
- truncated: the teacher stopped at max_tokens (`finish_reason == 'length'`).
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any

from ...data.keys import words
from ...data.rows import answer_of, question_of

EMPTY, RESTATED, TRUNCATED = "empty_answer", "restated_question", "truncated"


def restatement(question: list[str], answer: list[str], at_least: float = 0.0) -> float:
    """How much the answer's words are the question's words in the same order: 0..1.

    Below `at_least` any value under it may be returned: difflib's ratio is bounded by
    2 x the shorter length / both lengths (and by its quick_ratio), so an answer much longer
    than its question, as most are, is settled without matching (the check runs on every row)."""
    if not question or not answer:
        return 0.0
    bound = 2 * min(len(question), len(answer)) / (len(question) + len(answer))
    if bound < at_least:
        return bound
    matcher = SequenceMatcher(None, question, answer, autojunk=False)
    quick = matcher.quick_ratio()
    return quick if quick < at_least else matcher.ratio()


def check_row(row: dict[str, Any], config) -> tuple[str, str] | None:
    """(reason, detail) when the row fails a check, else None; checks run in the order above."""
    answer = words(answer_of(row))
    if config.empty_answer and not answer:
        return EMPTY, "the answer has no words"
    if config.restated_question and answer:
        similarity = restatement(words(question_of(row)), answer, at_least=config.restate_similarity)
        if similarity >= config.restate_similarity:
            return RESTATED, f"the answer repeats the question (similarity {similarity:.2f})"
    if config.truncated and row.get("finish_reason") == "length":
        return TRUNCATED, "the answer was cut off at max_tokens (finish_reason 'length')"
    return None


def refused(question: str, answer: str, finish_reason: str | None, config) -> str | None:
    """Why a fresh answer would fail these checks (the answer stage draws it again), or None."""
    failed = check_row({"question": question, "answer": answer, "finish_reason": finish_reason}, config)
    return failed[0] if failed else None


def find(rows: list[dict[str, Any]], config) -> dict[int, tuple[str, str]]:
    marks = {}
    for i, row in enumerate(rows):
        failed = check_row(row, config)
        if failed:
            marks[i] = failed
    return marks


def reasons(config) -> list[str]:
    return [
        name
        for name, on in (
            (EMPTY, config.empty_answer),
            (RESTATED, config.restated_question),
            (TRUNCATED, config.truncated),
        )
        if on
    ]
