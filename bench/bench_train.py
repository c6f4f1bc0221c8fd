"""Training throughput and memory of the student: SFT full fine-tune against LoRA.

Why: a round of the loop trains the student; on a CPU that is the slowest step, and
LoRA trades speed for memory. This measures both on the embedded SmolLM2-135M
student with TRL's defaults as `syllabus train sft` sets them (bf16 where the CPU
has it), each variant in its own process so peak RSS is its own.

How: a synthetic prompt-completion dataset of fixed-length rows (no model hub, no
generation needed), `--steps` steps at `--batch-size` and `--max-length`, alternating
variants for `--repeats` rounds; tokens/s = trained tokens / train runtime (model load
excluded, reported apart). Writes bench/results/train.json.

Run: .venv/bin/python bench/bench_train.py [--steps 6] [--batch-size 4] [--max-length 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time
from pathlib import Path
from syllabus.students.train import TrainOptions, train

args = json.loads(sys.argv[1])
start = time.perf_counter()
result = train(TrainOptions(method="sft", dataset=Path(args["dataset"]), out_dir=Path(args["out"]),
                            max_steps=args["steps"], batch_size=args["batch_size"], max_length=args["max_length"],
                            lora=args["lora"], save_steps=10_000))
wall = time.perf_counter() - start
metrics = json.loads((Path(args["out"]) / "metrics.json").read_text())
final = [h for h in metrics["log_history"] if "train_runtime" in h][-1]
tokens = max(h.get("num_tokens", 0) for h in metrics["log_history"])
print(json.dumps({"wall_s": wall, "train_runtime_s": float(final["train_runtime"]), "tokens": float(tokens)}))
"""


def make_dataset(path: Path, rows: int, words: int) -> None:
    line = " ".join(f"word{i % 97}" for i in range(words))
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            handle.write(
                json.dumps(
                    {
                        "prompt": [{"role": "user", "content": f"Question {i}: explain {line[:200]}"}],
                        "completion": [{"role": "assistant", "content": f"Answer {i}: {line}"}],
                    }
                )
                + "\n"
            )


def run_variant(work: Path, dataset: Path, lora: bool, args) -> dict:
    out = work / f"{'lora' if lora else 'full'}-{time.monotonic_ns()}"
    spec = {
        "dataset": str(dataset),
        "out": str(out),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "lora": lora,
    }
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    numbers = json.loads(done.stdout.strip().splitlines()[-1])
    numbers["tokens_per_s"] = numbers["tokens"] / numbers["train_runtime_s"]
    numbers["s_per_step"] = numbers["train_runtime_s"] / args.steps
    # ru_maxrss of children is the largest child so far: meaningful when it grew with this child.
    numbers["peak_rss_mb"] = round(peak_kb / 1024, 1) if peak_kb > before else None
    return numbers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "train.json")
    args = parser.parse_args()
    from syllabus.backends.device import cpu_has_bf16
    from syllabus.backends.embedded import embedded_model_dir

    embedded_model_dir()  # convert once, outside the timings
    runs: dict[str, list[dict]] = {"lora": [], "full": []}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        dataset = work / "data.jsonl"
        make_dataset(dataset, rows=args.steps * args.batch_size, words=args.max_length)
        # LoRA first: ru_maxrss only grows, so the smaller variant must be measured first.
        for _ in range(args.repeats):
            for variant in ("lora", "full"):
                runs[variant].append(run_variant(work, dataset, variant == "lora", args))
                print(
                    variant,
                    {k: round(v, 2) if isinstance(v, float) else v for k, v in runs[variant][-1].items()},
                    flush=True,
                )
    medians = {
        v: {
            k: statistics.median(r[k] for r in rs if r[k] is not None) if any(r[k] is not None for r in rs) else None
            for k in ("tokens_per_s", "s_per_step", "peak_rss_mb", "wall_s")
        }
        for v, rs in runs.items()
    }
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "bf16": cpu_has_bf16(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "settings": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "repeats": args.repeats,
            "student": "SmolLM2-135M-Instruct (embedded)",
        },
        "runs": runs,
        "medians": medians,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for variant, mid in medians.items():
        print(
            f"{variant:<5} {mid['tokens_per_s']:.0f} tokens/s, {mid['s_per_step']:.1f} s/step, "
            f"peak RSS {mid['peak_rss_mb']} MB"
        )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
