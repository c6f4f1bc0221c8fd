"""How large is `syllabus report`'s page of a long loop, and how long does it take to render?

Why: `distill` rewrites RUN/report.html after every round, so rendering must stay a small
part of a round, and the page must stay a file one can mail or open on a laptop. The page
inlines plotly.js (about 4.6 MiB) once; everything else grows with nodes x rounds.

How: a synthetic loop folder with the files `distill` writes (summary.json, state.json and,
per round, budgets.json, rows.json, corrections.json, student.json, examination/results.json,
round.json, student/{sft,dpo}/metrics.json), `--nodes` nodes and `--rounds` training rounds
of made-up, seeded numbers, and a second such folder as `--compare`. `write_report` renders
it `--repeats` times in this process (the first includes importing plotly); the result is
the file size and the median and first render time.
Results go to bench/results/report.json. Bounds (docs/benchmarks.md): under 6 MiB and under
5 s a render for 20 nodes and 5 rounds.

Run:
    .venv/bin/python bench/bench_report.py [--nodes 20] [--rounds 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE_BOUND = 6 * 2**20
SECONDS_BOUND = 5.0


def write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def synthetic_loop(root: Path, nodes: int, rounds: int, seed: int) -> Path:
    rng = random.Random(seed)
    names = [f"field-{i // 5}/discipline-{i}" for i in range(nodes)]
    score = {n: rng.choice([0.0, 0.2, 0.5, 0.8, 1.0]) for n in names}
    budget = 10 * nodes
    records = []
    done = ["0:examine"]
    for k in range(rounds + 1):
        folder = root / "rounds" / str(k)
        block = {
            split: {
                "overall": {"probes": 10 * nodes, "graded": 10 * nodes, "accuracy": 0.5, "mean_logprob": -4.0},
                "nodes": {
                    n: {"probes": 10, "graded": 10, "accuracy": score[n], "mean_logprob": -rng.uniform(1, 9)}
                    for n in names
                },
            }
            for split in ("exam", "dev")
        }
        write(folder / "examination" / "results.json", {"student": f"round-{k}", **block})
        record = {
            "round": k,
            "student": f"round-{k}",
            "budgets": {},
            "rows": {},
            "dev": sum(score.values()) / nodes,
            "exam": 0.5,
            "nodes": {n: {"dev": score[n], "exam": score[n], "dev_logprob": -3.0, "exam_logprob": -3.0} for n in names},
        }
        if k:
            weights = {n: 1.2 - score[n] for n in names}
            total = sum(weights.values())
            rows = {n: int(budget * w / total) for n, w in weights.items()}
            rows[names[0]] += budget - sum(rows.values())
            decisions = [
                {
                    "node": n,
                    "rows": rows[n],
                    "score": score[n],
                    "progress": 0.1,
                    "weakness": 1 - score[n],
                    "reason": f"weak ({score[n]:.0%} on dev)",
                }
                for n in names
            ]
            write(folder / "budgets.json", {"round": k, "total": budget, "decisions": decisions})
            kinds = {"corrections": budget // 3, "generated": budget - budget // 3, "replay": budget // 4}
            kinds |= {"train": sum(kinds.values()), "pairs": budget // 3}
            write(folder / "rows.json", kinds)
            write(folder / "corrections.json", {"asked": budget, "used": budget // 3})
            write(folder / "student.json", {"student": f"round-{k}"})
            for method, steps in (("sft", 60), ("dpo", 20)):
                history = [{"loss": 2.0 * 0.97**s + rng.uniform(0, 0.1), "step": s} for s in range(1, steps + 1)]
                write(folder / "student" / method / "metrics.json", {"method": method, "log_history": history})
            record |= {"budgets": rows, "decisions": decisions, "rows": kinds}
            done += [f"{k}:{s}" for s in ("allocate", "correct", "generate", "assemble", "train", "examine")]
            score = {n: min(1.0, max(0.0, s + rng.uniform(-0.1, 0.25))) for n, s in score.items()}
        write(folder / "round.json", record)
        records.append(record)
    write(root / "state.json", {"version": 1, "fingerprint": {}, "done": done, "current": None, "stopped": None})
    write(
        root / "summary.json",
        {
            "baseline": False,
            "rounds": [{**r, "forgot": []} for r in records],
            "best_round": rounds,
            "best_student": f"round-{rounds}",
            "final_student": f"round-{rounds}",
            "stopped": None,
            "items": {"exam": 10 * nodes, "dev": 10 * nodes, "test": 5 * nodes},
        },
    )
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "report.json")
    args = parser.parse_args()

    from syllabus.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        run = synthetic_loop(Path(tmp) / "distill", args.nodes, args.rounds, seed=0)
        other = synthetic_loop(Path(tmp) / "distill-baseline", args.nodes, args.rounds, seed=1)
        seconds, outcome = [], None
        for _ in range(args.repeats):
            started = time.perf_counter()
            outcome = write_report(run, compare=[other])
            seconds.append(time.perf_counter() - started)
        assert outcome is not None
        size = outcome.path.stat().st_size
    import plotly.offline

    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "plotly": metadata.version("plotly"),
        "nodes": args.nodes,
        "rounds": args.rounds,
        "compare_runs": 1,
        "charts": outcome.charts,
        "bytes": size,
        "mib": round(size / 2**20, 2),
        "plotly_js_bytes": len(plotly.offline.get_plotlyjs().encode()),
        "first_render_s": round(seconds[0], 3),
        "median_render_s": round(statistics.median(seconds), 3),
        "renders": [round(s, 3) for s in seconds],
        "bounds": {"bytes": SIZE_BOUND, "seconds": SECONDS_BOUND},
        "within_bounds": size < SIZE_BOUND and max(seconds) < SECONDS_BOUND,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
