"""The Skill-Mix rubric for mixed questions: k + 3 points, graded as the paper grades.

Skill-Mix (Yu et al., ICLR 2024; LeoYu/skill-mix) gives a text one point per skill it
shows, one for keeping to the topic, one for making sense, and one for staying within
n sentences; the grader model is asked three times and each point goes by majority; the
length point is counted by program, never by the grader; and a skill point is void when
the text names the skill literally (naming is not showing). Here the text is a mixed
question (`skill_mix.py`) and its skills are its key concepts.

The rubric, its reply format ("Skill N: yes|no; Topic: ...; Sense: ...; Points: N") and its
few-shot examples live in `skill_mix_judge.j2` (overridable per project); a line format
any teacher can follow, no JSON mode or log-probabilities needed. The grader is a stage
(`graders` samples per question) asked through the run's runner and request cache, so a
rerun grades only what was not graded. `check_rubric` holds the template to its own
rubric, as `judge.check_rubric` does for the LLM judge; `syllabus generate` runs it
before any request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..data.keys import normalise
from ..data.rows import question_of
from ..errors import UserError
from ..prompts import Templates
from .parsers import DECORATION, ParseError
from .stages import Stage, StageRunner

TEMPLATE = "skill_mix_judge"
GRADED = ("topic", "sense")  # the points the grader gives besides one per skill
_ANSWER = r"\**\s*(yes|no|y|n|true|false)\b"
SKILL = re.compile(rf"^\W*skill\s*#?\s*(\d{{1,2}})\b[^:\n]*?[:=\-]\s*{_ANSWER}", re.IGNORECASE | re.MULTILINE)
POINT = re.compile(rf"^\W*(topic|(?:makes\s+)?sense)\b[^:\n]*?[:=\-]\s*{_ANSWER}", re.IGNORECASE | re.MULTILINE)
TOTAL = re.compile(r"^\W*points?\b\W*?[:=\-]\s*\**\s*(\d{1,2})\b", re.IGNORECASE | re.MULTILINE)
SEPARATOR = re.compile(r"[;|]")
RUBRIC_LINE = re.compile(r"^\s*-\s*([A-Za-z]+)\b[^:\n]*:", re.MULTILINE)
EXAMPLE_SKILL = re.compile(r"^\s*\d{1,2}\.\s+\S", re.MULTILINE)
# Where a sentence ends: terminal punctuation (closing quotes or brackets after it), space,
# then what starts a sentence. A decimal (3.5) has no space; an initial or abbreviation is skipped.
SENTENCE_END = re.compile(r"([.!?]+)[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9])")
ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "mr", "mrs", "ms", "dr", "prof", "vs", "approx", "fig", "st", "no"})
EXAMPLE_CONTEXT = {
    "question": "(the question)",
    "topic": "(the topic)",
    "skills": [{"concept": "(concept one)", "discipline": "(a discipline)", "subject": "(a course)"}],
}


@dataclass(frozen=True)
class SkillGrade:
    """One grader's reply."""

    skills: tuple[bool, ...]  # concept i is needed by the question
    topic: bool
    sense: bool
    points: int | None  # the total the reply states (the program recounts it)

    @property
    def yes(self) -> int:
        return sum(self.skills) + self.topic + self.sense


def _points(text: str) -> str:
    """The reply with each point on a line of its own, decoration removed."""
    return SEPARATOR.sub("\n", DECORATION.sub("", text))


def _yes(word: str) -> bool:
    return word.casefold() in ("yes", "y", "true")


def parse_skill_grade(text: str, k: int) -> SkillGrade:
    """A grader's reply for a question of k concepts, its points on lines or separated by ';' or
    '|'; every point must be there (the last naming a point wins: a weak grader may think aloud
    first). Skills past k are left out."""
    text = _points(text)
    skills: dict[int, bool] = {}
    for match in SKILL.finditer(text):
        skills[int(match.group(1))] = _yes(match.group(2))
    graded: dict[str, bool] = {}
    for match in POINT.finditer(text):
        graded["topic" if match.group(1).casefold() == "topic" else "sense"] = _yes(match.group(2))
    missing = [f"skill {i}" for i in range(1, k + 1) if i not in skills] + [p for p in GRADED if p not in graded]
    if len(missing) == k + len(GRADED):
        raise ParseError("no 'Skill N: yes|no' lines")
    if missing:
        raise ParseError(f"no {missing[0]} line")
    totals = TOTAL.findall(text)
    return SkillGrade(
        tuple(skills[i] for i in range(1, k + 1)),
        graded["topic"],
        graded["sense"],
        int(totals[-1]) if totals else None,
    )


# What the program decides --------------------------------------------------------------
def count_sentences(text: str) -> int:
    """Sentences in `text`: each paragraph is at least one, and each sentence end inside it
    (not after an abbreviation or an initial) starts another."""
    count = 0
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        flat = " ".join(paragraph.split())
        if not flat:
            continue
        count += 1
        for match in SENTENCE_END.finditer(flat):
            before = flat[: match.start()].rsplit(" ", 1)[-1].casefold().rstrip(".")
            initial = before.rsplit(".", 1)[-1]  # "J." of a name, "S." of "U.S."
            if match.group(1) == "." and (before in ABBREVIATIONS or (len(initial) == 1 and initial.isalpha())):
                continue
            count += 1
    return count


def named_literally(concept: str, text: str) -> bool:
    """The concept's name appears in the text as whole words (case, punctuation and spacing aside)."""
    name = normalise(concept)
    return bool(name) and f" {name} " in f" {normalise(text)} "


@dataclass(frozen=True)
class SkillMixVerdict:
    """The k + 3 points of one mixed question, with each point lost and why."""

    points: int
    total: int
    lost: tuple[str, ...]
    graders: int  # replies that parsed

    def detail(self, needed: int) -> str:
        return f"{self.points}/{self.total} points, {needed} needed (lost: {'; '.join(self.lost) or 'none'})"


def award(question: str, concepts: Sequence[str], grades: Sequence[SkillGrade], sentences: int) -> SkillMixVerdict:
    """The points: each graded point by strict majority of `grades` (a tie is no), a concept's
    point void when the question names it, and the length point counted here."""
    if not grades:
        raise ValueError("no grade to award points from")
    k = len(concepts)

    def majority(votes: list[bool]) -> bool:
        return sum(votes) * 2 > len(votes)

    points, lost = 0, []
    for i, concept in enumerate(concepts):
        if named_literally(concept, question):
            lost.append(f"skill {i + 1} '{concept}' named literally")
        elif not majority([g.skills[i] if i < len(g.skills) else False for g in grades]):
            lost.append(f"skill {i + 1} '{concept}' not needed (graders)")
        else:
            points += 1
    for name in GRADED:
        if majority([getattr(g, name) for g in grades]):
            points += 1
        else:
            lost.append(f"{name} (graders)")
    length = count_sentences(question)
    if length <= sentences:
        points += 1
    else:
        lost.append(f"{length} sentences > {sentences}")
    return SkillMixVerdict(points, k + len(GRADED) + 1, tuple(lost), len(grades))


# The grader as a stage ------------------------------------------------------------------
def grade_variables(row: dict[str, Any]) -> dict[str, Any]:
    """A mixed row's question, topic (its first session and subject) and concepts."""
    concepts = list(row.get("key_concepts") or [])
    disciplines = list(row.get("disciplines") or [])
    subjects = list(row.get("subjects") or [])
    sessions = list(row.get("sessions") or [])
    topic = f"{sessions[0]} ({subjects[0]})" if sessions and subjects else str(row.get("subject") or "")
    return {
        "question": question_of(row),
        "topic": topic,
        "skills": [
            {
                "concept": concept,
                "discipline": disciplines[i] if i < len(disciplines) else "",
                "subject": subjects[i] if i < len(subjects) else "",
            }
            for i, concept in enumerate(concepts)
        ],
    }


def skill_mix_judge_stage(sampling, k: int, graders: int = 3) -> Stage[dict[str, Any], SkillGrade]:
    """The grader: `graders` requests per mixed question (sampling `generation.stages.skill_mix_judge`);
    a question counts as kept once any reply parsed, its replies combined into one tuple."""
    return Stage(
        TEMPLATE,
        TEMPLATE,
        sampling,
        variables=grade_variables,
        parse=lambda text: parse_skill_grade(text, k),
        samples=graders,
        combine=lambda grades: [tuple(grades)] if grades else [],
    )


class SkillMixJudge:
    """Grades mixed rows through the stage runner: a verdict per row, None where no reply parsed."""

    def __init__(self, runner: StageRunner, sampling, *, k: int, graders: int, sentences: int):
        self.runner = runner
        self.stage = skill_mix_judge_stage(sampling, k, graders)
        self.sentences = sentences
        runner.add(self.stage)  # in the summary even when no row reaches it

    def verdict(self, row: dict[str, Any], grades: tuple[SkillGrade, ...] | None) -> SkillMixVerdict | None:
        if not grades:
            return None
        return award(question_of(row), list(row.get("key_concepts") or []), grades, self.sentences)

    async def grade(self, rows: list[dict[str, Any]]) -> list[SkillMixVerdict | None]:
        outputs = await self.runner.run_all(self.stage, rows)
        return [self.verdict(row, output.first) for row, output in zip(rows, outputs)]


# The template against its own rubric ------------------------------------------------------
def check_rubric(templates: Templates, name: str = TEMPLATE) -> list[str]:
    """Where the template's example replies disagree with its own rubric (empty: they agree).

    The rubric is the system turn's `- name: meaning` lines (skill, topic, sense); the examples
    are the assistant turns, each graded against the concepts its user turn lists. Each must
    parse, name only rubric points, and state as Points the number of its yes points."""
    messages = templates.render(name, **EXAMPLE_CONTEXT)
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    rubric = {n.casefold() for n in RUBRIC_LINE.findall(system)}
    problems = []
    missing = [point for point in ("skill", *GRADED) if point not in rubric]
    if missing:
        problems.append(f"the system turn lists no '- {missing[0]}: meaning' line")
    pairs = [(messages[i - 1]["content"], m["content"]) for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not pairs:
        problems.append("no example replies ([[assistant]] turns)")
    for number, (asked, reply) in enumerate(pairs, 1):
        k = len(EXAMPLE_SKILL.findall(asked))
        if k == 0:
            problems.append(f"example {number}'s question lists no numbered concepts ('1. concept')")
            continue
        try:
            grade = parse_skill_grade(reply, k)
        except ParseError as exc:
            problems.append(f"example {number} does not parse: {exc}")
            continue
        named = {word.casefold() for word in re.findall(r"^\W*([A-Za-z]+)\b[^:\n]*:", _points(reply), re.MULTILINE)}
        unknown = sorted(named - rubric - {"points"})
        if unknown:
            problems.append(f"example {number} grades points not in the rubric: {', '.join(unknown)}")
        if len(SKILL.findall(_points(reply))) != k:
            problems.append(f"example {number} grades another number of skills than the {k} its question lists")
        if grade.points != grade.yes:
            problems.append(
                f"example {number} states Points: {grade.points} but has {grade.yes} yes point(s): "
                f"Points must count them"
            )
    return problems


def require_consistent_rubric(templates: Templates) -> None:
    problems = check_rubric(templates)
    if problems:
        raise UserError(
            "the skill_mix_judge template's examples disagree with its rubric: " + "; ".join(problems),
            where=templates.get(TEMPLATE).origin,
            hint="give every example one 'Skill N' line per listed concept, Topic, Sense, and Points = its yes count",
        )
