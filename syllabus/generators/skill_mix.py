"""Skill-Mix questions: one key concept from each of k different disciplines, in one question.

GLAN's questions combine key concepts of one subject; real problems cross disciplines (a
physics question that needs algebra). Skill-Mix (Yu et al., ICLR 2024) showed that
composing k randomly drawn skills makes text unlike any seen in training, since the
combinations grow like N^k, and that models strong on single skills fail on mixes.

Here a mixed question draws k disciplines of the run (no two alike), and in each a
subject, a session and one of its key concepts; the first discipline's session is the
question's topic. The draw is seeded by (seed, question index, round) alone, as every
question's is, so the same seed draws the same mixes and a later round draws new ones.

`generation.skill_mix.share` of the budget becomes mixed questions (rounded half up, over
the disciplines that may be mixed), taken from those disciplines' own questions by the
largest-remainder method, so the total asked stays the budget. A row credits every
discipline it combines (`taxonomy_paths`).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from ..data.shares import allocate
from ..errors import UserError
from ..taxonomy.curriculum import Session, Subject
from ..taxonomy.model import Node
from .sampling import draw_style, rng_key

DIFFICULTY = "skill-mix"  # the `difficulty` of a mixed row (after two-session in data/levels.py)
RNG_NAME = "@skill-mix"  # stands in for a node path in the RNG key: no slug path holds '@'
CONCEPT_TRIES = 8  # redraws of a part whose concept repeats another part's


@dataclass(frozen=True)
class Part:
    """One discipline's share of a mixed question: a concept of one of its sessions."""

    node: Node
    subject: Subject
    session_index: int
    concept: str

    @property
    def session(self) -> Session:
        return self.subject.sessions[self.session_index]


@dataclass(frozen=True)
class SkillMixItem:
    """Mixed question `index` of a round, with everything drawn for it."""

    index: int
    round: int
    parts: tuple[Part, ...]
    bloom: str
    strategy: str
    sentences: int  # the longest the question may be

    @property
    def topic(self) -> str:
        first = self.parts[0]
        return f"{first.session.title} ({first.subject.name})"

    @property
    def paths(self) -> list[str]:
        return [p.node.path for p in self.parts]

    def variables(self) -> dict[str, Any]:
        """skill_mix.j2's variables, and answer.j2's (the answer stage answers mixed questions too)."""
        first = self.parts[0]
        courses = Subject(" and ".join(p.subject.name for p in self.parts), first.subject.level, [], [])
        return {
            "parts": [
                {"discipline": p.node, "subject": p.subject, "session": p.session, "concept": p.concept}
                for p in self.parts
            ],
            "topic": self.topic,
            "sentences": self.sentences,
            "bloom_level": self.bloom,
            "strategy": self.strategy,
            # What answer.j2 (or an override of it) reads of a question.
            "discipline": first.node,
            "subject": courses,
            "sessions": [p.session for p in self.parts],
            "concepts": [p.concept for p in self.parts],
            "learned": [],
            "syllabus": [p.session.title for p in self.parts],
            "difficulty": DIFFICULTY,
            "seeds": [],
        }


def pairs_of(paths: Sequence[str]) -> list[tuple[str, str]]:
    """Every unordered pair of the disciplines one question combines, each sorted."""
    return [tuple(sorted((a, b))) for i, a in enumerate(paths) for b in paths[i + 1 :]]  # type: ignore[misc]


@dataclass
class SkillMixOutcome:
    """What the mixed questions of a run came to (summary.json's `skill_mix`)."""

    share: float
    k: int
    requested: int = 0
    delivered: int = 0
    note: str | None = None  # why none was asked
    pairs: Counter = field(default_factory=Counter)  # (a, b) -> mixed questions drawn combining them

    def as_dict(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "k": self.k,
            "requested": self.requested,
            "delivered": self.delivered,
            "note": self.note,
            "pairs": [{"a": a, "b": b, "questions": n} for (a, b), n in sorted(self.pairs.items())],
        }


# The budget ------------------------------------------------------------------------------
def mixed_count(total: int, share: float) -> int:
    """round(share x total), halves up, in decimal: 0.35 x 10 is 4, not float's 3.4999..."""
    return int((Decimal(str(share)) * total).to_integral_value(ROUND_HALF_UP))


def excluded(path: str, patterns: Iterable[str]) -> bool:
    """The discipline or one of its ancestors matches a pattern (as --nodes and mix select)."""
    from ..data.mix import matches

    return any(matches(path, pattern.strip("/")) for pattern in patterns)


def mixable(disciplines: Iterable[Node], budget: Mapping[str, int], exclude: Iterable[str]) -> list[Node]:
    """The disciplines a mixed question may draw: asked for questions, and not excluded."""
    patterns = list(exclude)
    return [n for n in disciplines if budget.get(n.path, 0) > 0 and not excluded(n.path, patterns)]


def split_budget(budget: Mapping[str, int], share: float, k: int, mixing: Iterable[str]) -> tuple[dict[str, int], int]:
    """(single-discipline questions per discipline, mixed questions). `share` of the budget of the
    disciplines in `mixing` becomes mixed questions, taken from their own by largest remainder
    (each gives at most what it has); none when fewer than k disciplines may be mixed."""
    pool = {path: budget[path] for path in mixing if budget.get(path, 0) > 0}
    mixed = mixed_count(sum(pool.values()), share) if len(pool) >= k else 0
    taken = allocate(mixed, {path: float(n) for path, n in pool.items()})
    return {path: n - taken.get(path, 0) for path, n in budget.items()}, mixed


# The draw --------------------------------------------------------------------------------
def draw_mix(
    curricula: Sequence[tuple[Node, Sequence[Subject]]],
    index: int,
    *,
    seed: int,
    k: int,
    sentences: int,
    bloom: dict[str, float],
    strategies: dict[str, float],
    round_index: int = 0,
) -> SkillMixItem:
    """Mixed question `index`: k different disciplines drawn by weight from `curricula` (each
    with its subjects that have a syllabus), then in each a subject, a session and a concept.
    The first discipline's node-level Bloom and strategy mixes win over `bloom`/`strategies`."""
    if len(curricula) < k:
        raise ValueError(f"{len(curricula)} discipline(s) to mix, {k} needed")
    rng = random.Random(rng_key(seed, RNG_NAME, index, round_index))
    pool = sorted(curricula, key=lambda entry: entry[0].path)
    chosen: list[tuple[Node, Sequence[Subject]]] = []
    while len(chosen) < k:
        left = [entry for entry in pool if entry not in chosen]
        chosen.append(rng.choices(left, weights=[entry[0].weight if entry[0].weight > 0 else 1.0 for entry in left])[0])
    parts: list[Part] = []
    for node, subjects in chosen:
        for _ in range(CONCEPT_TRIES):
            subject = rng.choice(list(subjects))
            session_index = rng.randrange(len(subject.sessions))
            concept = rng.choice(subject.sessions[session_index].concepts)
            if concept.casefold() not in {p.concept.casefold() for p in parts}:
                break
        parts.append(Part(node, subject, session_index, concept))
    first = parts[0].node
    style_bloom, strategy = draw_style(
        seed=seed,
        node_path=RNG_NAME,
        index=index,
        bloom=first.bloom or bloom,
        strategies=first.strategies or strategies,
        round_index=round_index,
    )
    return SkillMixItem(index, round_index, tuple(parts), style_bloom, strategy, sentences)


# Checks before a run ---------------------------------------------------------------------
def check_settings(
    config, disciplines: Sequence[Node], all_paths: Iterable[str], project_file: Path | None = None
) -> None:
    """Bad `generation.skill_mix` input, before any request: an exclude pattern that matches no
    node, or a selection that leaves fewer than k disciplines to mix (exit 2, file:line)."""
    if config.share <= 0:
        return
    paths = list(all_paths)
    for i, pattern in enumerate(config.exclude):
        if not any(excluded(path, [pattern]) for path in paths):
            raise UserError(
                f"generation.skill_mix.exclude: '{pattern}' matches no node of the taxonomy",
                where=_where(project_file, ("generation", "skill_mix", "exclude", i)),
                hint="patterns are globs over node paths, as for --nodes; see `syllabus taxonomy show`",
            )
    left = [n for n in disciplines if not excluded(n.path, config.exclude)]
    if len(left) < config.k:
        out = [n.path for n in disciplines if n not in left]
        detail = f"; excluded: {', '.join(out)}" if out else ""
        raise UserError(
            f"generation.skill_mix needs {config.k} different disciplines per question, but the selection "
            f"leaves {len(left)} to mix ({', '.join(n.path for n in left) or 'none'}{detail})",
            where=_where(project_file, ("generation", "skill_mix", "exclude" if out else "k")),
            hint="select more disciplines (--nodes), exclude fewer, lower skill_mix.k, or set skill_mix.share: 0",
        )


def _where(project_file: Path | None, loc: tuple) -> str | None:
    if project_file is None or not project_file.is_file():
        return None
    from ..project import _line_for
    from ..yamlio import load

    return f"{project_file}:{_line_for(load(project_file) or {}, loc)}"
