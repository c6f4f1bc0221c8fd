"""What aligning the teacher costs and what it buys: `syllabus align` on the embedded models.

Why: a draft scorer is only worth its seconds if its ranking means something, and an
aligned teacher only if its fresh drafts help the student more than the unaligned
teacher's. This measures both, on the shipped distill example, with the embedded
SmolLM2-135M as teacher and student (so the teacher learns what helps a copy of itself).

How, side by side in one run:
1. Cost and agreement: the drafts of the first seed's alignment (K questions x R
   rationales x the nodes, at least 32) scored by each scorer on the same preference
   items, the ones that alignment scored on (`--items` a node):
   in-context (ARTE), exact influence (one real step, undone) and fast influence (the
   first-order estimate). Seconds per scored draft, and the Spearman rank correlation of
   fast against exact.
2. The effect, per seed: `align` (in-context scorer, DPO on the teacher) on half of each
   node's exam items; then fresh drafts (a draft round neither alignment saw) from the
   unaligned and from the aligned teacher, scored in context on the other half of the
   items, which no alignment read. Reported: the mean help of the fresh drafts, both
   teachers, per seed, and the difference with its spread over seeds.

Run: .venv/bin/python bench/bench_align.py [--seeds 0 1 2] [--drafts 10] [--rationales 2] [--items 4]
     [--fresh 4] [--workdir DIR] (a kept workdir resumes: the request cache and the scores are reused)
Writes bench/results/align.json and prints the table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NODES = ["geography/capitals", "physics/units"]


def prepare(work: Path, nodes: list[str]) -> tuple[Path, Path, Path]:
    """The example project, and each node's exam items halved: (project, align items, held-out items)."""
    from syllabus.project import init_project

    folder = work / "project"
    if not (folder / "syllabus.yaml").is_file():
        init_project(folder, example="distill")
    rows = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    halves: dict[str, list[dict]] = {"align": [], "held": []}
    for node in nodes:
        exam = [
            {k: r[k] for k in ("question", "answer", "node")}
            for r in rows
            if r["node"] == node and r["split"] == "exam"
        ]
        half = len(exam) // 2
        halves["align"] += exam[:half]
        halves["held"] += exam[half:]
    paths = []
    for name, items in halves.items():
        path = work / f"{name}-items.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in items))
        paths.append(path)
    return folder, paths[0], paths[1]


def run_align(folder: Path, **options):
    """The alignment's outcome, and the preference items it scored on, per node."""
    from syllabus.align.run import Aligner, AlignOptions
    from syllabus.project import Project

    aligner = Aligner(Project.load(folder), AlignOptions(**options))
    return aligner.run(), aligner.items


def mean_help(outcome) -> dict[str, float]:
    """Mean in-context help of every draft of a run, per node and overall."""
    rows = [json.loads(line) for line in (outcome.folder / "scores.jsonl").read_text().splitlines() if line.strip()]
    helps = defaultdict(list)
    for row in rows:
        if row["scorer"] == "icl" and not row["id"].endswith("#baseline"):
            helps[row["node"]].append(row["help"])
    out = {node: statistics.fmean(values) for node, values in sorted(helps.items())}
    out["all"] = statistics.fmean(v for values in helps.values() for v in values)
    return out


def cost_and_agreement(folder: Path, outcome, items: dict) -> dict:
    """Each scorer over the same drafts and the alignment's own preference items: seconds per
    draft; fast vs exact influence rank correlation."""
    import asyncio

    from scipy.stats import spearmanr

    from syllabus.backends.spec import make_backend, model_folder, parse_student_spec
    from syllabus.generators.drafts import Draft
    from syllabus.project import Project
    from syllabus.students.influence import Example, InfluenceScorer
    from syllabus.students.preference import InContextScorer

    project = Project.load(folder)
    drafts = [Draft.from_dict(json.loads(line)) for line in (outcome.folder / "drafts.jsonl").read_text().splitlines()]
    nodes = list(items)
    system = project.config.generation.system_prompt

    def prompt(question: str) -> list[dict[str, str]]:
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]

    exact, fast, seconds = [], [], {"influence_exact": 0.0, "influence_fast": 0.0, "icl": 0.0}
    config = project.config.student
    scorer = InfluenceScorer(
        model_folder(parse_student_spec("embedded")), learning_rate=config.learning_rate, max_length=config.max_length
    )
    for node in nodes:
        scorer.use_reference([Example.of(prompt(p.question), p.answer) for p in items[node]])
        for draft in (d for d in drafts if d.node == node):
            example = Example.of(prompt(draft.question), draft.rationale)
            started = time.perf_counter()
            exact.append(scorer.exact(example).change)
            seconds["influence_exact"] += time.perf_counter() - started
            started = time.perf_counter()
            fast.append(scorer.fast(example).change)
            seconds["influence_fast"] += time.perf_counter() - started
    scorer.close()

    async def in_context() -> None:
        backend = make_backend(parse_student_spec("embedded"), project.config.teacher)
        try:
            await backend.preflight()
            for node in nodes:
                icl = InContextScorer(backend, items[node], max_tokens=project.config.loop.max_tokens)
                mine = [d for d in drafts if d.node == node]
                started = time.perf_counter()
                await asyncio.gather(*(icl.draft(d.question, d.rationale) for d in mine))
                seconds["icl"] += time.perf_counter() - started
        finally:
            await backend.aclose()

    asyncio.run(in_context())
    rho = spearmanr(exact, fast)
    return {
        "drafts": len(exact),
        "items_per_node": {node: len(items[node]) for node in nodes},
        "seconds_per_draft": {k: round(v / len(exact), 3) for k, v in seconds.items()},
        "spearman_fast_vs_exact": round(float(rho.statistic), 3),
        "spearman_p": float(rho.pvalue),
        "sign_agreement": round(sum((a < 0) == (b < 0) for a, b in zip(exact, fast)) / len(exact), 3),
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.pstdev(values) if len(values) > 1 else 0.0}


def write_result(args, work: Path, started: float, cost: dict, seeds: dict[str, dict]) -> dict:
    effects = [s["effect"] for s in seeds.values() if s["effect"] is not None]
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": vars(args) | {"workdir": str(work), "out": str(args.out)},
        "seconds": round(time.perf_counter() - started, 1),
        "scorers": cost,
        "seeds": seeds,
        "effect": spread(effects) if effects else None,
        "unaligned_fresh": spread([s["fresh_mean_help"]["unaligned"]["all"] for s in seeds.values()]),
        "aligned_fresh": spread(
            [s["fresh_mean_help"]["aligned"]["all"] for s in seeds.values() if "aligned" in s["fresh_mean_help"]]
        )
        if effects
        else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nodes", nargs="+", default=NODES)
    parser.add_argument(
        "--drafts", type=int, default=10, help="draft questions per node for the alignment (x rationales x nodes >= 32)"
    )
    parser.add_argument("--rationales", type=int, default=2)
    parser.add_argument("--items", type=int, default=4, help="preference items per node (each half of the exam items)")
    parser.add_argument("--fresh", type=int, default=4, help="fresh draft questions per node and teacher")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "align.json")
    args = parser.parse_args()

    from syllabus.generators.drafts import ALIGN_ROUND

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-align-"))
    folder, align_items, held_items = prepare(work, args.nodes)
    started = time.perf_counter()
    common = {"nodes": args.nodes, "rationales": args.rationales, "items": args.items}
    seeds: dict[str, dict] = {}
    cost: dict = {}
    for seed in args.seeds:
        print(f"seed {seed}: align ...", file=sys.stderr, flush=True)
        aligned, used = run_align(
            folder, **common, drafts=args.drafts, probes=align_items, run_dir=work / "runs" / f"align-{seed}", seed=seed
        )
        if not cost:
            print("cost and agreement of the scorers ...", file=sys.stderr, flush=True)
            cost = cost_and_agreement(folder, aligned, used)
        teacher = aligned.summary["aligned_teacher"]
        fresh = {}
        for name, spec in (("unaligned", "embedded"), ("aligned", teacher)):
            if spec is None:
                continue
            print(f"seed {seed}: fresh drafts of the {name} teacher ...", file=sys.stderr, flush=True)
            outcome, _ = run_align(
                folder,
                **common,
                drafts=args.fresh,
                probes=held_items,
                teacher=spec,
                draft_round=ALIGN_ROUND + 1,
                run_dir=work / "runs" / f"fresh-{name}-{seed}",
                seed=seed,
                until="scores",
            )
            fresh[name] = mean_help(outcome)
        seeds[str(seed)] = {
            "pairs": aligned.summary["pairs"],
            "pair_levels": aligned.summary["pair_levels"],
            "noise_floor": {n: b["noise_floor"] for n, b in aligned.summary["nodes"].items()},
            "score_spread": {n: b["score_spread"] for n, b in aligned.summary["nodes"].items()},
            "aligned_teacher_trained": teacher is not None,
            "seconds": aligned.summary["seconds"],
            "fresh_mean_help": fresh,
            "effect": fresh["aligned"]["all"] - fresh["unaligned"]["all"] if "aligned" in fresh else None,
        }
        write_result(args, work, started, cost, seeds)  # after every seed: a run cut short keeps what it measured
    result = write_result(args, work, started, cost, seeds)
    print(json.dumps({k: result[k] for k in ("scorers", "effect", "unaligned_fresh", "aligned_fresh")}, indent=2))


if __name__ == "__main__":
    main()
