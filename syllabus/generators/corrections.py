"""The correction stage: the teacher rewrites a wrong answer of the student's.

Learn-to-Reason and LLM2LLM close their loops the same way: examine the student, hand
each mistake (question, the student's answer, the reference) to the teacher, and train
on what it writes. Here that is one stage for the runner: one template
(`prompts/correction.j2`), its sampling (`generation.stages.correction`), `samples`
drafts per mistake. Whether a draft reaches the reference is the loop's call (it grades
with the examination's grader); this side only asks and parses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..taxonomy.model import Node
from .parsers import ParseError
from .stages import Stage

MAX_SHOWN_ANSWER = 600  # characters of the student's answer shown to the teacher (it may run on)
MAX_CORRECTION = 1000  # a correction longer than this is not the one sentence asked for


@dataclass(frozen=True)
class Mistake:
    node: Node  # the discipline the question belongs to
    question: str
    reference: str
    student_answer: str

    def variables(self) -> dict[str, Any]:
        shown = " ".join(self.student_answer.split())[:MAX_SHOWN_ANSWER] or "(no answer)"
        return {
            "discipline": self.node,
            "question": self.question,
            "reference": self.reference,
            "student_answer": shown,
        }


def parse_correction(text: str) -> str:
    """The correction's text: its first paragraph, whitespace tidied."""
    paragraph = next((p for p in text.strip().split("\n\n") if p.strip()), "")
    correction = " ".join(paragraph.split())
    if not correction:
        raise ParseError("empty correction")
    if len(correction) > MAX_CORRECTION:
        raise ParseError("correction runs on")
    return correction


def correction_stage(sampling, samples: int = 1) -> Stage[Mistake, str]:
    return Stage(
        "correction", "correction", sampling, variables=Mistake.variables, parse=parse_correction, samples=samples
    )
