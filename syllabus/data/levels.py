"""The natural order of the level columns, which both sorting and display follow.

Bloom's revised taxonomy (`bloom_level`), the education level (`level`) and the GLAN
`difficulty` (Skill-Mix's `skill-mix` after two-session). Unknown values rank after the
known ones, by name; a missing column ranks every row alike. `mix` orders easy to hard by
them, `stats` draws its histograms in them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_BLOOM_PREFIXES = (
    ("rememb", "knowledge", "recall"),
    ("understand", "comprehen"),
    ("appl",),
    ("analy",),
    ("evaluat",),
    ("creat", "synthes"),
)
EDUCATION_LEVELS = (
    ("preschool", "pre-school", "kindergarten", "early years"),
    ("elementary", "primary", "grade school"),
    ("middle school", "junior high", "lower secondary"),
    ("high school", "secondary", "upper secondary", "pre-university", "sixth form", "a-level"),
    ("undergraduate", "college", "bachelor", "university", "introductory university"),
    ("graduate", "master", "postgraduate", "post-graduate"),
    ("doctoral", "phd", "ph.d", "research", "doctorate"),
)
DIFFICULTIES = ("single-session", "two-session", "skill-mix")  # skill-mix: concepts of k disciplines
UNKNOWN = 99  # rank of a value we do not know: after every known one


def _clean(value: Any) -> str:
    return " ".join(str(value).casefold().replace("_", " ").split()) if value not in (None, "") else ""


def bloom_rank(value: Any) -> int:
    """remember < understand < apply < analyse < evaluate < create (also -ing forms, 'analyze',
    1..6); unknown after them, missing last."""
    text = _clean(value)
    if not text:
        return UNKNOWN + 1
    if text.isdigit() and 1 <= int(text) <= 6:
        return int(text) - 1
    for rank, prefixes in enumerate(_BLOOM_PREFIXES):
        if text.startswith(prefixes):
            return rank
    return UNKNOWN


def level_rank(value: Any) -> int:
    """Education level: preschool < elementary < middle school < high school < undergraduate <
    graduate < doctoral; an exact name first, else the longest name found in the text (so
    'undergraduate level' is never read as 'graduate'); unknown after them, missing last."""
    text = _clean(value)
    if not text:
        return UNKNOWN + 1
    for rank, names in enumerate(EDUCATION_LEVELS):
        if text in names:
            return rank
    found = [(len(name), rank) for rank, names in enumerate(EDUCATION_LEVELS) for name in names if name in text]
    return max(found)[1] if found else UNKNOWN


def difficulty_rank(value: Any) -> int:
    text = _clean(value).replace(" ", "-")
    if not text:
        return UNKNOWN + 1
    return DIFFICULTIES.index(text) if text in DIFFICULTIES else UNKNOWN


RANKS = {"bloom_level": bloom_rank, "level": level_rank, "difficulty": difficulty_rank}


def ordered_counts(values: Iterable[Any], column: str) -> dict[str, int]:
    """A histogram of a level column in its natural order; missing values counted as '(none)'."""
    counts: dict[str, int] = {}
    for value in values:
        key = "(none)" if value in (None, "") else str(value)
        counts[key] = counts.get(key, 0) + 1
    rank = RANKS.get(column)
    if rank is None:  # numbers in numeric order (round 2 before round 10), then text

        def plain(item: tuple[str, int]) -> tuple[int, float, str]:
            try:
                return (0, float(item[0]), item[0])
            except ValueError:
                return (1, 0.0, item[0])

        return dict(sorted(counts.items(), key=plain))
    return dict(sorted(counts.items(), key=lambda kv: (rank(None if kv[0] == "(none)" else kv[0]), kv[0])))
