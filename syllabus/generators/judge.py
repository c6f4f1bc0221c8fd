"""The LLM judge: the teacher scores each kept question-answer pair against a rubric.

The rubric, its reply format and its few-shot examples live in `judge.j2` (overridable
per project). The judge is a stage (`judge_stage`), asked through the stage runner
and the request cache like every other, so a rerun after a kill asks only the pairs
not yet judged. `check_rubric` holds a template
to its own rubric: every example reply must parse, name only the rubric's flaws and
score 5 minus their number; `syllabus generate` runs it before any request.
"""

from __future__ import annotations

import re
from typing import Any

from ..data.rows import answer_of, question_of
from ..errors import UserError
from ..prompts import Templates
from .parsers import Judgement, ParseError, parse_judgement
from .stages import Stage, StageRunner

RUBRIC_LINE = re.compile(r"^\s*-\s*([A-Za-z][\w ]*?)\s*:", re.MULTILINE)
TOP, BOTTOM = 5, 1
EXAMPLE_CONTEXT = {
    "question": "(the question)",
    "answer": "(the answer)",
    "discipline": "(discipline)",
    "subject": "(subject)",
    "bloom_level": "apply",
}


def rubric_score(flaws: tuple[str, ...] | list[str]) -> int:
    """What the rubric says a reply naming these flaws scores."""
    return max(BOTTOM, TOP - len(flaws))


def check_rubric(templates: Templates, name: str = "judge") -> list[str]:
    """Where the template's example replies disagree with its own rubric (empty: they agree).

    The rubric is the system turn's `- name: meaning` lines; the examples are the
    assistant turns. Each must parse as a judgement, name only rubric flaws, and score
    `rubric_score(flaws)`."""
    messages = templates.render(name, **EXAMPLE_CONTEXT)
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    rubric = {n.strip().casefold().replace(" ", "_") for n in RUBRIC_LINE.findall(system)}
    problems = []
    if not rubric:
        problems.append("the system turn lists no flaws as '- name: meaning' lines")
    examples = [m["content"] for m in messages if m["role"] == "assistant"]
    if not examples:
        problems.append("no example replies ([[assistant]] turns)")
    for number, reply in enumerate(examples, 1):
        try:
            judgement = parse_judgement(reply)
        except ParseError as exc:
            problems.append(f"example {number} does not parse: {exc}")
            continue
        unknown = [flaw for flaw in judgement.flaws if flaw not in rubric]
        if unknown:
            problems.append(f"example {number} names flaws not in the rubric: {', '.join(unknown)}")
        expected = rubric_score(judgement.flaws)
        if judgement.score != expected:
            problems.append(
                f"example {number} scores {judgement.score} but lists {len(judgement.flaws)} "
                f"flaw(s): the rubric gives {expected}"
            )
    return problems


def require_consistent_rubric(templates: Templates) -> None:
    problems = check_rubric(templates)
    if problems:
        raise UserError(
            "the judge template's examples disagree with its rubric: " + "; ".join(problems),
            where=templates.get("judge").origin,
            hint="make each example's Score equal 5 minus the number of flaws it lists",
        )


def judge_variables(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "question": question_of(row),
        "answer": answer_of(row),
        "discipline": row.get("discipline") or "",
        "subject": row.get("subject") or "",
        "bloom_level": row.get("bloom_level") or "",
    }


def judge_stage(sampling) -> Stage[dict[str, Any], Judgement]:
    """The judge: one request per row, `generation.stages.judge` sampling."""
    return Stage("judge", "judge", sampling, variables=judge_variables, parse=parse_judgement)


class Judge:
    """Scores rows through the stage runner; None for a row whose judgement failed or did
    not parse (such rows are kept, and counted as unjudged)."""

    def __init__(self, runner: StageRunner, sampling):
        self.runner = runner
        self.stage = judge_stage(sampling)
        runner.add(self.stage)  # in the summary even when no row reaches it

    async def score_one(self, row: dict[str, Any]) -> Judgement | None:
        return (await self.runner.run(self.stage, row)).first

    async def score(self, rows: list[dict[str, Any]]) -> list[Judgement | None]:
        return [output.first for output in await self.runner.run_all(self.stage, rows)]
