"""Learning gains of the closed loop: `distill` against `--baseline` and the untrained student.

Why: the loop's claim is that feedback (budgets moved to weak or moving nodes, the
teacher's corrections of the student's own mistakes, DPO against its wrong answers)
teaches more than the same number of plain GLAN rows. On this machine the teacher is
the student (SmolLM2-135M), so any gain comes from grounding (the exam items' references),
selection by the student's own signal, and budgets, not from a stronger teacher.

How: the shipped example project (six nodes), trimmed to `--exam` exam and `--dev` dev
items per node (the same items for every run; its test items are never read). One
project folder for every seed (its subjects and syllabi are written by the first round
that needs them, then read by every run, as a user's project would); per seed, the loop
and its baseline run with the same budget, rounds and training recipe (the example's
syllabus.yaml), each in its own run folder. The defaults fit about an hour on two cores.
Every node's dev accuracy and dev log-probability after every round, for both arms; the
untrained student is round 0.
Reported per node: mean and spread (population standard deviation) over seeds. Dev
items are never trained on, so each number is held out. Writes bench/results/loop.json
and prints the table of docs/benchmarks.md.

Run: .venv/bin/python bench/bench_loop.py [--seeds 0 1 2] [--rounds 2] [--budget 12] [--exam 6] [--dev 6]
     [--workdir DIR] (a workdir kept: the same command again resumes each run where it stopped)
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
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def trimmed_example(folder: Path, exam: int, dev: int) -> Path:
    from syllabus.project import init_project

    init_project(folder, example="distill")
    rows = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    limits, taken, kept = {"exam": exam, "dev": dev, "test": 0}, Counter(), []
    for row in rows:
        if taken[row["node"], row["split"]] < limits[row["split"]]:
            taken[row["node"], row["split"]] += 1
            kept.append(row)
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    return folder


def run_arm(folder: Path, *, seed: int, rounds: int, budget: int, baseline: bool) -> dict:
    from syllabus.loop.distill import DistillOptions, distill
    from syllabus.project import Project

    name = f"{'baseline' if baseline else 'loop'}-{seed}"
    started = time.perf_counter()
    outcome = distill(
        Project.load(folder),
        DistillOptions(rounds=rounds, budget=budget, seed=seed, baseline=baseline, run_dir=Path("runs") / name),
    )
    seconds = time.perf_counter() - started
    summary = outcome.summary
    return {
        "seconds": round(seconds, 1),
        "rounds": [
            {
                "round": r["round"],
                "dev": {n: b["dev"] for n, b in r["nodes"].items()},
                "dev_logprob": {n: b["dev_logprob"] for n, b in r["nodes"].items()},
                "budgets": r["budgets"],
                "rows": r["rows"],
            }
            for r in summary["rounds"]
        ],
        "best_round": summary["best_round"],
        "stopped": summary["stopped"],
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.pstdev(values) if len(values) > 1 else 0.0}


def aggregate(runs: dict[int, dict[str, dict]], rounds: int) -> dict:
    """Per arm, round and node: dev accuracy and log-probability over seeds."""
    seeds = sorted(runs)
    nodes = sorted(runs[seeds[0]]["loop"]["rounds"][0]["dev"])
    out: dict = {}
    for arm in ("loop", "baseline"):
        out[arm] = []
        for k in range(rounds + 1):
            present = [runs[s][arm]["rounds"][k] for s in seeds if k < len(runs[s][arm]["rounds"])]
            out[arm].append(
                {
                    "round": k,
                    "seeds": len(present),
                    "dev": {n: spread([r["dev"][n] for r in present]) for n in nodes},
                    "dev_logprob": {n: spread([r["dev_logprob"][n] for r in present]) for n in nodes},
                    "mean_dev": spread([statistics.fmean(r["dev"].values()) for r in present]),
                }
            )
    return out


def verdict(agg: dict, weak_below: float = 0.5) -> dict:
    """Where the base student is weak, is the loop ahead of both? Is any node >5 points below untrained?"""
    base = agg["loop"][0]["dev"]
    loop, baseline = agg["loop"][-1]["dev"], agg["baseline"][-1]["dev"]
    weak = [n for n in base if base[n]["mean"] < weak_below]
    return {
        "weak_nodes": weak,
        "loop_ahead_on_weak": {n: loop[n]["mean"] > max(baseline[n]["mean"], base[n]["mean"]) for n in weak},
        "loop_below_untrained_by_5_points": [n for n in base if loop[n]["mean"] < base[n]["mean"] - 0.05],
        "baseline_below_untrained_by_5_points": [n for n in base if baseline[n]["mean"] < base[n]["mean"] - 0.05],
    }


def table(agg: dict) -> str:
    nodes = sorted(agg["loop"][0]["dev"])
    last = len(agg["loop"]) - 1
    lines = [
        f"| node | untrained | baseline r{last} | loop r{last} | loop logprob r0 → r{last} |",
        "|---|---|---|---|---|",
    ]

    def cell(block):
        return f"{block['mean']:.0%} ± {block['sd']:.0%}"

    for n in nodes:
        lines.append(
            f"| {n} | {cell(agg['loop'][0]['dev'][n])} | {cell(agg['baseline'][last]['dev'][n])} | "
            f"{cell(agg['loop'][last]['dev'][n])} | {agg['loop'][0]['dev_logprob'][n]['mean']:.2f} → "
            f"{agg['loop'][last]['dev_logprob'][n]['mean']:.2f} |"
        )
    lines.append(
        f"| (mean) | {cell(agg['loop'][0]['mean_dev'])} | {cell(agg['baseline'][last]['mean_dev'])} | "
        f"{cell(agg['loop'][last]['mean_dev'])} | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--exam", type=int, default=6, help="exam items per node")
    parser.add_argument("--dev", type=int, default=6, help="dev items per node")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the projects here (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop.json")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-loop-"))
    runs: dict[int, dict[str, dict]] = {}
    started = time.perf_counter()
    folder = work / "project"
    if not (folder / "syllabus.yaml").is_file():
        trimmed_example(folder, args.exam, args.dev)
    for seed in args.seeds:
        runs[seed] = {}
        for baseline in (False, True):
            arm = "baseline" if baseline else "loop"
            print(f"seed {seed}: {arm} ...", file=sys.stderr, flush=True)
            runs[seed][arm] = run_arm(folder, seed=seed, rounds=args.rounds, budget=args.budget, baseline=baseline)
            print(f"seed {seed}: {arm} done in {runs[seed][arm]['seconds']:.0f} s", file=sys.stderr, flush=True)
    agg = aggregate(runs, args.rounds)
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {
            "seeds": args.seeds,
            "rounds": args.rounds,
            "budget": args.budget,
            "exam_per_node": args.exam,
            "dev_per_node": args.dev,
            "project": "syllabus init --example distill (items trimmed)",
        },
        "seconds": round(time.perf_counter() - started, 1),
        "runs": {str(s): r for s, r in runs.items()},
        "aggregate": agg,
        "verdict": verdict(agg),
        "table": table(agg),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(result["table"])
    print(json.dumps(result["verdict"], indent=2))


if __name__ == "__main__":
    main()
