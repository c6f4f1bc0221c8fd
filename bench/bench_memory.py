"""Does `syllabus generate` stay flat in memory and linear in time up to 100k questions?

Why: a real run can ask for 100k questions; the goal (reliability issue) is peak memory
under 500 MB whatever the size, and time that grows linearly with it.

How: for each size (default 10k, 30k, 100k questions) a fresh project and a fresh run
folder, against bench/instant_server.py (answers at once, so the run is as fast as
the client allows and time is all client time), at concurrency 16. The project has
richer settings than the tests (4 subjects of 12 sessions, each session 6 concepts, so
few questions repeat and most rows survive the dedup filters, as with a real teacher);
filters stay at their defaults. `python -m syllabus generate` runs as a subprocess;
its process tree's RSS is polled every 0.1 s with psutil (bench/measure.py) and the
peak is reported, with an RSS timeline (one sample per 2 s) and the split at the
moment the server saw its last request: peak while generating vs peak after (filters,
dataset writing). `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` is recorded as a
cross-check (largest child so far). Sizes run smallest first; each records the load
average before and after. Results: bench/results/memory.json.

Run:
    .venv/bin/python bench/bench_memory.py [--sizes 10000,30000,100000] [--concurrency 16]
    .venv/bin/python bench/bench_memory.py --quick      # 1000,3000,10000 (a few minutes)
At 2 busy cores 100k questions (about 200k requests) take tens of minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from instant_server import MODEL, instant_server  # noqa: E402
from measure import children_max_rss_mib, load_avg, machine, run_measured  # noqa: E402

NODES = "mathematics/linear-algebra"
GOAL_MIB = 500
SETTINGS = {"subject_samples": 1, "max_subjects": 4, "max_sessions": 12}


def make_project(folder: Path) -> Path:
    from syllabus.project import init_project
    from syllabus.yamlio import dump, load

    init_project(folder)
    doc = load(folder / "syllabus.yaml")
    gen = doc["generation"]
    for key, value in SETTINGS.items():
        gen[key] = value
    dump(doc, folder / "syllabus.yaml")
    return folder


def one_size(questions: int, concurrency: int, work: Path, timeout: float) -> dict:
    project, run = make_project(work / f"project-{questions}"), work / f"run-{questions}"
    command = [
        sys.executable,
        "-m",
        "syllabus",
        "generate",
        "--project",
        str(project),
        "--nodes",
        NODES,
        "--questions",
        str(questions),
        "--teacher",
        f"openai:{MODEL}",
        "--concurrency",
        str(concurrency),
        "--run",
        str(run),
    ]
    before = load_avg()
    with instant_server() as server:
        start_epoch = time.time()
        done = run_measured(
            [*command, "--base-url", server.base_url],
            timeout=timeout,
            sample_every=2.0,
            env={**os.environ, "COLUMNS": "200"},
        )
        stats = server.stats()
    result = {
        "questions": questions,
        "returncode": done.returncode,
        "wall_s": round(done.wall_s, 2),
        "cpu_s": done.cpu_s,
        "peak_rss_mib": done.peak_rss_mib,
        "peak_processes": done.peak_processes,
        "children_max_rss_mib_so_far": children_max_rss_mib(),
        "server_requests": stats["chat"],
        "server_cpu_s": stats["cpu_s"],
        "load_avg_before": before,
        "load_avg_after": load_avg(),
    }
    if done.returncode != 0:
        result["error"] = (done.stdout[-1500:] + "\n" + done.stderr[-1500:]).strip()
        return result
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    result.update(
        rows=summary["rows"],
        generated=summary["generated"],
        dropped=summary["dropped"],
        filter_counts=summary["filters"].get("counts"),
        filter_seconds=summary["filters"].get("seconds"),
        rows_per_s=round(summary["rows"] / done.wall_s, 2),
        questions_per_s=round(questions / done.wall_s, 2),
        ms_per_question=round(1000 * done.wall_s / questions, 3),
    )
    if stats.get("last_chat_time"):
        split = stats["last_chat_time"] - start_epoch
        generating = [rss for t, rss in done.samples if t <= split]
        after = [rss for t, rss in done.samples if t > split]
        result.update(
            last_request_at_s=round(split, 2),
            after_last_request_s=round(done.wall_s - split, 2),
            peak_rss_generating_mib=max(generating, default=None),
            peak_rss_after_generating_mib=max(after, default=None),
        )
    result["rss_timeline_mib"] = done.samples
    return result


def analyse(results: list[dict]) -> dict:
    """Memory flat? Time linear? Wall time moves with the machine's load, so CPU seconds per
    question (the process tree's own, less sensitive to other work) is given beside it."""
    ok = [r for r in results if r["returncode"] == 0]
    if not ok:
        return {}
    for r in ok:
        r.setdefault("cpu_ms_per_question", round(1000 * r["cpu_s"] / r["questions"], 3))
    peaks = [r["peak_rss_mib"] for r in ok]
    analysis = {
        "peak_rss_mib_by_size": {r["questions"]: r["peak_rss_mib"] for r in ok},
        "peak_rss_generating_mib_by_size": {r["questions"]: r.get("peak_rss_generating_mib") for r in ok},
        "ms_per_question_by_size": {r["questions"]: r["ms_per_question"] for r in ok},
        "cpu_ms_per_question_by_size": {r["questions"]: r["cpu_ms_per_question"] for r in ok},
        "max_peak_rss_mib": max(peaks),
        "memory_goal_mib": GOAL_MIB,
        "meets_memory_goal": max(peaks) < GOAL_MIB,
    }
    if len(ok) >= 2:
        small, large = ok[0], ok[-1]
        span = large["questions"] - small["questions"]
        analysis["peak_growth_mib_per_10k_questions"] = round(
            10000 * (large["peak_rss_mib"] - small["peak_rss_mib"]) / span, 1
        )
        analysis["time_per_question_largest_over_smallest"] = round(
            large["ms_per_question"] / small["ms_per_question"], 3
        )
        analysis["cpu_per_question_largest_over_smallest"] = round(
            large["cpu_ms_per_question"] / small["cpu_ms_per_question"], 3
        )
    return analysis


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="questions per run, comma separated")
    parser.add_argument("--quick", action="store_true", help="sizes 1000,3000,10000")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=5400, help="seconds allowed per size")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "memory.json")
    parser.add_argument(
        "--analyse-only", action="store_true", help="recompute the analysis of an existing --output file (no runs)"
    )
    args = parser.parse_args()
    if args.analyse_only:
        report = json.loads(args.output.read_text(encoding="utf-8"))
        report["analysis"] = analyse(report["results"])
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(report["analysis"], indent=2))
        return 0
    sizes = [1000, 3000, 10000] if args.quick else [int(x) for x in args.sizes.split(",")]
    host = machine("openai", "datasets", "datasketch")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for questions in sorted(sizes):
            print(f"== {questions} questions", flush=True)
            result = one_size(questions, args.concurrency, Path(tmp), args.timeout)
            results.append(result)
            shown = {k: v for k, v in result.items() if k not in ("rss_timeline_mib", "error")}
            print(json.dumps(shown), flush=True)
            if result["returncode"] != 0:
                print(result.get("error", ""), file=sys.stderr)
    analysis = analyse(results)
    report = {
        "benchmark": "syllabus generate: peak memory and wall time by size, against the instant server",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            **host,
            "load_avg_at_end": load_avg(),
            "note": "2 shared cores; other sessions ran tests meanwhile (see each size's load averages)",
        },
        "settings": {
            "nodes": NODES,
            "concurrency": args.concurrency,
            "project": SETTINGS,
            "filters": "defaults (checks, exact, minhash)",
            "server": "bench/instant_server.py",
        },
        "results": results,
        "analysis": analysis,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(analysis, indent=2))
    print(f"wrote {args.output}")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
