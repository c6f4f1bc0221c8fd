"""Examine the student on a probe set, node by node.

Three signals: exact or numeric match for short answers, choice accuracy for
multiple choice (the option the student finds most likely), and the mean
log-probability of the reference answer, a smooth signal that still moves for a
135M student long before its free-form answers become right.

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
from ..fsutil import atomic_write_text, replace_dir
from .probes import Probe

SHORT_ANSWER_WORDS = 8
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


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
        return float(text.replace(",", "").strip().rstrip("%").lstrip("$"))
    except ValueError:
        return None


def _words(text: str) -> list[str]:
    return [w for w in re.sub(r"[\W_]+", " ", text.casefold()).split() if w not in ("the", "a", "an")]


def grade(reference: str, answer: str) -> tuple[str, bool | None]:
    """(kind, correct): numeric and short references are checked; long ones are not (None)."""
    expected = _number(reference)
    if expected is not None:
        found = [n for n in map(_number, NUMBER.findall(answer)) if n is not None]
        if not found:
            return "numeric", False
        return "numeric", math.isclose(found[-1], expected, rel_tol=1e-6, abs_tol=1e-9)
    ref_words = _words(reference)
    if 0 < len(ref_words) <= SHORT_ANSWER_WORDS:
        said = _words(answer)
        span = len(ref_words)
        hit = any(said[i : i + span] == ref_words for i in range(max(0, len(said) - span + 1)))
        return "short", hit
    return "long", None


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
        kind, correct = grade(probe.answer, answer.text)
        truncated = bool(answer.extra.get("truncated")) or score.truncated
        return ProbeResult(probe.node, probe.question, probe.answer, answer.text, kind, correct, score.mean, truncated,
                           answer.finish_reason)

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
    atomic_write_text(out_dir / "answers.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    mistakes = [r for r in results if r.correct is False]
    atomic_write_text(
        out_dir / "mistakes.jsonl", "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in mistakes)
    )
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
