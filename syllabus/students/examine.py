"""Examine the student on a probe set, node by node.

Three signals: exact or numeric match for short answers, choice accuracy for
multiple choice (the option the student finds most likely), and the mean
log-probability of the reference answer, a smooth signal that still moves for a
135M student long before its free-form answers become right. The match first removes
what the answer restates from the question, so a change of answer style alone (bare
"12000" or "There are 12000 metres in 12 kilometres.") does not move it.

The student is any backend (`embedded`, a folder, or `openai:MODEL` served by vLLM or
llama.cpp): it answers through `complete` and is scored through `score`, which every backend
offers where it can and refuses plainly where it cannot. A probe longer than the model's
context is cut to fit by the backend and counted as truncated, not a crash that loses the exam.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..backends.base import ChatRequest, ScoringUnsupported
from ..errors import UserError
from ..fsutil import atomic_write_jsonl, atomic_write_text, replace_dir
from .probes import Probe

SHORT_ANSWER_WORDS = 8
RESTATED_RUN = 3  # this many consecutive words shared with the question are a restatement, not an answer
# A number: digits with proper thousands commas ("12,000", not the list "1,2,3"), an optional decimal part,
# and a minus sign only where it is not a hyphen or a subtraction between two numbers ("451-186").
NUMBER = re.compile(r"(?:(?<![\w.-])[-\u2212])?(?:\d{1,3}(?:,\d{3})+(?!\d|,\d)|\d+)(?:\.\d+)?|(?<![\w.])-?\.\d+")
_TOKEN = re.compile(NUMBER.pattern + r"|[^\W_]+")
_ARTICLES = frozenset(("the", "a", "an"))
# Closed classes: when the reference is one of them, the answer names one of the same kind, and "which one"
# is decided like the number of a numeric answer. "may", "march" and "august" are ordinary words too, so
# they count as months only when capitalised.
_DAYS = frozenset(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
_MONTHS = frozenset(
    (
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    )
)
_CAPITALISED_ONLY = frozenset(("may", "march", "august"))


@dataclass
class ProbeResult:
    node: str
    question: str
    reference: str
    student_answer: str
    kind: str  # numeric | short | choice | long
    correct: bool | None  # None: a long answer has no exact check
    reference_logprob: float
    truncated: bool = False  # the probe was cut to fit the model's context
    finish_reason: str = "stop"  # "length": the answer ran into max_tokens (a DPO negative it would spoil)


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("\u2212", "-").strip().rstrip("%").lstrip("$"))
    except ValueError:
        return None


@dataclass(frozen=True)
class _Token:
    key: str  # what restatement and matching compare: a casefolded word, or a number's value ("12000", "3.5")
    raw: str
    value: float | None = None  # set for numbers


def _tokens(text: str) -> list[_Token]:
    """Words and numbers in order, articles dropped; numbers keyed by value, so "12,000" restates "12000"."""
    out = []
    for match in _TOKEN.finditer(text):
        raw = match.group()
        value = _number(raw) if NUMBER.fullmatch(raw) else None
        if value is not None:
            # A word never starts with a digit, a minus or a point, so a number's key never equals a word's.
            key = str(int(value)) if value.is_integer() and abs(value) < 1e18 else repr(value)
            out.append(_Token(key, raw, value))
        elif (key := raw.casefold()) not in _ARTICLES:
            out.append(_Token(key, raw))
    return out


def _words(text: str) -> list[str]:
    """The normalised words of a text: casefolded, articles and punctuation gone, numbers by value."""
    return [t.key for t in _tokens(text)]


def _restated(said: list[str], asked: list[str]) -> list[bool]:
    """Which answer positions lie in a run of >= RESTATED_RUN tokens that also occurs consecutively in the
    question: "The capital of Peru is Lima." restates "capital of Peru", and what remains is the answer.
    Longest common runs by dynamic programming over (answer, question) positions; both are short."""
    marked = [False] * len(said)
    previous = [0] * (len(asked) + 1)
    for i, word in enumerate(said):
        current = [0] * (len(asked) + 1)
        for j, other in enumerate(asked):
            if word == other:
                current[j + 1] = previous[j] + 1
                if current[j + 1] >= RESTATED_RUN:
                    for k in range(i - current[j + 1] + 1, i + 1):
                        marked[k] = True
        previous = current
    return marked


def _segments(tokens: list[_Token], marked: list[bool]) -> list[list[_Token]]:
    """The answer with its restated runs cut out; a cut separates, so no match spans a removed run."""
    segments: list[list[_Token]] = [[]]
    for token, gone in zip(tokens, marked):
        if gone:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append(token)
    return [s for s in segments if s]


def _pick(candidates: list[_Token], asked: set[str]) -> _Token | None:
    """The answer's value among several of the reference's kind: the last one, skipping those the question
    itself names while another remains ("There are 12000 metres in 12 kilometres" answers 12000)."""
    fresh = [t for t in candidates if t.key not in asked]
    chosen = fresh or candidates
    return chosen[-1] if chosen else None


def _closed_class(key: str) -> frozenset[str] | None:
    return next((kind for kind in (_DAYS, _MONTHS) if key in kind), None)


def grade(reference: str, answer: str, question: str = "") -> tuple[str, bool | None]:
    """(kind, correct): numeric and short references are checked; long ones are not (None).

    The check must survive a change of answer style: a student that restates the question before
    answering ("There are 12000 metres in 12 kilometres.") is right, and a reference that only appears
    because the question is restated ("If today is Tuesday, in 7 days it will be Wednesday." for
    "Tuesday") is not credited. So what the answer restates from `question` is removed first; an answer
    that is nothing but the reference (the bare "Tuesday.") restates nothing and stays. Without the
    question (old two-argument calls) nothing is removed."""
    expected = _number(reference)
    ref = [t.key for t in _tokens(reference)]
    if expected is None and not 0 < len(ref) <= SHORT_ANSWER_WORDS:
        return "long", None
    asked = [t.key for t in _tokens(question)]
    said = _tokens(answer)
    remaining = _segments(said, _restated([t.key for t in said], asked))
    kept = [t for segment in remaining for t in segment]
    if expected is not None:
        picked = _pick([t for t in kept if t.value is not None], set(asked))
        if picked is None or picked.value is None:
            return "numeric", False
        return "numeric", math.isclose(picked.value, expected, rel_tol=1e-6, abs_tol=1e-9)
    kind = _closed_class(ref[0]) if len(ref) == 1 else None
    if kind is not None:
        named = [t for t in kept if t.key in kind and (t.key not in _CAPITALISED_ONLY or t.raw[0].isupper())]
        picked = _pick(named, set(asked))
        return "short", picked is not None and picked.key == ref[0]
    span = len(ref)
    hit = any(
        [t.key for t in segment[i : i + span]] == ref for segment in remaining for i in range(len(segment) - span + 1)
    )
    return "short", hit


def _choice_prompt(probe: Probe) -> str:
    letters = "ABCDEFGHIJ"
    lines = [probe.question, ""] + [f"{letters[i]}. {option}" for i, option in enumerate(probe.options)]
    return "\n".join(lines)


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def examine(
    backend, probes: list[Probe], *, max_tokens: int = 128, in_flight: int = 32, progress=None
) -> list[ProbeResult]:
    """Results in probe order; `in_flight` probes at a time, so a local backend fills its batches
    and a server its concurrency, while memory stays bounded whatever the probe count."""
    capabilities = await backend.capabilities()
    if not capabilities.prompt_scoring:
        note = capabilities.notes.get("prompt_scoring", "")
        raise UserError(
            f"the student backend cannot score prompts, which the examination needs ({backend.model})",
            hint=note or "examine a local model folder, or a server that returns prompt log-probabilities",
        )
    results: list[ProbeResult | None] = [None] * len(probes)
    next_index = iter(range(len(probes)))

    async def one(probe: Probe) -> ProbeResult:
        if probe.options:
            scores = await backend.score(_user(_choice_prompt(probe)), list(probe.options))
            pick = max(range(len(scores)), key=lambda i: scores[i].mean)
            return ProbeResult(
                probe.node,
                probe.question,
                probe.answer,
                probe.options[pick],
                "choice",
                pick == probe.correct,
                scores[probe.correct].mean,
                any(s.truncated for s in scores),
            )
        request = ChatRequest.from_messages(_user(probe.question), temperature=0.0, max_tokens=max_tokens)
        answer, (score,) = await asyncio.gather(
            backend.complete(request), backend.score(_user(probe.question), [probe.answer])
        )
        kind, correct = grade(probe.answer, answer.text, probe.question)
        truncated = bool(answer.extra.get("truncated")) or score.truncated
        return ProbeResult(
            probe.node,
            probe.question,
            probe.answer,
            answer.text,
            kind,
            correct,
            score.mean,
            truncated,
            answer.finish_reason,
        )

    async def worker() -> None:
        for index in next_index:
            try:
                results[index] = await one(probes[index])
            except ScoringUnsupported as exc:
                raise UserError(f"the student backend cannot score prompts: {exc.detail}") from None
            if progress:
                progress(1)

    await asyncio.gather(*(worker() for _ in range(max(1, min(in_flight, len(probes))))))
    return [r for r in results if r is not None]


def summarise(results: list[ProbeResult]) -> dict[str, Any]:
    nodes: dict[str, list[ProbeResult]] = defaultdict(list)
    for result in results:
        nodes[result.node].append(result)

    def block(items: list[ProbeResult]) -> dict[str, Any]:
        graded = [r for r in items if r.correct is not None]
        return {
            "probes": len(items),
            "graded": len(graded),
            "accuracy": (sum(1 for r in graded if r.correct) / len(graded)) if graded else None,
            "mean_logprob": sum(r.reference_logprob for r in items) / len(items),
            "truncated": sum(r.truncated for r in items),
        }

    return {"overall": block(results), "nodes": {node: block(items) for node, items in sorted(nodes.items())}}


def write_examination(results: list[ProbeResult], out_dir: Path, student: str) -> tuple[dict, dict[str, Path]]:
    """results.json, answers.jsonl, mistakes.jsonl, and `pairs/`: DPO rows for the next round."""
    from datasets import Dataset

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"student": student, **summarise(results)}
    atomic_write_text(out_dir / "results.json", json.dumps(summary, indent=2) + "\n")
    rows = [asdict(r) for r in results]
    atomic_write_jsonl(out_dir / "answers.jsonl", rows)
    mistakes = [r for r in results if r.correct is False]
    atomic_write_jsonl(out_dir / "mistakes.jsonl", (asdict(r) for r in mistakes))
    # Preference pairs: the reference is chosen over the student's answer wherever the student
    # was wrong, or (for long answers, which have no exact check) said something else.
    pairs = [
        {
            "prompt": [{"role": "user", "content": r.question}],
            "chosen": [{"role": "assistant", "content": r.reference}],
            "rejected": [{"role": "assistant", "content": r.student_answer}],
            "taxonomy_path": r.node,
        }
        for r in results
        if r.kind != "choice"
        and r.student_answer.strip()
        and (r.correct is False or (r.correct is None and r.student_answer.strip() != r.reference.strip()))
    ]
    outputs = {
        "results": out_dir / "results.json",
        "answers": out_dir / "answers.jsonl",
        "mistakes": out_dir / "mistakes.jsonl",
    }
    if pairs:
        staging = out_dir / ".pairs.tmp"
        Dataset.from_list(pairs).save_to_disk(str(staging))
        replace_dir(staging, out_dir / "pairs")
        outputs["pairs"] = out_dir / "pairs"
    return summary, outputs
