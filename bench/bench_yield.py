"""How many of the rows asked for does the embedded default teacher keep, with redraws and the quota off and on?

Why (issue 25): a newcomer's first run, and every loop on a machine without a served model,
is on the embedded SmolLM2-135M teacher. A row that fails a cheap check (a reply that does
not parse, an answer that is empty, restates the question or is cut at `max_tokens`) is drawn
again up to `redraws` times, and a question whose row is still refused is replaced by a new
question of its discipline while `generation.replacements` x its questions last (the quota);
this measures what each buys and what it costs.

How: a fresh `syllabus init` project (the shipped syllabus.yaml and example taxonomy) per
seed; each discipline of the example taxonomy is asked for `--questions` rows (a budget of
6 per discipline by default), and `make demo`'s run (12 questions over the disciplines by
weight, the shipped seed) is measured beside them. Arms, in this order, each its own run
folder:
  off      every stage's `redraws: 0`, no frequency penalty, `replacements: 0`
  redraws  redraws as shipped (2 for subjects, syllabus, question and answer), no penalty, no quota
  penalty  as `redraws`, with the answer stage's `frequency_penalty` at `--penalty`
  on       the shipped settings: redraws, the penalty, and the quota (`replacements: 0.5`)
  long     as `on`, with the answer stage's `max_tokens` raised to `--long-tokens`
The later arms start from a copy of the first arm's request cache, so the stages they share
(the same seed asks the same subjects, syllabi, questions and first answers) are not asked
twice: an arm's time and requests are what it adds beyond that (`answered` counts the
requests sent to the model). Kept / asked per discipline and arm, means over seeds, and every
run's per-stage counts go to bench/results/yield.json.

Run (needs `make install`; about half an hour on 2 cores):
    .venv/bin/python bench/bench_yield.py [--seeds 0 1 2] [--questions 6] [--arms off redraws penalty on]
        [--penalty 0.5] [--long-tokens 512]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from measure import machine  # noqa: E402

ARMS = ("off", "redraws", "penalty", "on", "long")
REDRAWN_STAGES = ("subjects", "syllabus", "question", "answer")
GOAL = 0.9


def project_for(arm: str, folder: Path, long_tokens: int, penalty: float):
    """A fresh project as `syllabus init` writes it, with the arm's stage settings."""
    from syllabus.project import CONFIG_FILE, Project, init_project
    from syllabus.yamlio import dump, load

    init_project(folder)
    config_file = folder / CONFIG_FILE
    config = load(config_file)
    stages = config["generation"].setdefault("stages", {})
    answer = stages.setdefault("answer", {})
    if arm == "off":
        for stage in REDRAWN_STAGES:
            stages.setdefault(stage, {})["redraws"] = 0
    if arm in ("off", "redraws"):
        answer["frequency_penalty"] = 0.0
    if arm == "penalty":
        answer["frequency_penalty"] = penalty
    if arm in ("off", "redraws", "penalty"):
        config["generation"]["replacements"] = 0
    if arm == "long":
        answer["max_tokens"] = long_tokens
    dump(config, config_file)
    return Project.load(folder)


def run_case(project, run_dir: Path, seed: int | None, budget: dict[str, int] | None, questions: int | None) -> dict:
    from syllabus.generators.run import GenerateOptions, generate

    started = time.perf_counter()
    outcome = generate(project, GenerateOptions(run_dir=run_dir, seed=seed, budget=budget, questions=questions))
    seconds = time.perf_counter() - started
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    return {
        "seconds": round(seconds, 1),
        "asked": sum(node["requested"] for node in summary["nodes"]),
        "kept": outcome.kept,
        "per_node": {
            node["path"]: {"asked": node["requested"], "replaced": node["replaced"], "kept": node["kept"]}
            for node in summary["nodes"]
        },
        "answered": sum(stage["answered"] for stage in summary["stages"].values()),
        "stages": {
            name: {key: stage[key] for key in ("requested", "answered", "parsed", "kept", "unparsed", "redrawn")}
            for name, stage in summary["stages"].items()
        },
        "dropped": summary["filters"]["counts"],
    }


def measure(
    arms: list[str], seeds: list[int], questions: int, long_tokens: int, penalty: float, work: Path
) -> list[dict]:
    from syllabus.project import Project, init_project

    probe = work / "probe"
    init_project(probe)
    disciplines = [n.path for n in Project.load(probe).load_taxonomy().select(None)]
    cases: list[tuple[str, int | None, dict[str, int] | None, int | None]] = [
        ("demo", None, None, 12),
        *((f"seed {seed}", seed, {path: questions for path in disciplines}, None) for seed in seeds),
    ]
    runs = []
    for case, seed, budget, total in cases:
        first_cache: Path | None = None
        for arm in arms:
            folder = work / f"{case.replace(' ', '-')}-{arm}"
            project = project_for(arm, folder, long_tokens, penalty)
            run_dir = folder / "runs" / arm
            run_dir.mkdir(parents=True)
            if first_cache is not None:
                shutil.copy(first_cache, run_dir / "cache.sqlite")
            result = run_case(project, run_dir, seed, budget, total)
            first_cache = first_cache or run_dir / "cache.sqlite"
            runs.append({"case": case, "arm": arm, **result})
            print(
                f"{case:8} {arm:8} kept {result['kept']:3}/{result['asked']:3}  "
                f"answered {result['answered']:4}  {result['seconds']:7.1f} s",
                flush=True,
            )
    return runs


def summarise(runs: list[dict], arms: list[str]) -> dict:
    out: dict = {}
    for arm in arms:
        seeded = [r for r in runs if r["arm"] == arm and r["case"] != "demo"]
        demo = [r for r in runs if r["arm"] == arm and r["case"] == "demo"]
        per_node: dict[str, list[float]] = {}
        for r in seeded:
            for path, counts in r["per_node"].items():
                per_node.setdefault(path, []).append(counts["kept"] / counts["asked"] if counts["asked"] else 0.0)
        shares = {path: round(statistics.mean(values), 3) for path, values in per_node.items()}
        out[arm] = {
            "demo_kept_of_asked": [demo[0]["kept"], demo[0]["asked"]] if demo else None,
            "kept_share_per_discipline": shares,
            "kept_share_all": round(sum(r["kept"] for r in seeded) / max(1, sum(r["asked"] for r in seeded)), 3),
            "disciplines_at_goal": sum(share >= GOAL for share in shares.values()),
            "disciplines": len(shares),
            "seconds_per_seed": round(statistics.mean(r["seconds"] for r in seeded), 1) if seeded else None,
            "answered_per_seed": round(statistics.mean(r["answered"] for r in seeded), 1) if seeded else None,
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--questions", type=int, default=6, help="rows asked for per discipline")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=["off", "redraws", "penalty", "on"])
    parser.add_argument("--penalty", type=float, default=0.5, help="the answer stage's frequency_penalty in `penalty`")
    parser.add_argument("--long-tokens", type=int, default=512, help="the answer stage's max_tokens in arm `long`")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/yield.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-yield-") as tmp:
        runs = measure(args.arms, args.seeds, args.questions, args.long_tokens, args.penalty, Path(tmp))
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine("torch", "transformers"),
        "settings": {
            "arms": args.arms,
            "seeds": args.seeds,
            "questions": args.questions,
            "long_tokens": args.long_tokens,
            "penalty": args.penalty,
        },
        "goal": f"at least {GOAL:.0%} of the rows asked for kept, in each discipline",
        "summary": summarise(runs, args.arms),
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
