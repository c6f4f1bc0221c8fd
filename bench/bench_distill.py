"""Logit distillation into a shrunk student: TAID against plain KL and against SFT, at equal steps and data.

Why: text-level distillation (SFT on the teacher's answers) keeps only the sampled tokens;
when teacher and student share a tokenizer the student can learn the whole next-token
distribution. TAID claims to handle the capacity gap better than KL. Here the gap is real:
the embedded SmolLM2-135M (30 layers) teaches a copy of itself cut to `--layers` layers.

How: the rows are the example project's exam questions answered by the teacher itself
(greedy, its own words: what text-level distillation would train on). Each method trains
the same shrunk student for `--steps` steps on the same rows and seed. Measured on held-out
rows (the dev questions answered by the teacher): the mean KL(teacher || student) over the
answer tokens; on the example's test items: the mean reference log-probability and the
accuracy. Also: seconds per step, and peak memory (ru_maxrss of a child process) with the
loss computed in chunks of 256 positions and in one piece. JSON: bench/results/distill.json.

Methods: taid, kl, jsd (generalized JSD at distillation.jsd_beta, TRL's loss) and sft. Each
finished run is kept in the workdir (its timing in OUT/bench-run.json) and the JSON is written
after every run, so the same command resumes where it stopped.

Run: .venv/bin/python bench/bench_distill.py [--layers 12] [--steps 40] [--seeds 0 1 2]
     [--methods taid kl jsd sft] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
PYTHON = sys.executable


def teacher_rows(items: list[dict], out: Path) -> Path:
    """The teacher's own greedy answers to `items` as prompt-completion rows (cached in `out`)."""
    if out.is_file():
        return out
    import asyncio

    from syllabus.backends.base import ChatRequest
    from syllabus.backends.embedded import embedded_model_dir
    from syllabus.backends.local import LocalBackend

    backend = LocalBackend(embedded_model_dir(), batch_size=8)

    async def main():
        try:
            requests = [
                ChatRequest.from_messages([{"role": "user", "content": i["question"]}], temperature=0.0, max_tokens=64)
                for i in items
            ]
            return await asyncio.gather(*(backend.complete(r) for r in requests))
        finally:
            await backend.aclose()

    answers = asyncio.run(main())
    rows = [
        {
            "prompt": [{"role": "user", "content": i["question"]}],
            "completion": [{"role": "assistant", "content": a.text}],
        }
        for i, a in zip(items, answers)
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def held_out_kl(student: Path, rows: Path) -> float:
    import torch

    from syllabus.backends.embedded import embedded_model_dir
    from syllabus.backends.local import load_causal_lm
    from syllabus.students.taid import kl_to_teacher

    s_model, tokenizer = load_causal_lm(student, dtype="float32")
    t_model, _ = load_causal_lm(embedded_model_dir(), dtype="float32")
    values = []
    for line in rows.read_text().splitlines():
        row = json.loads(line)
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(prompt + row["completion"][0]["content"], return_tensors="pt").input_ids
        start = len(tokenizer(prompt).input_ids)
        mask = torch.zeros(1, ids.shape[1] - 1, dtype=torch.bool)
        mask[0, start - 1 :] = True
        with torch.no_grad():
            values.append(kl_to_teacher(s_model(ids).logits[:, :-1], t_model(ids).logits[:, :-1], mask))
    return statistics.fmean(values)


def test_scores(student: Path, items: list[dict]) -> dict:
    import asyncio

    from syllabus.backends.local import LocalBackend
    from syllabus.students.examine import examine
    from syllabus.students.probes import Probe

    probes = [Probe(i["question"], i["answer"], i["node"]) for i in items]
    backend = LocalBackend(student, batch_size=8)

    async def main():
        try:
            return await examine(backend, probes, max_tokens=40)
        finally:
            await backend.aclose()

    results = asyncio.run(main())
    graded = [r for r in results if r.correct is not None]
    return {
        "accuracy": sum(r.correct for r in graded) / len(graded),
        "mean_reference_logprob": statistics.fmean(r.reference_logprob for r in results),
    }


def train(method: str, student: Path, rows: Path, out: Path, steps: int, seed: int, chunk: int = 256) -> dict:
    """One training run in a child process (its peak memory is its own): seconds and peak RSS. The seed and
    the loss's chunk come from a project folder of their own (`student.seed`, `distillation.chunk`).
    A run finished before (OUT/final and its timing) is not trained again."""
    timing = out / "bench-run.json"
    if timing.is_file() and (out / "final").is_dir():
        return json.loads(timing.read_text())
    settings = out.parent / f"settings-{seed}-{chunk}"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "syllabus.yaml").write_text(
        f"schema_version: 1\nstudent:\n  seed: {seed}\n  batch_size: 4\n  max_length: 192\n"
        f"distillation:\n  chunk: {chunk}\n"
    )
    if method == "sft":
        args = ["train", "sft", str(rows), "--student", str(student), "--lr", "1e-4"]
    else:
        args = ["train", "distill", str(rows), "--teacher", "embedded", "--student", str(student), "--method", method]
    args += ["--out", str(out), "--max-steps", str(steps), "--save-steps", str(steps), "--project", str(settings)]
    code = (
        "import resource, sys\nfrom syllabus.cli import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)"
    )
    started = time.perf_counter()
    done = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, text=True, cwd=out.parent)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    peak = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("PEAK_KB"))
    run = {"seconds": round(seconds, 1), "seconds_per_step": round(seconds / steps, 2), "peak_mb": peak // 1024}
    timing.write_text(json.dumps(run) + "\n")
    return run


METHODS = ("taid", "kl", "jsd", "sft")
MEASURES = ("kl", "accuracy", "mean_reference_logprob")


def summarise(results: dict) -> dict:
    """Per method: the mean over seeds of each measure, and the standard deviation over seeds."""
    out = {}
    for method, runs in results.items():
        if method == "shrunk" or not runs:
            continue
        block: dict = {"seeds": len(runs)}
        for k in MEASURES:
            values = [r[k] for r in runs]
            block[k] = statistics.fmean(values)
            block[f"{k}_sd"] = statistics.stdev(values) if len(values) > 1 else None
        out[method] = block
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--workdir", type=Path, default=ROOT / "bench" / "work-distill")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "distill.json")
    args = parser.parse_args()

    from syllabus.project import init_project
    from syllabus.students.shrink import shrink

    work = args.workdir
    project = work / "project"
    if not (project / "syllabus.yaml").is_file():
        init_project(project, example="distill")
    items = [json.loads(line) for line in (project / "items.jsonl").read_text().splitlines()]
    split = {s: [i for i in items if i["split"] == s] for s in ("exam", "dev", "test")}
    rows = teacher_rows(split["exam"], work / "train.jsonl")
    held = teacher_rows(split["dev"][::3], work / "held-out.jsonl")
    student = work / f"shrunk-{args.layers}"
    if not (student / "config.json").is_file():
        shrink("embedded", student, args.layers)
    results: dict = {"shrunk": {"kl": held_out_kl(student, held), **test_scores(student, split["test"])}}

    def report(memory: dict | None = None) -> dict:
        summary = summarise(results)
        done = {m: summary[m]["kl"] for m in ("taid", "kl", "sft") if m in summary}
        goal = {}
        if {"taid", "kl"} <= set(done):
            goal["taid_at_or_below_kl_heldout_kl"] = done["taid"] <= done["kl"]
        if len(done) == 3:
            goal["both_ahead_of_sft_on_kl"] = max(done["taid"], done["kl"]) < done["sft"]
        result = {
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "settings": {
                "layers": args.layers,
                "steps": args.steps,
                "seeds": args.seeds,
                "methods": args.methods,
                "rows": "exam items, teacher's answers",
            },
            "results": results,
            "memory": memory,
            "summary": summary,
            "goal": goal,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        return result

    for method in args.methods:
        for seed in args.seeds:
            out = work / f"{method}-{seed}"
            run = train(method, student, rows, out, args.steps, seed)
            final = out / "final"
            results.setdefault(method, []).append(
                {"seed": seed, **run, "kl": held_out_kl(final, held), **test_scores(final, split["test"])}
            )
            print(method, seed, results[method][-1], file=sys.stderr, flush=True)
            report()
    memory = {
        f"chunk_{chunk}": train("taid", student, rows, work / f"memory-{chunk}", 4, 0, chunk)
        for chunk in (256, 1_000_000)
    }
    print(json.dumps(report(memory)["summary"], indent=2))


if __name__ == "__main__":
    main()
