"""Data-quality filters: steps after the GLAN pipeline that mark rows instead of deleting them.

A `FilterChain` runs, in this order, on the rows still kept:

1. checks (checks.py): empty answers, answers that restate the question, truncated answers;
2. decontamination (decontaminate.py): n-gram overlap with the evaluation sets named;
3. exact duplicates (exact.py): normalised question (or question + answer), first kept;
4. near duplicates by MinHash LSH on word shingles (minhash.py);
5. near duplicates by embedding cosine similarity (embedding.py), off unless enabled;
6. the Skill-Mix rubric (skill_judged.py): mixed questions graded on k + 3 points, off unless enabled;
7. the LLM judge (judged.py): the teacher scores each pair on a rubric, off unless enabled.

The chain takes a run's rows a chunk at a time, in order, and each step keeps what it
must remember (digests, LSH index, kept vectors) across chunks: the verdicts equal one
pass over all rows, while memory holds one chunk of rows, not the run. A row fails at
most one filter: the first that marks it. Every row comes back with `filtered_by` (the
reason; "" when kept); dropped rows also carry `filter_detail` (which row it duplicates,
which eval question it overlaps). Provenance fields are never touched.
Heavy imports (datasketch, sentence-transformers, datasets) happen inside the filters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checks, decontaminate, embedding, exact, judged, minhash, skill_judged
from .decontaminate import EvalSet, load_eval_set
from .refs import row_ref

FILTERS = ("checks", "decontaminate", "exact", "minhash", "embedding", "skill_mix_judge", "judge")
CHUNK = 512  # rows a chain takes at a time when it reads a run


@dataclass
class FilterReport:
    counts: dict[str, int] = field(default_factory=dict)  # dropped rows per reason (every enabled reason listed)
    per_eval_set: dict[str, int] = field(default_factory=dict)  # rows overlapping each evaluation set
    seconds: dict[str, float] = field(default_factory=dict)  # time per filter
    rows_in: int = 0
    kept: int = 0
    unjudged: int | None = None  # rows the judge could not score (kept); None when the judge is off
    ungraded: int | None = None  # mixed rows the Skill-Mix rubric could not grade (kept); None when off

    @property
    def dropped(self) -> int:
        return self.rows_in - self.kept

    def as_dict(self) -> dict[str, Any]:
        out = {
            "rows_in": self.rows_in,
            "kept": self.kept,
            "dropped": self.dropped,
            "counts": dict(self.counts),
            "per_eval_set": dict(self.per_eval_set),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }
        if self.unjudged is not None:
            out["unjudged"] = self.unjudged
        if self.ungraded is not None:
            out["ungraded"] = self.ungraded
        return out


def enabled(settings, eval_sets: list[EvalSet] | None = None) -> list[str]:
    """The filters that will run, in order."""
    c = settings.checks
    on = {
        "checks": c.empty_answer or c.restated_question or c.truncated,
        "decontaminate": bool(settings.decontaminate or eval_sets),
        "exact": settings.exact != "off",
        "minhash": settings.minhash.enabled,
        "embedding": settings.embedding.enabled,
        "skill_mix_judge": settings.skill_mix_judge.enabled,
        "judge": settings.judge.enabled,
    }
    return [name for name in FILTERS if on[name]]


Verdict = tuple[str, str]  # (reason, detail)


class FilterChain:
    """The enabled filters over one run's rows, fed chunk by chunk in the rows' order.

    `settings` is the `generation.filters` config; `eval_sets` the loaded evaluation sets
    (else `settings.decontaminate` is read, relative to `base` or the current folder);
    `judge` scores rows (`score(rows) -> [Judgement | None]`), needed when the judge is on;
    `grade` grades mixed rows (`grade(rows) -> [SkillMixVerdict | None]`), needed when the
    Skill-Mix rubric is on."""

    def __init__(
        self,
        settings,
        *,
        eval_sets: list[EvalSet] | None = None,
        base: Path | None = None,
        judge: Callable[[list[dict[str, Any]]], list[Any]] | None = None,
        grade: Callable[[list[dict[str, Any]]], list[Any]] | None = None,
    ):
        self.names = enabled(settings, eval_sets)
        if "decontaminate" in self.names and eval_sets is None:
            eval_sets = [
                load_eval_set(p, name)
                for p, name in zip(
                    decontaminate.resolve(settings.decontaminate, base or Path.cwd()), settings.decontaminate
                )
            ]
        if "judge" in self.names and judge is None:
            raise ValueError("the judge filter is enabled but no judge was given to score rows")
        if "skill_mix_judge" in self.names and grade is None:
            raise ValueError("the skill_mix_judge filter is enabled but no grader was given to grade rows")
        self.report = FilterReport()
        self.report.counts = {reason: 0 for reason in _reasons(settings, self.names)}
        self.report.seconds = {name: 0.0 for name in self.names}
        self._steps = {name: self._step(name, settings, eval_sets or [], judge, grade) for name in self.names}
        if "decontaminate" in self._steps:
            self.report.per_eval_set = self._steps["decontaminate"].per_set  # counted as rows go by
        if "judge" in self.names:
            self.report.unjudged = 0
        if "skill_mix_judge" in self.names:
            self.report.ungraded = 0
        self._position = 0  # rows seen so far: positions name rows that have no node#index

    def _step(self, name: str, settings, eval_sets, judge, grade=None):
        if name == "checks":
            return _Checks(settings.checks)
        if name == "decontaminate":
            return decontaminate.Decontaminator(
                eval_sets, settings.decontaminate_ngram, settings.decontaminate_short_ngram
            )
        if name == "exact":
            return exact.ExactFilter(settings.exact)
        if name == "minhash":
            m = settings.minhash
            return minhash.MinHashFilter(m.threshold, m.shingle, m.num_perm)
        if name == "embedding":
            e = settings.embedding
            return embedding.EmbeddingFilter(e.threshold, e.batch_size)
        if name == "skill_mix_judge":
            return skill_judged.SkillMixJudgeFilter(grade, settings.skill_mix_judge.threshold)
        if name == "judge":
            return judged.JudgeFilter(judge, settings.judge.threshold)
        raise ValueError(f"unknown filter {name!r}")

    def run(self, rows: list[dict[str, Any]]) -> list[Verdict | None]:
        """The verdict on each row of the next chunk, in order (None: kept). The judge's
        `judge_score` is written into the rows it scored."""
        refs = [row_ref(row, self._position + i) for i, row in enumerate(rows)]
        self._position += len(rows)
        verdict: dict[int, Verdict] = {}
        for name, step in self._steps.items():
            alive = [i for i in range(len(rows)) if i not in verdict]
            if not alive:
                break
            start = time.perf_counter()
            marks = step.marks([rows[i] for i in alive], [refs[i] for i in alive])
            self.report.seconds[name] += time.perf_counter() - start
            for local, found in marks.items():
                verdict[alive[local]] = found
                self.report.counts[found[0]] = self.report.counts.get(found[0], 0) + 1
        if "judge" in self._steps:
            self.report.unjudged = self._steps["judge"].unjudged
        if "skill_mix_judge" in self._steps:
            self.report.ungraded = self._steps["skill_mix_judge"].ungraded
        self.report.rows_in += len(rows)
        self.report.kept += len(rows) - len(verdict)
        return [verdict.get(i) for i in range(len(rows))]


class _Checks:
    def __init__(self, config):
        self.config = config

    def marks(self, rows, refs=None) -> dict[int, Verdict]:
        return checks.find(rows, self.config)


def mark(row: dict[str, Any], verdict: Verdict | None) -> dict[str, Any]:
    """The row as written: with `filtered_by` ("" when kept) and, when dropped, `filter_detail`."""
    if verdict is None:
        return {**row, "filtered_by": ""}
    return {**row, "filtered_by": verdict[0], "filter_detail": verdict[1]}


def run_filters(
    rows: list[dict[str, Any]],
    settings,
    *,
    eval_sets: list[EvalSet] | None = None,
    base: Path | None = None,
    progress=None,
    judge=None,
    grade=None,
) -> tuple[list[dict], list[dict], FilterReport]:
    """(kept rows, dropped rows, report) for rows held in memory; the same chain as a run's,
    a chunk at a time. Rows are copied, never changed in place."""
    chain = FilterChain(settings, eval_sets=eval_sets, base=base, judge=judge, grade=grade)
    if progress is not None:
        progress.add_total("filters", len(rows))
    kept: list[dict] = []
    dropped: list[dict] = []
    for start in range(0, len(rows), CHUNK):
        chunk = [dict(row) for row in rows[start : start + CHUNK]]
        for row, verdict in zip(chunk, chain.run(chunk)):
            (kept if verdict is None else dropped).append(mark(row, verdict))
        if progress is not None:
            progress.advance("filters", len(chunk))
    return kept, dropped, chain.report


def _reasons(settings, steps: list[str]) -> list[str]:
    names = {
        "checks": checks.reasons(settings.checks),
        "decontaminate": [decontaminate.REASON],
        "exact": [exact.REASON],
        "minhash": [minhash.REASON],
        "embedding": [embedding.REASON],
        "skill_mix_judge": [skill_judged.REASON],
        "judge": [judged.REASON],
    }
    return [reason for step in steps for reason in names[step]]


__all__ = [
    "CHUNK",
    "FILTERS",
    "EvalSet",
    "FilterChain",
    "FilterReport",
    "enabled",
    "load_eval_set",
    "mark",
    "run_filters",
]
