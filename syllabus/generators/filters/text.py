"""What every filter reads from a row, and the one text normalisation they share.

Normalising folds case, Unicode compatibility forms, punctuation and whitespace, so
"What is a Group?" and "what is a group" are the same text to every filter.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def words(text: str) -> list[str]:
    return normalise(text).split()


def _content(messages: Any, role: str) -> str:
    if isinstance(messages, str):
        return messages
    if isinstance(messages, list):
        return "\n".join(m.get("content") or "" for m in messages if isinstance(m, dict) and m.get("role") == role)
    return ""


def question_of(row: dict[str, Any]) -> str:
    """The user's turn(s): `prompt` (TRL prompt-completion) or `messages` (conversational)."""
    if "prompt" in row:
        return _content(row["prompt"], "user")
    return _content(row.get("messages"), "user")


def answer_of(row: dict[str, Any]) -> str:
    if "completion" in row:
        return _content(row["completion"], "assistant")
    return _content(row.get("messages"), "assistant")


def row_ref(row: dict[str, Any], position: int) -> str:
    """How a dropped row names the row it duplicates: node#question_index, else its position."""
    if "taxonomy_path" in row and "question_index" in row:
        return f"{row['taxonomy_path']}#{row['question_index']}"
    return f"row {position}"


def refs_for(rows: list[dict[str, Any]], refs=None):
    """Names of `rows` for drop details: the given ones (positions in the whole run), else computed."""
    return refs if refs is not None else [row_ref(row, i) for i, row in enumerate(rows)]
