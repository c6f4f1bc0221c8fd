"""How a question's key concepts are drawn (GLAN): 1-5 concepts of one session, or of two.

Each question has its own RNG seeded by (seed, node, question index, round), so question
k is the same whatever else is generated: asking for more questions later extends
the set instead of reshuffling it, and a resumed run draws exactly what it drew.
Round 0 keeps the seed it always had (so existing caches still answer it); a later
round folds its number in, so round r draws, and asks, questions round 0 did not.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..data.shares import allocate  # noqa: F401 - the question budget (glan.py) splits by it
from ..taxonomy.curriculum import Session, Subject

LEARNED_LIMIT = 12  # concepts of earlier sessions shown as "already learned"
ROUND_STRIDE = 1 << 32  # question sample indices of one round: round * ROUND_STRIDE + question index


def rng_key(seed: int, node_path: str, index: int, round_index: int = 0) -> str:
    """The RNG seed of question `index`: round 0's is the historical one, unchanged."""
    key = f"{seed}:{node_path}:{index}"
    return key if round_index == 0 else f"{key}:round{round_index}"


def question_sample(index: int, round_index: int = 0) -> int:
    """The sample index of question `index`'s request (part of its cache key): distinct per round and
    question, so even a draw that repeats an earlier round's prompt is a new sample, not a cache hit."""
    if not 0 <= index < ROUND_STRIDE or round_index < 0:
        raise ValueError(f"question {index} of round {round_index} is out of range")
    return round_index * ROUND_STRIDE + index


@dataclass(frozen=True)
class Combination:
    subject: Subject
    session_indices: tuple[int, ...]
    concepts: tuple[str, ...]
    learned: tuple[str, ...]

    @property
    def difficulty(self) -> str:
        return "two-session" if len(self.session_indices) == 2 else "single-session"

    @property
    def sessions(self) -> list[Session]:
        return [self.subject.sessions[i] for i in self.session_indices]


def draw(
    subjects: list[Subject],
    index: int,
    *,
    seed: int,
    node_path: str,
    concepts: tuple[int, int],
    two_session_ratio: float,
    round_index: int = 0,
) -> Combination:
    rng = random.Random(rng_key(seed, node_path, index, round_index))
    subject = subjects[index % len(subjects)]
    sessions = subject.sessions
    low, high = concepts
    if len(sessions) >= 2 and high >= 2 and rng.random() < two_session_ratio:
        first, second = sorted(rng.sample(range(len(sessions)), 2))
        picked = [rng.choice(sessions[first].concepts), rng.choice(sessions[second].concepts)]
        pool = [c for c in sessions[first].concepts + sessions[second].concepts if c not in picked]
        top = min(high, len(pool) + 2)
        want = rng.randint(min(max(low, 2), top), top) - 2
        chosen = tuple(picked + rng.sample(pool, min(want, len(pool))))
        indices: tuple[int, ...] = (first, second)
    else:
        first = rng.randrange(len(sessions))
        pool = sessions[first].concepts
        k = rng.randint(min(low, len(pool)), min(high, len(pool)))
        chosen = tuple(rng.sample(pool, k))
        indices = (first,)
    learned = [c for s in sessions[:first] for c in s.concepts][-LEARNED_LIMIT:]
    return Combination(subject, indices, chosen, tuple(learned))


def weighted_choice(rng: random.Random, weights: dict[str, float]) -> str:
    """One key drawn by weight; keys are sorted first so a mix written in any order draws the same."""
    names = sorted(name for name, weight in weights.items() if weight > 0)
    return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]


def draw_style(
    *,
    seed: int,
    node_path: str,
    index: int,
    bloom: dict[str, float],
    strategies: dict[str, float],
    round_index: int = 0,
) -> tuple[str, str]:
    """(Bloom level, answer strategy) of question `index`, from its own RNG (the concepts' draw is untouched)."""
    rng = random.Random(rng_key(seed, node_path, index, round_index) + ":style")
    return weighted_choice(rng, bloom), weighted_choice(rng, strategies)
