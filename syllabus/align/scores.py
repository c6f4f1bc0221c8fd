"""Step 2 of `syllabus align`: every draft scored by what it does for this student, in a journal.

Two scorers: in context (ARTE: the draft as a worked example before each preference
item, the reference's log-probability against none) and by influence (Montessori-Instruct:
the reference loss after one training step on the draft, the step undone). Each node's
baseline and noise floor are scored first. Every score is one line appended to
`scores.jsonl` and fsynced before the next draft is scored, so a killed run resumes
without scoring any draft twice; a line a kill cut short is dropped before appending.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..generators.drafts import Draft
from ..progress import Progress
from ..students.probes import Probe
from .pairs import Scored

ICL_DRAFTS_IN_FLIGHT = 4  # drafts scored at once: their items fill a local student's batches


class ScoreJournal:
    """scores.jsonl: one line per scored draft or node baseline ("NODE#baseline"), per scorer."""

    def __init__(self, path: Path):
        self.path = path

    def open_for_append(self) -> set[tuple[str, str]]:
        """What is scored already, as (scorer, id), after dropping a line a kill cut short."""
        _cut_partial_line(self.path)
        return {(r["scorer"], r["id"]) for r in self.rows()}

    def rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path, tolerant=True)

    def record(self, record: dict[str, Any]) -> None:
        """One scored line, on disk before the next draft is scored (a kill loses at most the one in flight)."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def baselines(self, scorer: str) -> dict[str, list[float]]:
        field_name = "logprobs" if scorer == "icl" else "losses"
        return {
            r["node"]: r[field_name] for r in self.rows() if r["scorer"] == scorer and r["id"].endswith("#baseline")
        }

    def scored(self, drafts: list[Draft]) -> tuple[dict[str, dict[str, list[Scored]]], dict[str, dict[str, float]]]:
        """scorer -> node -> scored drafts, and scorer -> node -> noise floor."""
        by_id = {d.id: d for d in drafts}
        scored: dict[str, dict[str, list[Scored]]] = {}
        noise: dict[str, dict[str, float]] = {}
        for r in self.rows():
            if r["id"].endswith("#baseline"):
                noise.setdefault(r["scorer"], {})[r["node"]] = r["noise_floor"]
            elif r["id"] in by_id:
                scored.setdefault(r["scorer"], {}).setdefault(r["node"], []).append(
                    Scored(by_id[r["id"]], r["scorer"], r["help"], tuple(r["per_item"]), r.get("accuracy"))
                )
        return scored, noise


async def score_in_context(
    journal: ScoreJournal,
    backend: Any,
    items: dict[str, list[Probe]],
    todo: list[Draft],
    done: set[tuple[str, str]],
    view: Progress,
    *,
    max_tokens: int,
) -> None:
    """ARTE's score of each draft in `todo`: the mean change of the reference's log-probability over
    the node's items with the draft shown first, against the node's baseline (scored first)."""
    from ..students.preference import InContextScorer

    for node, node_items in items.items():
        scorer = InContextScorer(backend, node_items, max_tokens=max_tokens)
        if ("icl", f"{node}#baseline") not in done:
            baseline = await scorer.baseline()
            noise = await scorer.noise_floor(baseline)
            journal.record(
                {
                    "scorer": "icl",
                    "id": f"{node}#baseline",
                    "node": node,
                    "logprobs": list(baseline.logprobs),
                    "accuracy": baseline.accuracy,
                    "noise_floor": noise,
                }
            )
        view.advance("score icl", 2)
        await _drafts_in_context(
            journal, scorer, journal.baselines("icl")[node], [d for d in todo if d.node == node], view
        )


async def _drafts_in_context(journal: ScoreJournal, scorer: Any, base: list[float], drafts: list[Draft], view) -> None:
    in_flight = asyncio.Semaphore(ICL_DRAFTS_IN_FLIGHT)

    async def one(draft: Draft) -> None:
        async with in_flight:
            scored = await scorer.draft(draft.question, draft.rationale)
        per_item = [a - b for a, b in zip(scored.logprobs, base)]
        journal.record(
            {
                "scorer": "icl",
                "id": draft.id,
                "node": draft.node,
                "help": sum(per_item) / len(per_item),
                "per_item": per_item,
                "accuracy": scored.accuracy,
            }
        )
        view.advance("score icl")

    await asyncio.gather(*(one(d) for d in drafts))


def score_influence(
    journal: ScoreJournal,
    scorer: Any,
    items: dict[str, list[Probe]],
    todo: list[Draft],
    done: set[tuple[str, str]],
    view: Progress,
    *,
    prompt_of: Callable[[str], list[dict[str, str]]],
    exact: bool,
    any_draft: Callable[[str], Draft],
) -> None:
    """Montessori-Instruct's score of each draft in `todo`: how much one step on it lowers the
    reference loss of the node's items (the step undone after), against the node's noise floor:
    one draft (`any_draft(node)` when the node has none to do) scored twice."""
    from ..students.influence import Example

    measure = scorer.exact if exact else scorer.fast
    for node, node_items in items.items():
        scorer.use_reference([Example.of(prompt_of(p.question), p.answer) for p in node_items])
        mine = [d for d in todo if d.node == node]
        if ("influence", f"{node}#baseline") not in done:
            probe = mine[0] if mine else any_draft(node)
            example = Example.of(prompt_of(probe.question), probe.rationale)
            first, second = scorer.exact(example), scorer.exact(example)
            journal.record(
                {
                    "scorer": "influence",
                    "id": f"{node}#baseline",
                    "node": node,
                    "losses": list(scorer.before),
                    "noise_floor": max(abs(a - b) for a, b in zip(first.per_item, second.per_item)),
                }
            )
        view.advance("score influence", 2)
        for draft in mine:
            started = time.perf_counter()
            result = measure(Example.of(prompt_of(draft.question), draft.rationale))
            journal.record(
                {
                    "scorer": "influence",
                    "id": draft.id,
                    "node": node,
                    "help": -result.change,
                    "per_item": [-v for v in result.per_item],
                    "mode": result.mode,
                    "seconds": round(time.perf_counter() - started, 4),
                }
            )
            view.advance("score influence")


def _cut_partial_line(path: Path) -> None:
    """Drop whatever follows the last newline of `path` (what a kill cut short), so appends start clean."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def read_jsonl(path: Path, *, tolerant: bool = False) -> list[dict[str, Any]]:
    """Rows of `path` ([] when absent); `tolerant` passes over a line a kill cut short."""
    from ..data.read import iter_jsonl

    if not path.is_file():
        return []
    return [row for _, row in iter_jsonl(path, skipped=[] if tolerant else None)]
