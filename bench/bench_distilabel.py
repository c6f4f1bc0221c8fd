"""distilabel vs the plain openai loop over the same flat prompts, on the same servers.

Why: ANCHORS.md measured distilabel 1.5.3 at 0.25 of a plain openai loop against an
instant server and 0.83 against llama.cpp on these cores; this reproduces that
comparison here, beside the syllabus figures of bench_generate.py (same servers, same
plain loop), so the three can be read together.

How: flat prompts "Write one exam question about topic k." (temperature 0, top_p 1,
max_tokens 32). Two servers: bench/instant_server.py (answers at once; concurrency 16,
--instant-rows 3000 by default) and the llama.cpp server with the embedded SmolLM2
(concurrency 4, --llama-rows 48). Each round runs, in turn, as separate processes timed
from start to exit (start-up counts on both sides), with the peak RSS of the process tree
(distilabel runs its steps in several processes):
  plain       bench/plain_loop.py (AsyncOpenAI + Semaphore(C) + gather), in .venv;
  distilabel  bench/distilabel_pipeline.py (LoadDataFromDicts -> TextGeneration with
              OpenAILLM, input_batch_size = C, use_cache=False), in its own venv.
Medians over --repeats rounds, ratios of rows/s to the plain loop.

distilabel is never installed into .venv (its pins would move the project's): it runs
from a separate venv, `--python` (default $DISTILABEL_PYTHON or /tmp/distilabel-venv/bin/python).
If that venv is missing it is created there (`pip install distilabel openai requests`;
`--no-install` skips this). If distilabel cannot be installed or cannot run (offline,
no wheel, import error), the reason goes into the JSON with "status": "unavailable"
and the script exits 0. Results: bench/results/distilabel.json.

Run:
    .venv/bin/python bench/bench_distilabel.py [--server instant|llama|both] [--repeats 2]
        [--instant-rows 3000] [--llama-rows 48] [--python PATH] [--no-install]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_generate import MODEL as LLAMA_MODEL  # noqa: E402
from bench_generate import llama_server, warm_up  # noqa: E402
from instant_server import MODEL as INSTANT_MODEL  # noqa: E402
from instant_server import instant_server  # noqa: E402
from measure import load_avg, machine, run_measured  # noqa: E402

DEFAULT_VENV = Path("/tmp/distilabel-venv")
PACKAGES = ["distilabel", "openai", "requests"]  # distilabel's OpenAILLM needs openai; it imports requests unasked
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DISTILABEL_LOG_LEVEL": "ERROR",
    "TOKENIZERS_PARALLELISM": "false",
}


def distilabel_python(args) -> tuple[str | None, dict]:
    """The interpreter of the distilabel venv, creating the venv if allowed; (None, reason) if unusable."""
    python = Path(args.python or os.environ.get("DISTILABEL_PYTHON") or DEFAULT_VENV / "bin" / "python")
    info: dict = {"python": str(python)}
    if not python.exists():
        if args.no_install or args.python or os.environ.get("DISTILABEL_PYTHON"):
            return None, {
                **info,
                "reason": f"{python} does not exist (install: python3 -m venv {DEFAULT_VENV} && "
                f"{DEFAULT_VENV}/bin/pip install {' '.join(PACKAGES)})",
            }
        venv = python.parents[1]
        print(f"creating {venv} and installing {' '.join(PACKAGES)} (never into .venv)", flush=True)
        steps = [[sys.executable, "-m", "venv", str(venv)], [str(python), "-m", "pip", "install", "-q", *PACKAGES]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                lines = [
                    line
                    for line in (done.stderr or done.stdout).splitlines()
                    if not line.startswith("WARNING: Location")
                ]
                return None, {
                    **info,
                    "reason": f"`{' '.join(step[:4])} ...` failed (exit {done.returncode}): " + " | ".join(lines[-5:]),
                }
        info["installed_here"] = True
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import json, importlib.metadata as m, distilabel, openai, requests; "
            "from distilabel.models import OpenAILLM; from distilabel.steps.tasks import TextGeneration; "
            "print(json.dumps({d: m.version(d) for d in ('distilabel', 'openai', 'datasets')}))",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **OFFLINE_ENV},
    )
    if probe.returncode != 0:
        return None, {
            **info,
            "reason": "distilabel does not import: " + probe.stderr.strip().splitlines()[-1]
            if probe.stderr.strip()
            else f"import check exited {probe.returncode}",
        }
    info["versions"] = json.loads(probe.stdout.strip().splitlines()[-1])
    return str(python), info


def flat_requests(count: int) -> list[dict]:
    return [
        {
            "messages": [{"role": "user", "content": f"Write one exam question about topic {k}."}],
            "temperature": 0.0,
            "top_p": 1.0,
            "max_tokens": 32,
        }
        for k in range(count)
    ]


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON line in: {text[-500:]}")


def one(
    side: str, python: str, file: Path, base_url: str, model: str, concurrency: int, count: int, work: Path
) -> dict:
    if side == "plain":
        command = [sys.executable, str(ROOT / "bench" / "plain_loop.py"), str(file)]
    else:
        command = [
            python,
            str(ROOT / "bench" / "distilabel_pipeline.py"),
            str(file),
            "--cache-dir",
            str(work / "distilabel-cache"),
        ]
    command += ["--base-url", base_url, "--model", model, "--concurrency", str(concurrency)]
    done = run_measured(command, timeout=3600, env={**os.environ, **OFFLINE_ENV}, cwd=str(work))
    if done.returncode != 0:
        raise RuntimeError(f"{side} exited with {done.returncode}:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
    out = last_json(done.stdout)
    rows = out.get("rows", count)
    return {
        "wall_s": round(done.wall_s, 3),
        "rows": rows,
        "rows_per_s": rows / done.wall_s,
        "output_tokens": out.get("output_tokens"),
        "peak_rss_mib": done.peak_rss_mib,
        "peak_processes": done.peak_processes,
        "cpu_s": done.cpu_s,
        "load_avg_at_end": load_avg(),
    }


def bench(
    server: str, base_url: str, model: str, python: str, count: int, concurrency: int, repeats: int, work: Path
) -> dict:
    file = work / f"{server}-requests.json"
    file.write_text(json.dumps(flat_requests(count)), encoding="utf-8")
    warm_up(base_url, model)
    runs: dict[str, list[dict]] = {"plain": [], "distilabel": []}
    for round_index in range(repeats):
        for side in runs:
            runs[side].append(one(side, python, file, base_url, model, concurrency, count, work))
        print(
            f"[{server}] round {round_index + 1}/{repeats}: plain {runs['plain'][-1]['wall_s']:.1f}s, "
            f"distilabel {runs['distilabel'][-1]['wall_s']:.1f}s ({runs['distilabel'][-1]['rows']} rows), "
            f"load {load_avg()}",
            flush=True,
        )
    keys = ("wall_s", "rows_per_s", "peak_rss_mib", "cpu_s")
    mid = {side: {k: statistics.median(r[k] for r in side_runs) for k in keys} for side, side_runs in runs.items()}
    return {
        "settings": {
            "rows": count,
            "concurrency": concurrency,
            "repeats": repeats,
            "model": model,
            "prompt": "Write one exam question about topic k.",
            "temperature": 0.0,
            "max_tokens": 32,
        },
        "runs": runs,
        "medians": mid,
        "ratio_rows_per_s": mid["distilabel"]["rows_per_s"] / mid["plain"]["rows_per_s"],
        "load_avg_at_end": load_avg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("instant", "llama", "both"), default="both")
    parser.add_argument("--instant-rows", type=int, default=3000)
    parser.add_argument("--instant-concurrency", type=int, default=16)
    parser.add_argument("--llama-rows", type=int, default=48)
    parser.add_argument("--llama-concurrency", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--python", help=f"the distilabel venv's python (default $DISTILABEL_PYTHON or {DEFAULT_VENV}/bin/python)"
    )
    parser.add_argument("--no-install", action="store_true", help="do not create the distilabel venv if missing")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "distilabel.json")
    args = parser.parse_args()
    report: dict = {
        "benchmark": "distilabel TextGeneration vs a plain openai loop, same flat prompts and servers",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine("openai", "llama_cpp_python"),
    }
    python, info = distilabel_python(args)
    report["distilabel"] = info
    if python is None:
        report["status"] = "unavailable"
        print(f"distilabel unavailable: {info['reason']}", flush=True)
    else:
        report["status"] = "measured"
        servers = ("instant", "llama") if args.server == "both" else (args.server,)
        with tempfile.TemporaryDirectory(prefix="bench-distilabel-") as tmp:
            work = Path(tmp)
            for server in servers:
                if server == "instant":
                    with instant_server() as running:
                        report["instant"] = bench(
                            "instant",
                            running.base_url,
                            INSTANT_MODEL,
                            python,
                            args.instant_rows,
                            args.instant_concurrency,
                            args.repeats,
                            work,
                        )
                else:
                    with llama_server(work / "server.log") as base_url:
                        report["llama"] = bench(
                            "llama",
                            base_url,
                            LLAMA_MODEL,
                            python,
                            args.llama_rows,
                            args.llama_concurrency,
                            args.repeats,
                            work,
                        )
                result = report[server]
                print(
                    f"{server}: distilabel/plain rows/s = {result['ratio_rows_per_s']:.3f} "
                    f"(plain {result['medians']['plain']['rows_per_s']:.2f}, "
                    f"distilabel {result['medians']['distilabel']['rows_per_s']:.2f} rows/s; peak RSS "
                    f"{result['medians']['plain']['peak_rss_mib']:.0f} vs "
                    f"{result['medians']['distilabel']['peak_rss_mib']:.0f} MiB)",
                    flush=True,
                )
    report["machine"]["load_avg_at_end"] = load_avg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
