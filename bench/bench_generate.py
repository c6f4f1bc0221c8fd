"""How much does `syllabus generate` cost over a plain asyncio loop, against the same server?

Why: every request `syllabus generate` makes also passes through templates, the
cache, parsers, the taxonomy and the dataset writer, and the command starts a fresh
Python process. This benchmark checks that all of this costs little next to the
teacher: rows per second of the real command should be at least 0.95 of what a bare
openai client loop gets for the very same requests against llama.cpp, and at least 3x
against the instant server, where the client's own cost is the ceiling (issue 24).

How: one server answers both sides, on each of two servers (`--server`, default both):
  llama    the llama.cpp server (started here on a free 127.0.0.1 port serving the
           embedded SmolLM2 GGUF, unless --base-url names one that serves it as
           `smollm2`); it answers one request at a time, so the model's cost dominates;
  instant  bench/instant_server.py, which answers every request at once with a fixed,
           parseable reply: the client's own ceiling (ANCHORS.md: a plain openai loop
           reaches ~705 rows/s at concurrency 16 on these cores), so here the pipeline's
           own cost per request is all that is measured.
Each round runs, in turn,
  (a) `python -m syllabus generate ... --teacher openai:smollm2` as a subprocess, on a
      fresh project tuned like tests/conftest.py (greedy, short replies) and a fresh
      run folder, so nothing comes from cache; timed from process start to exit;
  (b) bench/plain_loop.py (AsyncOpenAI + asyncio.Semaphore(C) + gather) as its own
      process, sending exactly the requests (a) stored in its cache (`answers.request`,
      in `created` order); timed from process start to exit, like (a), since the goal
      counts start-up on both sides. It gets credit for the rows (a) made from those answers.
Medians over the rounds, the ratio of rows/s, and the raw numbers go to
bench/results/generate.json, one entry per server ("llama", "instant"); running one
server keeps the other's entry from the last run. Each run records the load average
(other work on the machine skews both sides alike, so the ratio holds better than
the absolute figures) and the peak RSS of its process tree.

Run (needs `make install-test`, which builds llama-cpp-python[server]):
    .venv/bin/python bench/bench_generate.py [--server instant|llama|both] [--repeats 2]
        [--questions 6] [--concurrency 4]                      (llama)
        [--instant-questions 2000] [--instant-concurrency 16]  (instant)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from instant_server import instant_server  # noqa: E402
from measure import load_avg, machine, run_measured  # noqa: E402

MODEL = "smollm2"
INSTANT_MODEL = "instant"
NODES = "mathematics/linear-algebra"
GOAL = 0.95  # llama.cpp: the model's cost dominates; syllabus must not slow it down
INSTANT_GOAL = 3.0  # the instant server (issue 24): the client's own cost is all there is


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
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf_file()),
                "--model_alias",
                MODEL,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_threads",
                "2",
                "--n_ctx",
                "2048",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
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
                        raise RuntimeError(f"llama.cpp server did not start:\n{log.read_text()[-3000:]}") from None
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
    # As in tune_project: replies this short are often cut off; rows must not be dropped for it,
    # or the plain loop would be credited with rows the command threw away.
    gen.setdefault("filters", {}).setdefault("checks", {})["truncated"] = False
    dump(doc, folder / "syllabus.yaml")
    return folder


def timeline(server, start_epoch: float, wall: float) -> dict:
    """With the instant server: seconds from process start to its first request, and from its
    last request to exit (start-up; filters and dataset writing), the rest being requests."""
    if server is None:
        return {}
    stats = server.stats()
    if not stats.get("first_chat_time"):
        return {}
    first, last = stats["first_chat_time"] - start_epoch, stats["last_chat_time"] - start_epoch
    return {
        "first_request_after_s": round(first, 3),
        "after_last_request_s": round(wall - last, 3),
        "requests_span_s": round(last - first, 3),
    }


def run_syllabus(
    work: Path, base_url: str, model: str, questions: int, concurrency: int, server=None
) -> tuple[dict, list[dict]]:
    """(a): the command as a user runs it; its numbers, and the requests its cache recorded."""
    project, run = make_project(work / "project"), work / "run"
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
        f"openai:{model}",
        "--base-url",
        base_url,
        "--concurrency",
        str(concurrency),
        "--run",
        str(run),
    ]
    if server is not None:
        server.reset()
    start_epoch = time.time()
    done = run_measured(command, timeout=1800, env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        raise RuntimeError(f"syllabus generate exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    with open(run / "dataset.jsonl", encoding="utf-8") as lines:
        rows = sum(1 for line in lines if line.strip())
    with contextlib.closing(sqlite3.connect(run / "cache.sqlite")) as db:
        asked = db.execute("SELECT request, completion_tokens FROM answers ORDER BY created").fetchall()
    requests = [json.loads(request) for request, _ in asked]
    result = measure(done.wall_s, rows, len(requests), sum(tokens for _, tokens in asked))
    result.update(peak_rss_mib=done.peak_rss_mib, cpu_s=done.cpu_s, **timeline(server, start_epoch, done.wall_s))
    return result, requests


def run_plain(
    work: Path, base_url: str, model: str, requests: list[dict], concurrency: int, server=None
) -> tuple[float, int, dict]:
    """(b): bench/plain_loop.py as its own process, timed from start to exit like (a)."""
    work.mkdir(parents=True, exist_ok=True)
    file = work / "requests.json"
    file.write_text(json.dumps(requests), encoding="utf-8")
    command = [
        sys.executable,
        str(ROOT / "bench" / "plain_loop.py"),
        str(file),
        "--base-url",
        base_url,
        "--model",
        model,
        "--concurrency",
        str(concurrency),
    ]
    if server is not None:
        server.reset()
    start_epoch = time.time()
    done = run_measured(command, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"plain loop exited with {done.returncode}:\n{done.stderr}")
    return (
        done.wall_s,
        json.loads(done.stdout)["output_tokens"],
        {"peak_rss_mib": done.peak_rss_mib, "cpu_s": done.cpu_s, **timeline(server, start_epoch, done.wall_s)},
    )


def measure(wall: float, rows: int, requests: int, tokens: int) -> dict:
    return {
        "wall_s": round(wall, 3),
        "rows": rows,
        "requests": requests,
        "output_tokens": tokens,
        "rows_per_s": rows / wall,
        "requests_per_s": requests / wall,
        "output_tokens_per_s": tokens / wall,
        "load_avg_at_end": load_avg(),
    }


def medians(runs: list[dict]) -> dict:
    keys = (
        "wall_s",
        "rows_per_s",
        "requests_per_s",
        "output_tokens_per_s",
        "peak_rss_mib",
        "cpu_s",
        "first_request_after_s",
        "requests_span_s",
        "after_last_request_s",
    )
    return {key: statistics.median(run[key] for run in runs) for key in keys if all(key in run for run in runs)}


def warm_up(base_url: str, model: str) -> None:
    """One short request, untimed, so the first timed run does not pay for a cold server."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}).encode()
    request = urllib.request.Request(f"{base_url}/chat/completions", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=120).read()


def compile_bytecode() -> str:
    """Byte-compile the project's modules, as `pip install` does a wheel's: the plain loop's
    openai was byte-compiled when installed, and an editable checkout run with
    PYTHONDONTWRITEBYTECODE (as this machine's shell sets it) would otherwise compile about 60
    modules from source on every start (some 50 ms of syllabus's start here)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "syllabus")], check=True)
    return "compiled ahead (compileall), as an installed package is"


def bench(
    base_url: str, model: str, server: str, questions: int, concurrency: int, repeats: int, work: Path, running=None
) -> dict:
    host = machine("torch", "openai", "llama_cpp_python")
    bytecode = compile_bytecode()
    warm_up(base_url, model)
    runs: dict[str, list[dict]] = {"syllabus": [], "plain": []}
    for round_index in range(repeats):
        folder = work / f"{server}-round{round_index}"
        syllabus, requests = run_syllabus(folder, base_url, model, questions, concurrency, running)
        wall, tokens, extra = run_plain(folder, base_url, model, requests, concurrency, running)
        plain = {**measure(wall, syllabus["rows"], len(requests), tokens), **extra}
        runs["syllabus"].append(syllabus)
        runs["plain"].append(plain)
        print(
            f"[{server}] round {round_index + 1}/{repeats}: syllabus {syllabus['wall_s']:.1f}s, "
            f"plain {plain['wall_s']:.1f}s, {syllabus['rows']} rows, {len(requests)} requests, "
            f"load {load_avg()}",
            flush=True,
        )
    mid = {side: medians(side_runs) for side, side_runs in runs.items()}
    goal = INSTANT_GOAL if server == "instant" else GOAL
    ratio = mid["syllabus"]["rows_per_s"] / mid["plain"]["rows_per_s"]
    # CPU seconds of each side's process tree: steadier than wall time when other work shares the cores
    cpu_ratio = mid["plain"]["cpu_s"] / mid["syllabus"]["cpu_s"] if mid["syllabus"]["cpu_s"] else None
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**host, "load_avg_at_end": load_avg()},
        "settings": {
            "questions": questions,
            "concurrency": concurrency,
            "repeats": repeats,
            "nodes": NODES,
            "model": model,
            "server": server,
            "bytecode": bytecode,
        },
        "runs": runs,
        "medians": mid,
        "ratio_rows_per_s": ratio,
        "ratio_cpu_plain_over_syllabus": cpu_ratio,
        "goal": goal,
        "meets_goal": ratio >= goal,
    }


def print_table(result: dict) -> None:
    print(
        f"\n{result['settings']['server']}: {result['settings']['questions']} questions, "
        f"concurrency {result['settings']['concurrency']}"
    )
    print(f"{'median':<10}{'wall s':>9}{'rows/s':>10}{'req/s':>10}{'out tok/s':>11}{'peak MiB':>10}")
    for side, mid in result["medians"].items():
        print(
            f"{side:<10}{mid['wall_s']:>9.2f}{mid['rows_per_s']:>10.3f}{mid['requests_per_s']:>10.3f}"
            f"{mid['output_tokens_per_s']:>11.1f}{mid['peak_rss_mib']:>10.1f}"
        )
    verdict = "meets" if result["meets_goal"] else "below"
    print(
        f"ratio syllabus/plain rows/s: {result['ratio_rows_per_s']:.3f} ({verdict} the goal {result['goal']}); "
        f"CPU seconds plain/syllabus: {result['ratio_cpu_plain_over_syllabus']:.3f}"
    )
    if "first_request_after_s" in result["medians"]["syllabus"]:
        for side, mid in result["medians"].items():
            print(
                f"  {side}: first request after {mid['first_request_after_s']:.2f}s, requests for "
                f"{mid['requests_span_s']:.2f}s, exit {mid['after_last_request_s']:.2f}s after the last"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("instant", "llama", "both"), default="both")
    parser.add_argument("--questions", type=int, default=6, help="questions (= rows) per run, llama")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight, both sides, llama")
    parser.add_argument("--instant-questions", type=int, default=2000, help="questions per run, instant")
    parser.add_argument("--instant-concurrency", type=int, default=16, help="requests in flight, instant")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (a) then (b), per server")
    parser.add_argument(
        "--base-url",
        help="an OpenAI-compatible server serving the embedded model as 'smollm2' (instead of starting llama.cpp)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "generate.json")
    args = parser.parse_args()
    servers = ("llama", "instant") if args.server == "both" else (args.server,)
    try:
        results = json.loads(args.output.read_text(encoding="utf-8"))
        if not all(
            isinstance(results.get(name), dict) and "ratio_rows_per_s" in results[name]
            for name in ("llama", "instant")
            if name in results
        ):
            results = {}
    except (OSError, ValueError, AttributeError):
        results = {}
    results = {key: value for key, value in results.items() if key in ("llama", "instant")}
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        work = Path(tmp)
        for server in servers:
            if server == "instant":
                with instant_server(model=INSTANT_MODEL) as running:
                    results["instant"] = bench(
                        running.base_url,
                        INSTANT_MODEL,
                        "instant",
                        args.instant_questions,
                        args.instant_concurrency,
                        args.repeats,
                        work,
                        running,
                    )
                    results["instant"]["server_cpu_s"] = running.stats()["cpu_s"]
            elif args.base_url:
                results["llama"] = bench(
                    args.base_url.rstrip("/"), MODEL, "given", args.questions, args.concurrency, args.repeats, work
                )
            else:
                with llama_server(work / "server.log") as base_url:
                    results["llama"] = bench(
                        base_url,
                        MODEL,
                        "llama.cpp (started here)",
                        args.questions,
                        args.concurrency,
                        args.repeats,
                        work,
                    )
            print_table(results["llama" if server != "instant" else "instant"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    ordered = {name: results[name] for name in ("llama", "instant") if name in results}
    args.output.write_text(json.dumps(ordered, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
