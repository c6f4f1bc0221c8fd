"""Examine the student on a probe set, node by node.

Three signals: exact or numeric match for short answers, choice accuracy for
multiple choice (the option the student finds most likely), and the mean
log-probability of the reference answer, a smooth signal that still moves for a
135M student long before its free-form answers become right. The student answers
with the same batched local generation the teacher uses.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..backends.base import ChatRequest
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
        found = [_number(n) for n in NUMBER.findall(answer)]
        found = [n for n in found if n is not None]
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


def _chat_prefix(tokenizer, question: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def continuation_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 8) -> list[float]:
    """Mean log-probability of each continuation given its question, teacher-forced, right-padded."""
    import torch

    scores: list[float] = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        sequences, spans = [], []
        for question, continuation in chunk:
            prefix = _chat_prefix(tokenizer, question)
            target = tokenizer(continuation, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
            sequences.append(prefix + target)
            spans.append((len(prefix), len(prefix) + len(target)))
        width = max(len(s) for s in sequences)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences], device=model.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=model.device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        for row, (begin, end) in enumerate(spans):
            targets = ids[row, begin:end]
            picked = logprobs[row, begin - 1 : end - 1].gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            scores.append(float(picked.mean()))
    return scores


def _choice_prompt(probe: Probe) -> str:
    letters = "ABCDEFGHIJ"
    lines = [probe.question, ""] + [f"{letters[i]}. {option}" for i, option in enumerate(probe.options)]
    return "\n".join(lines)


def examine(student_folder: Path, probes: list[Probe], *, batch_size: int = 8, max_tokens: int = 128,
            progress=None) -> list[ProbeResult]:
    from ..backends.local import LocalBackend

    backend = LocalBackend(student_folder, batch_size=batch_size)
    model, tokenizer = backend.load()
    tokenizer.padding_side = "left"
    answers: list[str] = []
    free_form = [p for p in probes if not p.options]
    for start in range(0, len(free_form), batch_size):
        chunk = free_form[start : start + batch_size]
        requests = [ChatRequest.from_messages([{"role": "user", "content": p.question}], temperature=0.0,
                                              max_tokens=max_tokens) for p in chunk]
        answers.extend(c.text for c in backend.generate_batch(requests))
        if progress:
            progress(len(chunk))
    answer_of = {id(p): a for p, a in zip(free_form, answers)}
    reference_scores = continuation_logprobs(model, tokenizer, [
        (_choice_prompt(p) if p.options else p.question, p.answer) for p in probes], batch_size)
    results = []
    for probe, score in zip(probes, reference_scores):
        if probe.options:
            option_scores = continuation_logprobs(model, tokenizer,
                                                  [(_choice_prompt(probe), o) for o in probe.options], batch_size)
            pick = max(range(len(option_scores)), key=option_scores.__getitem__)
            results.append(ProbeResult(probe.node, probe.question, probe.answer, probe.options[pick], "choice",
                                       pick == probe.correct, score))
            if progress:
                progress(1)
        else:
            answer = answer_of[id(probe)]
            kind, correct = grade(probe.answer, answer)
            results.append(ProbeResult(probe.node, probe.question, probe.answer, answer, kind, correct, score))
    return results


def summarise(results: list[ProbeResult]) -> dict[str, Any]:
    nodes: dict[str, list[ProbeResult]] = defaultdict(list)
    for result in results:
        nodes[result.node].append(result)

    def block(items: list[ProbeResult]) -> dict[str, Any]:
        graded = [r for r in items if r.correct is not None]
        return {
            "probes": len(items),
            "graded": len(graded),
            "accuracy": (sum(r.correct for r in graded) / len(graded)) if graded else None,
            "mean_logprob": sum(r.reference_logprob for r in items) / len(items),
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
    atomic_write_text(out_dir / "mistakes.jsonl",
                      "".join(json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in mistakes))
    # Preference pairs: the reference is chosen over the student's answer wherever the student
    # was wrong, or (for long answers, which have no exact check) said something else.
    pairs = [
        {"prompt": [{"role": "user", "content": r.question}],
         "chosen": [{"role": "assistant", "content": r.reference}],
         "rejected": [{"role": "assistant", "content": r.student_answer}],
         "taxonomy_path": r.node}
        for r in results
        if r.kind != "choice" and r.student_answer.strip()
        and (r.correct is False or (r.correct is None and r.student_answer.strip() != r.reference.strip()))
    ]
    outputs = {"results": out_dir / "results.json", "answers": out_dir / "answers.jsonl",
               "mistakes": out_dir / "mistakes.jsonl"}
    if pairs:
        staging = out_dir / ".pairs.tmp"
        Dataset.from_list(pairs).save_to_disk(str(staging))
        replace_dir(staging, out_dir / "pairs")
        outputs["pairs"] = out_dir / "pairs"
    return summary, outputs
