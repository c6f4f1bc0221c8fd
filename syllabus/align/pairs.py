"""From scored drafts to preference pairs the teacher can be trained on, and choices it can't.

A draft's *help* is how much it moves the student the right way: for the in-context
scorer, the reference log-probability with the draft as example minus without; for the
influence scorer, minus the change of the reference loss after one step on it. Both are
means over the node's items, and each item's own value is kept, because whether two
drafts differ is a question about those items: a pair is kept only when the chosen
draft's help beats the rejected one's by more than the margin, the larger of the
measured noise floor and the standard error of their per-item differences. Noise around
zero then flips no label (the pitfall of Montessori-Instruct's code).

Two levels, as in ARTE: *rationale* pairs (per question, its best over its worst
rationale, under the plain question: the strategy instruction is erased, so the teacher
learns to answer that way unasked) and *question* pairs (questions from the top quarter
over the bottom quarter of the node by mean help over their rationales, under the
question stage's own prompt). Rows are TRL's conversational preference format with
both scores, the margin and where each side came from.

Where the teacher cannot be trained (an API model), the same scores pick what the
project can already change: the best drafts become the node's few-shot exemplars, and
the strategy and Bloom-level mixes lean toward those that helped (`in_context_choices`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..generators.drafts import Draft

EXPLORATION = 0.2  # share of a mix kept uniform, so an arm that scored badly once is still tried
EXEMPLARS = 3  # few-shot exemplars a node's question template shows


@dataclass(frozen=True)
class Scored:
    draft: Draft
    scorer: str  # "icl" | "influence"
    help: float  # mean over the items; higher helps more
    per_item: tuple[float, ...]  # each item's help (empty where the scorer gives none)
    accuracy: float | None = None  # in-context: share of items right with the draft as example


def standard_error(a: Iterable[float], b: Iterable[float]) -> float:
    """Standard error of the mean of the paired differences a_i - b_i (0 with fewer than 2 items)."""
    diffs = [x - y for x, y in zip(a, b)]
    if len(diffs) < 2:
        return 0.0
    mean = sum(diffs) / len(diffs)
    variance = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return math.sqrt(variance / len(diffs))


def margin(chosen: Scored, rejected: Scored, noise_floor: float) -> float:
    return max(noise_floor, standard_error(chosen.per_item, rejected.per_item))


def _pair(
    level: str, prompt: list[dict[str, str]], chosen: Scored, rejected: Scored, needed: float, noise_floor: float
) -> dict[str, Any]:
    text = (lambda s: s.draft.rationale) if level == "rationale" else (lambda s: s.draft.question)
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": text(chosen)}],
        "rejected": [{"role": "assistant", "content": text(rejected)}],
        "level": level,
        "taxonomy_path": chosen.draft.node,
        "scorer": chosen.scorer,
        "chosen_score": chosen.help,
        "rejected_score": rejected.help,
        "margin": needed,
        "noise_floor": noise_floor,
        "chosen_id": chosen.draft.id,
        "rejected_id": rejected.draft.id,
        "chosen_strategy": chosen.draft.strategy,
        "rejected_strategy": rejected.draft.strategy,
    }


def rationale_pairs(scored: list[Scored], noise_floor: float, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Per question: its best rationale over its worst, where they differ beyond the margin."""
    by_question: dict[int, list[Scored]] = defaultdict(list)
    for s in scored:
        by_question[s.draft.question_index].append(s)
    pairs = []
    for index in sorted(by_question):
        group = sorted(by_question[index], key=lambda s: (-s.help, s.draft.rationale_index))
        best, worst = group[0], group[-1]
        if best is worst or best.draft.rationale == worst.draft.rationale:
            continue
        needed = margin(best, worst, noise_floor)
        if best.help - worst.help > needed:
            prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
                {"role": "user", "content": best.draft.question}
            ]
            pairs.append(_pair("rationale", prompt, best, worst, needed, noise_floor))
    return pairs


def question_scores(scored: list[Scored]) -> list[Scored]:
    """One entry per question: the mean help (and per-item help) over its rationales."""
    by_question: dict[int, list[Scored]] = defaultdict(list)
    for s in scored:
        by_question[s.draft.question_index].append(s)
    out = []
    for index in sorted(by_question):
        group = sorted(by_question[index], key=lambda s: s.draft.rationale_index)
        per_item = tuple(sum(v) / len(group) for v in zip(*(s.per_item for s in group))) if group[0].per_item else ()
        out.append(Scored(group[0].draft, group[0].scorer, sum(s.help for s in group) / len(group), per_item))
    return out


def question_pairs(scored: list[Scored], noise_floor: float) -> list[dict[str, Any]]:
    """Questions of the top quarter over those of the bottom quarter, each pair beyond its margin."""
    questions = sorted(question_scores(scored), key=lambda s: (-s.help, s.draft.question_index))
    if len(questions) < 2:
        return []
    quarter = max(1, math.ceil(len(questions) / 4))
    top, bottom = questions[:quarter], questions[-quarter:]
    pairs = []
    for chosen in top:
        for rejected in bottom:
            if chosen is rejected or chosen.draft.question == rejected.draft.question:
                continue
            needed = margin(chosen, rejected, noise_floor)
            if chosen.help - rejected.help > needed:
                prompt = [{"role": r, "content": c} for r, c in chosen.draft.question_prompt]
                pairs.append(_pair("question", prompt, chosen, rejected, needed, noise_floor))
    return pairs


def agreed(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs both scorers keep the same way round (`--scorer both`), with the second's scores beside."""
    other = {(p["level"], p["chosen_id"], p["rejected_id"]): p for p in second}
    out = []
    for pair in first:
        match = other.get((pair["level"], pair["chosen_id"], pair["rejected_id"]))
        if match is not None:
            out.append(
                {
                    **pair,
                    "scorer": "both",
                    "influence_chosen_score": match["chosen_score"],
                    "influence_rejected_score": match["rejected_score"],
                    "influence_margin": match["margin"],
                }
            )
    return out


def _mix(helps: dict[str, list[float]], arms: Iterable[str]) -> dict[str, float]:
    """Weights over `arms`: a softmax of each arm's mean help (temperature: the spread of those
    means), mixed with EXPLORATION spread evenly; an arm never drafted is taken as an average
    one (neither favoured nor starved: it has not been tried)."""
    arms = list(arms)
    means = {a: sum(v) / len(v) for a, v in helps.items() if v and a in arms}
    if not arms:
        return {}
    if not means:
        return {a: round(1 / len(arms), 4) for a in arms}
    spread = (max(means.values()) - min(means.values())) or 1.0
    top, average = max(means.values()), sum(means.values()) / len(means)
    lean = {a: math.exp((means.get(a, average) - top) / spread) for a in arms}
    total = sum(lean.values())
    return {a: round(EXPLORATION / len(arms) + (1 - EXPLORATION) * lean[a] / total, 4) for a in arms}


def in_context_choices(
    scored: list[Scored], noise_floor: float, strategies: Iterable[str], bloom_levels: Iterable[str]
) -> dict[str, Any]:
    """For a teacher whose weights stay as they are: exemplars and mixes for one node."""
    questions = sorted(question_scores(scored), key=lambda s: (-s.help, s.draft.question_index))
    best_rationale: dict[int, Scored] = {}
    for s in sorted(scored, key=lambda s: -s.help):
        best_rationale.setdefault(s.draft.question_index, s)
    exemplars = [
        {"question": q.draft.question, "answer": best_rationale[q.draft.question_index].draft.rationale}
        for q in questions
        if q.help > noise_floor
    ][:EXEMPLARS]
    by_strategy: dict[str, list[float]] = defaultdict(list)
    for s in scored:
        by_strategy[s.draft.strategy].append(s.help)
    by_bloom: dict[str, list[float]] = defaultdict(list)
    for q in questions:
        by_bloom[q.draft.bloom_level].append(q.help)
    return {"seeds": exemplars, "strategies": _mix(by_strategy, strategies), "bloom": _mix(by_bloom, bloom_levels)}
