"""Tolerant parsers for the teacher's line formats.

Weak teachers number lines, add bold markers, repeat themselves and run on, so
each parser strips decoration, drops repeats, caps list lengths and raises
`ParseError` with a short reason (counted per stage) when nothing usable is left.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from ..taxonomy.curriculum import Session, Subject
from ..taxonomy.model import slugify, unsafe_name

BULLET = re.compile(r"^\s*(?:[-*•+]|\(?\d{1,3}[.)]|[a-z][.)])\s*")
DECORATION = re.compile(r"\*\*|__|`")
SESSION = re.compile(
    r"^\s*#*\s*(?:session|class|lecture|week|lesson|module|unit)\s*(\d{1,3})\s*[:.\-–—)]\s*(.+?)\s*$",
    re.IGNORECASE,
)
DURATION = re.compile(r"\s*[-–—(]\s*\d+\s*(?:minutes?|mins?|hours?|hrs?)\)?\s*$", re.IGNORECASE)
LABEL = re.compile(r"^\s*(?:question|q|homework question|answer|a|solution)\s*\d*\s*(?::|\.(?=\s|$))\s*", re.IGNORECASE)
NON_QUESTIONS = re.compile(
    r"(what would you like|please provide|i'd be happy|i would be happy|could you (?:please )?(?:clarify|provide)|"
    r"as an ai|i cannot|i can't help)",
    re.IGNORECASE,
)


class ParseError(ValueError):
    """The reply had nothing usable; the message is a short reason for the summary."""


def _clean(line: str) -> str:
    return DECORATION.sub("", BULLET.sub("", line, count=1)).strip().strip('"').strip()


def parse_subjects(text: str, limit: int, rejected: Counter | None = None) -> list[Subject]:
    """Subjects from 'Name | level | topics' lines. A name the node name rules refuse (control
    or escape characters, bidirectional overrides, a path, a reserved device name) is left out
    and counted in `rejected` by reason: it would become a file name and a prompt."""
    subjects: list[Subject] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        line = _clean(raw)
        if not line or line.endswith(":") or line.endswith("?"):
            continue
        if "|" not in line and not re.search(r"\s[-–—]\s", line) and not BULLET.match(raw):
            continue  # prose around the list ("These courses cover the basics."), not a course
        parts = (
            [p.strip() for p in line.split("|")]
            if "|" in line
            else [p.strip() for p in re.split(r"\s+[-–—]\s+", line, maxsplit=2)]
        )
        name = parts[0].strip(" .")
        if not 3 <= len(name) <= 100 or not slugify(name) or slugify(name) in seen:
            continue
        reason = unsafe_name(name)
        if reason:
            if rejected is not None:
                rejected[f"subject name {reason}"] += 1
            continue
        level = parts[1].strip(" .").lower() if len(parts) > 1 and parts[1] and len(parts[1]) <= 40 else None
        subtopics = [t.strip(" .") for t in re.split(r"[,;]", parts[2])] if len(parts) > 2 else []
        seen.add(slugify(name))
        subjects.append(Subject(name=name, level=level, subtopics=[t for t in subtopics if t][:8]))
        if len(subjects) >= limit:
            break
    if not subjects:
        raise ParseError("no 'Name | level | topics' lines")
    return subjects


def parse_syllabus(text: str, max_sessions: int, max_concepts: int = 6) -> list[Session]:
    sessions: list[Session] = []
    titles: set[str] = set()
    current: Session | None = None
    for raw in text.splitlines():
        match = SESSION.match(DECORATION.sub("", raw))
        if match:
            title = DURATION.sub("", match.group(2)).strip(" .:")
            key = slugify(title)
            if not key or key in titles:
                current = None  # a repeated session: ignore it and its concepts
                continue
            titles.add(key)
            current = Session(title=title, concepts=[])
            sessions.append(current)
            continue
        if current is None or not BULLET.match(raw):
            continue
        concept = DURATION.sub("", _clean(raw)).strip(" .")
        if (
            2 <= len(concept) <= 120
            and len(current.concepts) < max_concepts
            and slugify(concept) not in {slugify(c) for c in current.concepts}
        ):
            current.concepts.append(concept)
    sessions = [s for s in sessions if s.concepts][:max_sessions]
    if not sessions:
        raise ParseError("no 'Session N: title' with '- concept' lines")
    return sessions


def parse_question(text: str) -> str:
    """The question, without an answer the teacher added or text it ran on with after asking."""
    lines = []
    for raw in text.strip().splitlines():
        if re.match(r"^\s*(?:\*\*)?(?:answer|solution)\s*[:.]", raw, re.IGNORECASE):
            break  # the teacher answered too: keep only the question
        lines.append(raw)
    paragraphs = [p for p in re.split(r"\n\s*\n", "\n".join(lines)) if p.strip()]
    asking = next((i for i, p in enumerate(paragraphs) if "?" in p), None)
    kept = paragraphs[: asking + 1] if asking is not None else paragraphs[:1]
    question = LABEL.sub("", DECORATION.sub("", "\n\n".join(kept)).strip(), count=1).strip()
    if not question:
        raise ParseError("empty question")
    if len(question) < 15:
        raise ParseError("question too short")
    if NON_QUESTIONS.search(question[:200]):
        raise ParseError("not a question (asked the user instead)")
    return question[:4000]


def parse_answer(text: str) -> str:
    answer = LABEL.sub("", text.strip(), count=1).strip()
    if not answer:
        raise ParseError("empty answer")
    return answer


def parse_proposals(text: str, limit: int) -> list[tuple[str, str]]:
    """(name, description) pairs from 'Name | description' lines, for taxonomy expansion."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        line = _clean(raw)
        if "|" not in line:
            continue
        name, description = (part.strip(" .") for part in line.split("|", 1))
        key = slugify(name)
        if not 2 <= len(name) <= 80 or not key or key in seen or len(description) < 5:
            continue
        seen.add(key)
        found.append((name, description.split("|")[0].strip()))
        if len(found) >= limit:
            break
    if not found:
        raise ParseError("no 'Name | description' lines")
    return found


SCORE = re.compile(r"^\W*score\W*?[:=\-]\s*\**\s*([1-5])(?:\s*(?:/|out of)\s*5)?\b", re.IGNORECASE | re.MULTILINE)
FLAWS = re.compile(r"^\W*flaws?\W*?[:=\-]\s*(.*)$", re.IGNORECASE | re.MULTILINE)
NO_FLAWS = {"", "none", "no flaws", "nothing", "n/a", "-"}


@dataclass(frozen=True)
class Judgement:
    score: int  # 1 (worst) to 5 (best)
    flaws: tuple[str, ...]  # the rubric's flaw names the judge found, as written


def parse_judgement(text: str) -> Judgement:
    """'Flaws: a, b' (or 'none') then 'Score: N' from the judge; the last Score line wins
    (a weak judge may think aloud first), the Flaws line before it is optional."""
    scores = list(SCORE.finditer(text))
    if not scores:
        raise ParseError("no 'Score: N' line (N from 1 to 5)")
    last = scores[-1]
    flaws_lines = [m for m in FLAWS.finditer(text, 0, last.start())]
    flaws: tuple[str, ...] = ()
    if flaws_lines:
        listed = DECORATION.sub("", flaws_lines[-1].group(1)).strip().rstrip(".")
        if listed.casefold() not in NO_FLAWS:
            flaws = tuple(
                dict.fromkeys(
                    part.strip().strip(".").casefold().replace(" ", "_")
                    for part in re.split(r"[,;]", listed)
                    if part.strip().strip(".")
                )
            )
    return Judgement(int(last.group(1)), flaws)
