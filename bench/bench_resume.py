"""After `kill -9`, does a rerun of `syllabus generate` send again any request already answered?

Why: resume = rerun (README): every answer is committed to the SQLite request cache as
it arrives, so after a crash the same command should send only what had no answer yet.
Every request re-sent is paid twice with a paid teacher. Goal: 0 re-sent for finished items.

How: bench/instant_server.py with --record keeps a hash of every chat request it
receives (messages, temperature, top_p, max_tokens; `instant_server.request_hash`), and
can SIGKILL a given process when its N-th request arrives (before answering it), so
the kill lands at an exact, random point of the run. First an uninterrupted run
(the reference: its request count R and its rows). Then for each seed: a fresh project
and run folder; the server is armed to kill the command at request N, N drawn
uniformly from 1..R with random.Random(seed); after the kill, the cache is read
(`answers.request`, hashed alike) = what was answered before the kill; the same
command runs again to the end. Counted, by request hash (a multiset: two question
indices can ask the very same thing, and each has its own cache entry, so each may be
sent once):
  re-sent       requests the rerun sent beyond the new answers it stored
                (sum over hashes of max(0, rerun[h] - (final[h] - before[h]))): requests
                whose answer was in the cache before the kill and were sent again
  answered_before_kill / in_flight_lost  answers in the cache after the kill / requests
                the killed run sent whose answers never reached the cache (these must be
                sent again: not counted as re-sent)
  same_rows     the rerun's dataset.jsonl has the reference run's rows (question index,
                content hash), i.e. resuming changed nothing
Results: bench/results/resume.json.

Run:
    .venv/bin/python bench/bench_resume.py [--questions 300] [--seeds 1,2,3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from bench_generate import NODES, make_project  # noqa: E402
from instant_server import MODEL, instant_server, request_hash  # noqa: E402
from measure import load_avg, machine  # noqa: E402


def command(project: Path, run: Path, base_url: str, questions: int, concurrency: int) -> list[str]:
    return [
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
        "--base-url",
        base_url,
        "--concurrency",
        str(concurrency),
        "--run",
        str(run),
    ]


def cached(run: Path) -> Counter:
    """Hashes of the requests whose answers the cache holds (opened read-only after the kill)."""
    file = run / "cache.sqlite"
    if not file.exists():
        return Counter()
    with contextlib.closing(sqlite3.connect(file)) as db:
        try:
            rows = db.execute("SELECT request FROM answers").fetchall()
        except sqlite3.OperationalError:  # killed before the table was made
            return Counter()
    return Counter(request_hash(json.loads(request)) for (request,) in rows if request)


def rows_of(run: Path) -> list[tuple[str, int, str]]:
    with open(run / "dataset.jsonl", encoding="utf-8") as lines:
        return [(r["taxonomy_path"], r["question_index"], r["content_hash"]) for r in map(json.loads, lines) if r]


def finish(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        raise RuntimeError(
            f"syllabus generate exited with {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return done


def one_seed(seed: int, server, reference: dict, args, work: Path) -> dict:
    project, run = make_project(work / f"project-{seed}"), work / f"run-{seed}"
    cmd = command(project, run, server.base_url, args.questions, args.concurrency)
    kill_at = random.Random(seed).randint(1, reference["requests"])
    start_index = len(server.requests())
    load_before = load_avg()
    started = time.perf_counter()
    process = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"}
    )
    server.arm(process.pid, kill_at)
    code = process.wait(timeout=args.timeout)
    killed_after_s = time.perf_counter() - started
    sent_killed = Counter(h for h, _ in server.requests(start_index))
    stage_at_kill = Counter(stage for _, stage in server.requests(start_index))
    before = cached(run)
    rerun_index = len(server.requests())
    started = time.perf_counter()
    finish(cmd, args.timeout)
    rerun_s = time.perf_counter() - started
    rerun = Counter(h for h, _ in server.requests(rerun_index))
    final = cached(run)
    resent = {h: n - (final[h] - before[h]) for h, n in rerun.items() if n > final[h] - before[h]}
    naive = sum(n for h, n in rerun.items() if before[h])
    return {
        "seed": seed,
        "kill_at_request": kill_at,
        "killed": code == -9,
        "exit_code": code,
        "killed_after_s": round(killed_after_s, 2),
        "requests_sent_before_kill": sum(sent_killed.values()),
        "requests_sent_before_kill_by_stage": dict(stage_at_kill),
        "answered_before_kill": sum(before.values()),
        "in_flight_lost": sum(max(0, n - before[h]) for h, n in sent_killed.items()),
        "rerun_requests": sum(rerun.values()),
        "new_answers_stored_by_rerun": sum(final.values()) - sum(before.values()),
        "re_sent": sum(resent.values()),
        "re_sent_naive": naive,  # rerun requests whose body had an answer before the kill (same body, other index included)
        "rerun_s": round(rerun_s, 2),
        "same_rows_as_uninterrupted": rows_of(run) == reference["rows"],
        "load_avg_before": load_before,
        "load_avg_after": load_avg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "resume.json")
    args = parser.parse_args()
    host = machine("openai")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp, instant_server(record=True) as server:
        work = Path(tmp)
        project, run = make_project(work / "project-reference"), work / "run-reference"
        started = time.perf_counter()
        finish(command(project, run, server.base_url, args.questions, args.concurrency), args.timeout)
        reference = {
            "requests": len(server.requests()),
            "rows": rows_of(run),
            "wall_s": round(time.perf_counter() - started, 2),
            "answers_stored": sum(cached(run).values()),
        }
        print(
            f"reference: {reference['requests']} requests, {len(reference['rows'])} rows, {reference['wall_s']}s",
            flush=True,
        )
        for seed in (int(s) for s in args.seeds.split(",")):
            result = one_seed(seed, server, reference, args, work)
            results.append(result)
            print(json.dumps(result), flush=True)
    total = sum(r["re_sent"] for r in results)
    report = {
        "benchmark": "requests re-sent by a rerun after kill -9 of syllabus generate",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**host, "load_avg_at_end": load_avg()},
        "settings": {
            "questions": args.questions,
            "concurrency": args.concurrency,
            "nodes": NODES,
            "server": "bench/instant_server.py --record (kills at the chosen request)",
        },
        "reference": {k: v for k, v in reference.items() if k != "rows"} | {"rows": len(reference["rows"])},
        "runs": results,
        "re_sent_total": total,
        "goal": 0,
        "meets_goal": total == 0 and all(r["killed"] for r in results),
        "all_same_rows": all(r["same_rows_as_uninterrupted"] for r in results),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"re-sent after kill -9: {total} (goal 0); rows same as uninterrupted: {report['all_same_rows']}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
