"""Tailor a round to the student's mistakes: corrections as SFT rows, DPO pairs against them.

Each wrong exam answer goes to the teacher with the question and the reference (the
correction stage); a draft is kept only when the examination's own grader finds the
reference in it, so a teacher as small as the student still writes only grounded rows
(for a long reference, which no grader checks, the first parsed draft is kept). The kept
correction is an SFT row in the student's own style, and, against the student's wrong
answer, a DPO pair (Learn-to-Reason's contrast of customised rationales with the
student's own). A degenerate negative (empty, cut at max_tokens, looping) teaches DPO
nothing useful and is dropped with its reason. Every mistake gets a record saying what
became of it.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..data.keys import content_hash
from ..generators.corrections import Mistake
from ..generators.stages import Stage, StageRunner
from ..students.examine import grade
from ..taxonomy.model import Node

PICK_FACTOR = 2  # mistakes corrected per row a node may use: about half the drafts of a small teacher miss


@dataclass
class Tailored:
    records: list[dict[str, Any]] = field(default_factory=list)  # one per mistake asked about, in order
    counts: Counter = field(default_factory=Counter)

    def used(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("used")]

    def sft_rows(self, round_index: int) -> list[dict[str, Any]]:
        return [sft_row(r["question"], r["correction"], r["node"], round_index, "correction") for r in self.used()]

    def pairs(self) -> list[dict[str, Any]]:
        return [
            {
                "prompt": [{"role": "user", "content": r["question"]}],
                "chosen": [{"role": "assistant", "content": r["correction"]}],
                "rejected": [{"role": "assistant", "content": r["student_answer"]}],
                "taxonomy_path": r["node"],
            }
            for r in self.used()
            if r.get("pair")
        ]


def sft_row(question: str, answer: str, node: str, round_index: int, source: str) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": question}],
        "completion": [{"role": "assistant", "content": answer}],
        "taxonomy_path": node,
        "round": round_index,
        "source": source,
        "content_hash": content_hash(question, answer),
    }


def degenerate(answer: str, finish_reason: str) -> str | None:
    """Why the student's answer is no use as a DPO negative, or None."""
    if not answer.strip():
        return "empty"
    if finish_reason == "length":
        return "cut at max_tokens"
    words = re.findall(r"\w+", answer.casefold())
    grams = Counter(tuple(words[i : i + 3]) for i in range(len(words) - 2))
    if grams and grams.most_common(1)[0][1] >= 3:
        return "repeats itself"
    return None


def pick(mistakes: list[dict[str, Any]], budgets: Mapping[str, int], *, seed: int, round_index: int) -> list[dict]:
    """Up to PICK_FACTOR x budget mistakes per node, in a seeded order (the same on every run)."""
    by_node: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for mistake in mistakes:
        by_node[mistake["node"]].append(mistake)
    chosen = []
    for node in sorted(by_node):
        group = list(by_node[node])
        random.Random(f"tailor:{seed}:{round_index}:{node}").shuffle(group)
        chosen.extend(group[: PICK_FACTOR * budgets.get(node, 0)])
    return chosen


async def tailor(
    runner: StageRunner,
    stage: Stage[Mistake, str],
    mistakes: list[dict[str, Any]],
    nodes: Mapping[str, Node],
    budgets: Mapping[str, int],
    *,
    seed: int,
    round_index: int,
) -> Tailored:
    """Corrections for the picked mistakes; per node, at most its budget are used (in the seeded order)."""
    picked = pick(mistakes, budgets, seed=seed, round_index=round_index)
    asked = [Mistake(nodes[m["node"]], m["question"], m["reference"], m["student_answer"]) for m in picked]
    outputs = await runner.run_all(stage, asked)
    out = Tailored()
    used: Counter = Counter()
    for mistake, output in zip(picked, outputs):
        record: dict[str, Any] = {
            "node": mistake["node"],
            "question": mistake["question"],
            "reference": mistake["reference"],
            "student_answer": mistake["student_answer"],
            "drafts": list(output.values),
        }
        reaching = [d for d in output.values if _reaches(mistake, d)]
        correction = min(reaching, key=len) if reaching else None  # the plainest draft that is right
        if correction is None:
            record["dropped"] = "no draft reached the reference" if output.values else "no draft parsed"
        elif used[mistake["node"]] >= budgets.get(mistake["node"], 0):
            record["correction"] = correction
            record["dropped"] = "over the node's budget"
        else:
            used[mistake["node"]] += 1
            record.update(correction=correction, used=True)
            why_not = degenerate(mistake["student_answer"], mistake.get("finish_reason", "stop"))
            record["pair"] = why_not is None
            if why_not:
                record["no_pair"] = why_not
                out.counts[f"no pair: {why_not}"] += 1
        out.counts["asked"] += 1
        out.counts["dropped: " + record["dropped"] if "dropped" in record else "used"] += 1
        out.records.append(record)
    return out


def _reaches(mistake: dict[str, Any], draft: str) -> bool:
    kind, correct = grade(mistake["reference"], draft, mistake["question"])
    return correct is not False if kind == "long" else bool(correct)
