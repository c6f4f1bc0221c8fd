"""Does the loop teach? Each arm's best student against the untrained one, on test items no arm read.

Why: a teacher-student loop is worth running only if its student gets better on
questions it never trained or decided on. On this machine the teacher is the student
(SmolLM2-135M), so a gain can only come from grounding in the exam items' references,
the student's own right answers (self-answers, rehearsal), selection by its own signal,
and budgets.

How: the shipped example project (`syllabus init --example distill`: six nodes, 45 exam,
15 dev and 20 test items each). Every arm runs `distill` on the same items: it learns
from exam items, decides on dev items, and only at its end are its best student and the
untrained one examined on the **test** items (RUN/test/, written by the loop itself after
every decision). Arms: `loop` (the example's defaults) over `--seeds`; `baseline` (GLAN
rows, no feedback); one seed each of the ablations that justify a default
(`no-solutions`: the exam items' worked solutions unused, `no-restate`: no restatements,
`no-rehearsal`, `base`: each round from the starting student (`previous`: from the last
round's, the default), `dpo`: DPO on, `glan`: 30% GLAN rows, `shortest`: the shortest sound
draft). Realised rows are recorded per arm. A workdir's project keeps the example as it was
when made: in one made before 2026-12-05 `loop` runs `restart: base`.

Reported: per test item, correctness averaged over seeds; per node and pooled over the
weak nodes (arithmetic, units, calendar) and the strong ones, the paired difference
against the untrained student ± SE and the exact McNemar p per node (seed 0's student
for the p-value, each item once). The JSON is written after every arm; the same command
with the same --workdir resumes (each run folder resumes its loop).

Each ablation is also compared item by item with the loop's students of the same seeds
(`versus_loop`): what that one setting changed, without the spread between seeds.

Run: .venv/bin/python bench/bench_loop.py [--arms loop baseline ...] [--seeds 0 1 2] [--rounds 2]
     [--budget 60] [--workdir DIR]
     .venv/bin/python bench/bench_loop.py --summarise   (the JSON's numbers again, nothing run)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WEAK = ("mathematics/arithmetic", "physics/units", "reasoning/calendar")
STRONG = ("chemistry/elements", "geography/capitals", "linguistics/antonyms")
# arm -> (loop settings changed from the example's, baseline?)
ARMS: dict[str, tuple[dict, bool]] = {
    "loop": ({}, False),
    "baseline": ({}, True),
    "no-rehearsal": ({"rehearsal": 0.0}, False),
    # no rehearsal under the default restart, for workdirs made before the default changed
    "no-rehearsal-previous": ({"rehearsal": 0.0, "restart": "previous"}, False),
    "previous": ({"restart": "previous"}, False),  # the default since 2026-12-05; `loop` in older JSON ran base
    "base": ({"restart": "base"}, False),
    "dpo": ({"dpo": True}, False),
    "glan": ({"generated": 0.3}, False),
    "shortest": ({"choose": "shortest"}, False),
    "no-restate": ({"restatements": False}, False),
    "no-solutions": ({"solutions": False}, False),
}
ABLATIONS = ("no-solutions", "no-restate", "no-rehearsal", "base", "dpo", "glan")


def run_arm(folder: Path, arm: str, *, seed: int, rounds: int, budget: int) -> dict:
    from syllabus.loop.distill import DistillOptions, distill
    from syllabus.project import Project

    changes, baseline = ARMS[arm]
    project = Project.load(folder)
    project.config = project.config.model_copy(update={"loop": project.config.loop.model_copy(update=changes)})
    started = time.perf_counter()
    outcome = distill(
        project,
        DistillOptions(
            rounds=rounds, budget=budget, seed=seed, baseline=baseline, run_dir=Path("runs") / f"{arm}-{seed}"
        ),
    )
    run = outcome.run_dir
    # A finished run resumes in a second: its first run's time is kept beside it.
    timing = run / "bench-seconds.json"
    if not timing.is_file():
        timing.write_text(json.dumps({"seconds": round(time.perf_counter() - started, 1)}) + "\n")
    seconds = json.loads(timing.read_text())["seconds"]
    comparison = json.loads((run / "test" / "comparison.json").read_text())
    best = comparison["best_round"]

    def answers(label: str) -> dict[str, bool]:
        rows = [json.loads(line) for line in (run / "test" / label / "answers.jsonl").read_text().splitlines()]
        return {f"{r['node']}\t{r['question']}": bool(r["correct"]) for r in rows if r["correct"] is not None}

    rows = [r.get("rows") or {} for r in outcome.summary["rounds"][1:]]
    return {
        "seconds": seconds,
        "best_round": best,
        "dev": [r["dev"] for r in outcome.summary["rounds"]],
        "rows_trained": [r.get("train", 0) for r in rows],
        "rows_kept": [r.get("kept", 0) for r in rows],
        "rows_by_kind": rows,
        "start": answers("start"),
        "best": answers(f"round-{best}"),
    }


def paired_block(start: dict[str, bool], arm: dict[str, float], keys: list[str]) -> dict | None:
    """Mean over items of (arm's correctness averaged over seeds - the untrained student's), ± SE."""
    if not keys:
        return None
    diffs = [arm[k] - float(start[k]) for k in keys]
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {
        "items": len(keys),
        "untrained": statistics.fmean(float(start[k]) for k in keys),
        "arm": statistics.fmean(arm[k] for k in keys),
        "difference": mean,
        "se": se,
    }


def aggregate(results: dict[str, dict[int, dict]]) -> dict:
    from syllabus.students.compare import paired

    out: dict = {}
    for arm, seeds in results.items():
        runs = list(seeds.values())
        start = runs[0]["start"]
        keys = sorted(set(start).intersection(*(set(r["best"]) for r in runs)))
        mean = {k: statistics.fmean(float(r["best"][k]) for r in runs) for k in keys}
        by_node: dict[str, list[str]] = defaultdict(list)
        for k in keys:
            by_node[k.split("\t")[0]].append(k)
        first = runs[0]
        out[arm] = {
            "seeds": sorted(seeds),
            "rows_trained": [r["rows_trained"] for r in runs],
            "best_rounds": [r["best_round"] for r in runs],
            "nodes": {
                n: paired_block(start, mean, ks)
                | {"mcnemar_p_seed0": paired([start[k] for k in ks], [first["best"][k] for k in ks]).p_value}
                for n, ks in sorted(by_node.items())
            },
            "weak": paired_block(start, mean, [k for k in keys if k.split("\t")[0] in WEAK]),
            "strong": paired_block(start, mean, [k for k in keys if k.split("\t")[0] in STRONG]),
            "all": paired_block(start, mean, keys),
        }
    loop = results.get("loop", {})
    for arm, seeds in results.items():
        same = [s for s in seeds if s in loop]
        if arm != "loop" and same:
            out[arm]["versus_loop"] = versus_loop(
                [loop[s]["best"] for s in same], [seeds[s]["best"] for s in same], same
            )
    return out


def versus_loop(loops: list[dict[str, bool]], arms: list[dict[str, bool]], seeds: list[int]) -> dict:
    """An arm's best students against the loop's of the same seeds, item by item (each item's
    difference averaged over the seeds both ran): what the one setting changed, free of the
    seed-to-seed spread that a comparison of two gains carries."""
    keys = sorted(set.intersection(*(set(run) for run in (*loops, *arms))))

    def mean(runs: list[dict[str, bool]]) -> dict[str, float]:
        return {k: statistics.fmean(float(run[k]) for run in runs) for k in keys}

    loop, arm = mean(loops), mean(arms)
    return {
        "seeds": seeds,
        **{
            group: paired_block(loop, arm, [k for k in keys if k.split("\t")[0] in nodes])
            for group, nodes in (("weak", WEAK), ("strong", STRONG), ("all", (*WEAK, *STRONG)))
        },
    }


def verdict(agg: dict) -> dict:
    loop = agg.get("loop")
    if not loop or not loop["weak"]:
        return {}
    weak = loop["weak"]
    return {
        "weak_gain": weak["difference"],
        "weak_gain_se": weak["se"],
        "goal_weak_gain_at_least_0.15": weak["difference"] >= 0.15,
        "goal_more_than_2_se_above_zero": weak["difference"] > 2 * weak["se"],
        "nodes_more_than_5_points_below_untrained": [
            n for n, b in loop["nodes"].items() if b and b["difference"] < -0.05
        ],
        "loop_at_or_above_baseline_on_weak": (
            weak["difference"] >= agg["baseline"]["weak"]["difference"] if "baseline" in agg else None
        ),
    }


def table(agg: dict) -> str:
    def cell(block: dict | None) -> str:
        return "-" if not block else f"{block['difference']:+.2f} ± {block['se']:.2f}"

    arms = list(agg)
    nodes = sorted({n for a in agg.values() for n in a["nodes"]})
    lines = [
        "| test items | untrained | " + " | ".join(f"{a} ({len(agg[a]['seeds'])} seed)" for a in arms) + " |",
        "|---|---|" + "---|" * len(arms),
    ]
    first = agg[arms[0]]
    for n in nodes:
        base = first["nodes"][n]["untrained"] if first["nodes"].get(n) else float("nan")
        lines.append(f"| {n} | {base:.0%} | " + " | ".join(cell(agg[a]["nodes"].get(n)) for a in arms) + " |")
    for group in ("weak", "strong", "all"):
        block = first[group]
        lines.append(
            f"| **{group} nodes** | {block['untrained']:.0%} | " + " | ".join(cell(agg[a][group]) for a in arms) + " |"
        )
    for group in ("weak", "all"):
        lines.append(
            f"| vs the loop, same seeds: {group} | - | "
            + " | ".join(cell(agg[a].get("versus_loop", {}).get(group)) for a in arms)
            + " |"
        )
    lines.append(
        "| rows trained (last round, per seed) | - | "
        + " | ".join(", ".join(str(r[-1] if r else 0) for r in agg[a]["rows_trained"]) for a in arms)
        + " |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", default=["loop", "baseline", *ABLATIONS], choices=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the loop arm")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "work-loop")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "loop.json")
    parser.add_argument(
        "--summarise", action="store_true", help="recompute the aggregate, verdict and table of --out; run nothing"
    )
    args = parser.parse_args()
    if args.summarise:
        result = json.loads(args.out.read_text())
        runs = {a: {int(s): r for s, r in seeds.items()} for a, seeds in result["runs"].items()}
        agg = aggregate(runs)
        result.update(aggregate=agg, verdict=verdict(agg), table=table(agg))
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(result["table"])
        return

    from syllabus.project import init_project

    folder = args.workdir / "project"
    if not (folder / "syllabus.yaml").is_file():
        init_project(folder, example="distill")
    started = time.perf_counter()
    results: dict[str, dict[int, dict]] = {}
    for arm in args.arms:
        for seed in args.seeds if arm == "loop" else args.seeds[:1]:
            print(f"{arm}, seed {seed} ...", file=sys.stderr, flush=True)
            results.setdefault(arm, {})[seed] = run_arm(folder, arm, seed=seed, rounds=args.rounds, budget=args.budget)
            print(f"{arm}, seed {seed}: {results[arm][seed]['seconds']:.0f} s", file=sys.stderr, flush=True)
            agg = aggregate(results)
            result = {
                "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "settings": {
                    "arms": {a: ARMS[a][0] | ({"baseline": True} if ARMS[a][1] else {}) for a in args.arms},
                    "seeds": args.seeds,
                    "rounds": args.rounds,
                    "budget": args.budget,
                    "project": "syllabus init --example distill (45 exam, 15 dev, 20 test items a node)",
                },
                "seconds": round(time.perf_counter() - started, 1),
                "runs": {a: {str(s): r for s, r in seeds.items()} for a, seeds in results.items()},
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
