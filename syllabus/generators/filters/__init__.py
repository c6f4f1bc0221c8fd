"""Data-quality filters: steps after the GLAN pipeline that mark rows instead of deleting them.

`run_filters(rows, settings)` runs, in this order, on the rows still kept:

1. checks (checks.py): empty answers, answers that restate the question, truncated answers;
2. decontamination (decontaminate.py): n-gram overlap with the evaluation sets named;
3. exact duplicates (exact.py): normalised question (or question + answer), first kept;
4. near duplicates by MinHash LSH on word shingles (minhash.py);
5. near duplicates by embedding cosine similarity (embedding.py), off unless enabled.

A row fails at most one filter: the first that marks it. Every row comes back with
`filtered_by` (the reason; "" when kept); dropped rows also carry `filter_detail` (which
row it duplicates, which eval question it overlaps). Provenance fields are never touched.
Heavy imports (datasketch, sentence-transformers, datasets) happen inside the filters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checks, decontaminate, embedding, exact, minhash
from .decontaminate import EvalSet, load_eval_set
from .text import row_ref

FILTERS = ("checks", "decontaminate", "exact", "minhash", "embedding")


@dataclass
class FilterReport:
    counts: dict[str, int] = field(default_factory=dict)  # dropped rows per reason (every enabled reason listed)
    per_eval_set: dict[str, int] = field(default_factory=dict)  # rows overlapping each evaluation set
    seconds: dict[str, float] = field(default_factory=dict)  # time per filter
    rows_in: int = 0
    kept: int = 0

    @property
    def dropped(self) -> int:
        return self.rows_in - self.kept

    def as_dict(self) -> dict[str, Any]:
        return {"rows_in": self.rows_in, "kept": self.kept, "dropped": self.dropped, "counts": dict(self.counts),
                "per_eval_set": dict(self.per_eval_set),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


def enabled(settings, eval_sets: list[EvalSet] | None = None) -> list[str]:
    """The filters that will run, in order."""
    c = settings.checks
    on = {
        "checks": c.empty_answer or c.restated_question or c.truncated,
        "decontaminate": bool(settings.decontaminate or eval_sets),
        "exact": settings.exact != "off",
        "minhash": settings.minhash.enabled,
        "embedding": settings.embedding.enabled,
    }
    return [name for name in FILTERS if on[name]]


def run_filters(rows: list[dict[str, Any]], settings, *, eval_sets: list[EvalSet] | None = None,
                base: Path | None = None, progress=None) -> tuple[list[dict], list[dict], FilterReport]:
    """(kept rows, dropped rows, report). `settings` is the `generation.filters` config;
    `eval_sets` are the loaded evaluation sets (else `settings.decontaminate` is read,
    relative to `base` or the current folder). Rows are copied, never changed in place."""
    steps = enabled(settings, eval_sets)
    if "decontaminate" in steps and eval_sets is None:
        eval_sets = [load_eval_set(p, name) for p, name in
                     zip(decontaminate.resolve(settings.decontaminate, base or Path.cwd()), settings.decontaminate)]
    report = FilterReport(rows_in=len(rows))
    report.counts = {reason: 0 for reason in _reasons(settings, steps)}
    report.per_eval_set = {s.name: 0 for s in eval_sets or []} if "decontaminate" in steps else {}
    refs = [row_ref(row, i) for i, row in enumerate(rows)]
    verdict: dict[int, tuple[str, str]] = {}  # position in `rows` -> (reason, detail)
    if progress is not None:
        progress.add_total("filters", len(steps))
    for step in steps:
        alive = [i for i in range(len(rows)) if i not in verdict]
        subset, names = [rows[i] for i in alive], [refs[i] for i in alive]
        start = time.perf_counter()
        marks = _run_step(step, subset, names, settings, eval_sets or [], report)
        report.seconds[step] = time.perf_counter() - start
        for local, mark in marks.items():
            verdict[alive[local]] = mark
            report.counts[mark[0]] = report.counts.get(mark[0], 0) + 1
        if progress is not None:
            progress.advance("filters")
    kept, dropped = [], []
    for i, row in enumerate(rows):
        if i in verdict:
            reason, detail = verdict[i]
            dropped.append({**row, "filtered_by": reason, "filter_detail": detail})
        else:
            kept.append({**row, "filtered_by": ""})
    report.kept = len(kept)
    return kept, dropped, report


def _reasons(settings, steps: list[str]) -> list[str]:
    names = {"checks": checks.reasons(settings.checks), "decontaminate": [decontaminate.REASON],
             "exact": [exact.REASON], "minhash": [minhash.REASON], "embedding": [embedding.REASON]}
    return [reason for step in steps for reason in names[step]]


def _run_step(step: str, rows, refs, settings, eval_sets, report: FilterReport) -> dict[int, tuple[str, str]]:
    if step == "checks":
        return checks.find(rows, settings.checks)
    if step == "decontaminate":
        marks, per_set = decontaminate.find(rows, eval_sets, settings.decontaminate_ngram,
                                            settings.decontaminate_short_ngram, refs=refs)
        report.per_eval_set.update(per_set)
        return marks
    if step == "exact":
        return exact.find(rows, settings.exact, refs=refs)
    if step == "minhash":
        m = settings.minhash
        return minhash.find(rows, m.threshold, m.shingle, m.num_perm, refs=refs)
    if step == "embedding":
        e = settings.embedding
        return embedding.find(rows, e.threshold, e.batch_size, refs=refs)
    raise ValueError(f"unknown filter {step!r}")


__all__ = ["FILTERS", "EvalSet", "FilterReport", "enabled", "load_eval_set", "run_filters"]
