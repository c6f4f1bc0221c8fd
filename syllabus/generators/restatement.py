"""The restatement stage: the question restated as a statement with a blank where its answer goes.

A 135M teacher handed the reference ("Correct answer: 168") still computes its own answer
and misses: on the example's arithmetic items most hinted corrections never reach the
reference, so the nodes the student is weakest on get the fewest rows. Restating a question
needs no knowledge of its answer, and a small model does it well when shown a few
restatements of the same kind of question ("86 times 3 is ___."). The blank is then filled
with the reference by program, so the row is grounded in the reference and written in the
shape that teaches without wrecking recall (a full sentence that restates the question).

The shots come from the node itself (sound rows of this round and kept rows of earlier
ones, their reference blanked: `cloze_of`), after the template's own general examples.
Whether a filled draft is sound is the loop's call, as for every other draft.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..taxonomy.model import Node
from .parsers import ParseError
from .stages import Stage

BLANK = "___"
_BLANKS = re.compile(r"_{2,}")
_CLAUSE_END = re.compile(r"[.!?](?=\s|$)|[,;:](?=\s)")
MAX_RESTATEMENT = 400  # characters: a restatement is one sentence


@dataclass(frozen=True)
class Cloze:
    node: Node  # the discipline the question belongs to
    question: str
    shots: tuple[tuple[str, str], ...] = ()  # (question, its restatement with the blank) of the same node

    def variables(self) -> dict[str, Any]:
        return {
            "discipline": self.node,
            "question": self.question,
            "shots": [{"question": q, "restatement": r} for q, r in self.shots],
        }


def parse_restatement(text: str) -> str:
    """The restatement: its first line, whitespace tidied, with exactly one blank (written ___)."""
    line = " ".join(next((ln for ln in text.strip().splitlines() if ln.strip()), "").split())
    if not line:
        raise ParseError("empty restatement")
    if len(line) > MAX_RESTATEMENT:
        raise ParseError("restatement runs on")
    blanks = len(_BLANKS.findall(line))
    if blanks != 1:
        raise ParseError("no blank" if blanks == 0 else "more than one blank")
    return _up_to_the_blanks_clause(_BLANKS.sub(BLANK, line))


def _up_to_the_blanks_clause(line: str) -> str:
    """The statement up to the end of the clause that holds the blank: what a small model adds
    after the answer ("..., which is a type of furniture") is its own invention, not the reference."""
    after = line.index(BLANK) + len(BLANK)
    end = _CLAUSE_END.search(line, after)
    kept = line[: end.start()] if end else line
    return kept.rstrip() + ("" if kept.rstrip()[-1:] in ".!?" else ".")


def filled(restatement: str, reference: str) -> str:
    """The restatement with its blank filled by the reference."""
    return restatement.replace(BLANK, reference.strip(), 1)


def cloze_of(answer: str, reference: str) -> str | None:
    """A sound answer with its reference blanked and cut after the blank's clause, as a shot;
    None unless the reference appears once, on one line."""
    pattern = re.compile(rf"(?<!\w){re.escape(reference.strip())}(?!\w)", re.IGNORECASE)
    found = pattern.findall(answer)
    if len(found) != 1 or "\n" in answer.strip():
        return None
    return _up_to_the_blanks_clause(pattern.sub(BLANK, " ".join(answer.split()), count=1))


def restatement_stage(sampling, samples: int = 1) -> Stage[Cloze, str]:
    return Stage(
        "restatement", "restatement", sampling, variables=Cloze.variables, parse=parse_restatement, samples=samples
    )
