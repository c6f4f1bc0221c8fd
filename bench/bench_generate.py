"""How much does `syllabus generate` cost over a plain asyncio loop, against the same server?

Why: every request `syllabus generate` makes also passes through templates, the
cache, parsers, the taxonomy and the dataset writer, and the command starts a fresh
Python process. This benchmark checks that all of this costs little next to the
teacher: rows per second of the real command should be at least 0.95 of what a bare
openai client loop gets for the very same requests.

How: one llama.cpp server (started here on a free 127.0.0.1 port serving the
embedded SmolLM2 GGUF, unless --base-url names one that serves it as `smollm2`)
answers both sides. Each round runs, in turn,
  (a) `python -m syllabus generate ... --teacher openai:smollm2` as a subprocess, on a
      fresh project tuned like tests/conftest.py (greedy, short replies) and a fresh
      run folder, so nothing comes from cache; timed from process start to exit;
  (b) bench/plain_loop.py (AsyncOpenAI + asyncio.Semaphore(C) + gather) as its own
      process, sending exactly the requests (a) stored in its cache (`answers.request`,
      in `created` order); timed from process start to exit, like (a), since the goal
      counts start-up on both sides. It gets credit for the rows (a) made from those answers.
Medians over the rounds, the ratio of rows/s, and the raw numbers go to
bench/results/generate.json.

Run (needs `make install-test`, which builds llama-cpp-python[server]):
    .venv/bin/python bench/bench_generate.py [--questions 6] [--concurrency 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2"
NODES = "mathematics/linear-algebra"
GOAL = 0.95


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def llama_server(log: Path):
    """The embedded GGUF behind llama.cpp's OpenAI-compatible server; yields its base URL."""
    from syllabus.backends.embedded import gguf_file

    port = free_port()
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_file()), "--model_alias", MODEL,
             "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", "2048"],
            stdout=handle, stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.time() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"llama.cpp server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    urllib.request.urlopen(f"{base}/models", timeout=2).read()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise RuntimeError(f"llama.cpp server did not start:\n{log.read_text()[-3000:]}")
                    time.sleep(0.5)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def make_project(folder: Path) -> Path:
    """A fresh example project with the quick settings of tests/conftest.py `tune_project`."""
    from syllabus.project import init_project
    from syllabus.yamlio import dump, load

    init_project(folder)
    doc = load(folder / "syllabus.yaml")
    gen = doc["generation"]
    gen["subject_samples"], gen["max_subjects"], gen["max_sessions"] = 1, 1, 4
    for stage, tokens in {"subjects": 60, "syllabus": 120, "question": 48, "answer": 64}.items():
        gen["stages"][stage]["max_tokens"] = tokens
        gen["stages"][stage]["temperature"] = 0.0
    dump(doc, folder / "syllabus.yaml")
    return folder


def run_syllabus(work: Path, base_url: str, questions: int, concurrency: int) -> tuple[dict, list[dict]]:
    """(a): the command as a user runs it; its numbers, and the requests its cache recorded."""
    project, run = make_project(work / "project"), work / "run"
    command = [sys.executable, "-m", "syllabus", "generate", "--project", str(project), "--nodes", NODES,
               "--questions", str(questions), "--teacher", f"openai:{MODEL}", "--base-url", base_url,
               "--concurrency", str(concurrency), "--run", str(run)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "COLUMNS": "200"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"syllabus generate exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    with open(run / "dataset.jsonl", encoding="utf-8") as lines:
        rows = sum(1 for line in lines if line.strip())
    with contextlib.closing(sqlite3.connect(run / "cache.sqlite")) as db:
        asked = db.execute("SELECT request, completion_tokens FROM answers ORDER BY created").fetchall()
    requests = [json.loads(request) for request, _ in asked]
    return measure(wall, rows, len(requests), sum(tokens for _, tokens in asked)), requests


def run_plain(work: Path, base_url: str, requests: list[dict], concurrency: int) -> tuple[float, int]:
    """(b): bench/plain_loop.py as its own process, timed from start to exit like (a)."""
    work.mkdir(parents=True, exist_ok=True)
    file = work / "requests.json"
    file.write_text(json.dumps(requests), encoding="utf-8")
    command = [sys.executable, str(ROOT / "bench" / "plain_loop.py"), str(file), "--base-url", base_url,
               "--model", MODEL, "--concurrency", str(concurrency)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"plain loop exited with {done.returncode}:\n{done.stderr}")
    return wall, json.loads(done.stdout)["output_tokens"]


def measure(wall: float, rows: int, requests: int, tokens: int) -> dict:
    return {"wall_s": round(wall, 3), "rows": rows, "requests": requests, "output_tokens": tokens,
            "rows_per_s": rows / wall, "requests_per_s": requests / wall, "output_tokens_per_s": tokens / wall}


def medians(runs: list[dict]) -> dict:
    keys = ("wall_s", "rows_per_s", "requests_per_s", "output_tokens_per_s")
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def machine() -> dict:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),  # other work on the machine skews both sides
            **{name: version(dist) for name, dist in
               (("torch", "torch"), ("openai", "openai"), ("llama_cpp", "llama_cpp_python"))}}


def warm_up(base_url: str) -> None:
    """One short request, untimed, so the first timed run does not pay for a cold server."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).encode()
    request = urllib.request.Request(f"{base_url}/chat/completions", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=120).read()


def bench(base_url: str, args, work: Path) -> dict:
    host = machine()
    warm_up(base_url)
    runs: dict[str, list[dict]] = {"syllabus": [], "plain": []}
    for round_index in range(args.repeats):
        syllabus, requests = run_syllabus(work / f"round{round_index}", base_url, args.questions, args.concurrency)
        wall, tokens = run_plain(work / f"round{round_index}", base_url, requests, args.concurrency)
        plain = measure(wall, syllabus["rows"], len(requests), tokens)
        runs["syllabus"].append(syllabus)
        runs["plain"].append(plain)
        print(f"round {round_index + 1}/{args.repeats}: syllabus {syllabus['wall_s']:.1f}s, "
              f"plain {plain['wall_s']:.1f}s, {syllabus['rows']} rows, {len(requests)} requests", flush=True)
    mid = {side: medians(side_runs) for side, side_runs in runs.items()}
    ratio = mid["syllabus"]["rows_per_s"] / mid["plain"]["rows_per_s"]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": host,
        "settings": {"questions": args.questions, "concurrency": args.concurrency, "repeats": args.repeats,
                     "nodes": NODES, "model": MODEL, "server": "given" if args.base_url else "llama.cpp (started here)"},
        "runs": runs,
        "medians": mid,
        "ratio_rows_per_s": ratio,
        "goal": GOAL,
        "meets_goal": ratio >= GOAL,
    }


def print_table(result: dict) -> None:
    print(f"\n{'median':<10}{'wall s':>9}{'rows/s':>9}{'req/s':>9}{'out tok/s':>11}")
    for side, mid in result["medians"].items():
        print(f"{side:<10}{mid['wall_s']:>9.2f}{mid['rows_per_s']:>9.3f}{mid['requests_per_s']:>9.3f}"
              f"{mid['output_tokens_per_s']:>11.1f}")
    verdict = "meets" if result["meets_goal"] else "below"
    print(f"ratio syllabus/plain rows/s: {result['ratio_rows_per_s']:.3f} ({verdict} the goal {GOAL})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=6, help="questions (= rows) per run")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight, both sides")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (a) then (b)")
    parser.add_argument("--base-url", help="an OpenAI-compatible server serving the embedded model as 'smollm2'")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "generate.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        work = Path(tmp)
        if args.base_url:
            result = bench(args.base_url.rstrip("/"), args, work)
        else:
            with llama_server(work / "server.log") as base_url:
                result = bench(base_url, args, work)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(result)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
