"""What a row says, in every format people hand us: its question, its answer, its node.

Formats (TRL's, and what evaluation sets and probe files use):

- prompt/completion: conversational (lists of `{"role", "content"}` messages; the prompt may
  start with a system message) or standard (plain strings), as TRL trains on both;
- `messages`: one conversation, the user turns are the question, the assistant turns the answer;
- OpenAI content parts: a message whose `content` is `[{"type": "text", "text": ...}, ...]`;
- plain columns: `question` (or `input`, `problem`) and `answer`.

The question is the first of `question`, `prompt`, `input`, `problem`, `messages` that holds
text; the answer the first of `answer`, `completion`, `messages`. Every reader of a row
(the filters, stats, mix, probes, the leak check) asks here, so they agree on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeGuard

QUESTION_COLUMNS = ("question", "prompt", "input", "problem")  # text (or prompt messages) columns
CHAT_COLUMN = "messages"
ANSWER_COLUMNS = ("answer", "completion")
TEXT_PART_TYPES = ("text", "input_text", "output_text")  # OpenAI chat and responses content parts
TRL_COLUMNS = ("prompt", "completion", "messages", "chosen", "rejected")  # what TRL reads as text or messages


# Content -------------------------------------------------------------------------------
def is_content_parts(content: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(content, list) and all(isinstance(p, dict) and "type" in p for p in content)


def content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of OpenAI content parts (others skipped)."""
    if isinstance(content, str):
        return content
    if is_content_parts(content):
        return "\n".join(
            p["text"] for p in content if p.get("type") in TEXT_PART_TYPES and isinstance(p.get("text"), str)
        )
    return ""


def turns(value: Any, role: str) -> list[str]:
    """The texts of `role`'s turns in a cell: a string is one turn; a list of messages gives
    those with that role (a message without a role counts for either side)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list):
        return [content_text(m.get("content")) for m in value if isinstance(m, dict) and m.get("role") in (role, None)]
    return []


def _first(row: dict[str, Any], columns: Iterable[str], role: str) -> str:
    for column in columns:
        text = "\n".join(t for t in turns(row.get(column), role) if t)
        if text.strip():
            return text
    return ""


def question_of(row: dict[str, Any]) -> str:
    """The user's question (several user turns joined by a newline); "" when the row has none."""
    return _first(row, (*QUESTION_COLUMNS, CHAT_COLUMN), "user")


def user_turns(row: dict[str, Any]) -> list[str]:
    """Each user turn on its own (a multi-turn row holds a probe in any one of them)."""
    for column in (*QUESTION_COLUMNS, CHAT_COLUMN):
        found = [t for t in turns(row.get(column), "user") if t.strip()]
        if found:
            return found
    return []


def answer_of(row: dict[str, Any]) -> str:
    return _first(row, (*ANSWER_COLUMNS, CHAT_COLUMN), "assistant")


def node_of(row: dict[str, Any]) -> str:
    """The row's node: the first of a mixed row's (Skill-Mix), or "" when it names none."""
    value = row.get("taxonomy_path")
    return value if isinstance(value, str) else ""


def nodes_of(row: dict[str, Any]) -> list[str]:
    """Every node the row belongs to: a mixed row's `taxonomy_paths` (each credited once), else
    its `taxonomy_path` alone; [] when it names none. Counts per node credit each of them."""
    paths = row.get("taxonomy_paths")
    if isinstance(paths, list) and paths and all(isinstance(p, str) and p for p in paths):
        return list(dict.fromkeys(paths))
    node = node_of(row)
    return [node] if node else []


def has_column(rows: Iterable[dict[str, Any]], column: str) -> bool:
    """True when any row carries a non-empty value in `column`."""
    return any(row.get(column) not in (None, "") for row in rows)


def row_format(row: dict[str, Any]) -> str:
    """The TRL format of a row's columns, for messages that name it."""
    if "prompt" in row and "completion" in row:
        return "prompt-completion"
    if CHAT_COLUMN in row:
        return "messages"
    return "columns " + ", ".join(sorted(row)[:8])


# TRL cells -----------------------------------------------------------------------------
def cell_problem(value: Any) -> str | None:
    """What TRL would choke on in a prompt/completion/messages/chosen/rejected/text cell, or None.

    TRL takes text, or a non-empty list of messages each with a role and content; content
    parts are taken when every part is text (`plain_messages` turns them into strings)."""
    if isinstance(value, str):
        return None if value.strip() else "is empty"
    if not isinstance(value, list) or not value:
        return "must be text or a non-empty list of messages"
    for message in value:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not message["role"]:
            return "has a message without role or text content"
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not is_content_parts(content):
            return "has a message without role or text content"
        other = next(
            (p["type"] for p in content if p.get("type") not in TEXT_PART_TYPES or not isinstance(p.get("text"), str)),
            None,
        )
        if other is not None:
            return f"has a content part of type '{other}': the student is trained on text only"
    return None


def has_content_parts(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(m, dict) and is_content_parts(m.get("content")) for m in value)


def _text_only(content: Any) -> bool:
    return is_content_parts(content) and all(
        p.get("type") in TEXT_PART_TYPES and isinstance(p.get("text"), str) for p in content
    )


def plain_messages(value: Any) -> Any:
    """Messages whose content parts are all text, with that text as their content: any chat
    template renders it, and Arrow can hold a conversation that mixed the two forms.
    Anything else as it is."""
    if not has_content_parts(value):
        return value
    return [
        {**m, "content": content_text(m["content"])} if isinstance(m, dict) and _text_only(m.get("content")) else m
        for m in value
    ]


def plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row with `plain_messages` applied to its TRL columns (the row itself when nothing changes)."""
    if not any(has_content_parts(row.get(c)) for c in TRL_COLUMNS):
        return row
    return {k: plain_messages(v) if k in TRL_COLUMNS else v for k, v in row.items()}
