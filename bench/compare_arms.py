"""One arm of bench_loop.py's results against another, item by item over the seeds both ran.

Why: an ablation is judged against the arm that differs from it in that one setting.
bench_loop.py compares every arm with `loop`, the example's defaults as its workdir has them;
in a workdir made before a default changed, `loop` holds the old default, so the arm to
compare with is another one (`previous` after `restart: previous` became the default). Its
runs may also be in several JSON files (one bench_loop.py invocation a seed).

Reported, on the test items and over the shared seeds only: each arm against the untrained
student, and the arm against the reference (`versus`): each item's difference averaged over the shared seeds, ± SE over items,
for the weak nodes, the strong ones and all.

Run: .venv/bin/python bench/compare_arms.py --reference previous bench/results/loop.json
         --arm no-rehearsal-previous bench/results/loop-rehearsal-*.json
         [--out bench/results/loop-rehearsal.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_loop import aggregate, versus_loop  # noqa: E402


def runs_of(arm: str, files: list[Path]) -> dict[int, dict]:
    """The arm's runs by seed, from every file that has them (a later file's seed wins)."""
    runs: dict[int, dict] = {}
    for file in files:
        data = json.loads(file.read_text(encoding="utf-8"))
        for seed, run in data.get("runs", {}).get(arm, {}).items():
            runs[int(seed)] = run
    if not runs:
        raise SystemExit(f"no runs of arm {arm!r} in {', '.join(map(str, files))}")
    return runs


def compare(reference: str, reference_runs: dict[int, dict], arm: str, arm_runs: dict[int, dict]) -> dict:
    seeds = sorted(set(reference_runs) & set(arm_runs))
    if not seeds:
        raise SystemExit(f"{arm} and {reference} share no seed")
    reference_runs = {s: reference_runs[s] for s in seeds}
    arm_runs = {s: arm_runs[s] for s in seeds}
    agg = aggregate({reference: reference_runs, arm: arm_runs})
    agg[arm].pop("versus_loop", None)  # made by aggregate when the reference is `loop`: `versus` is it
    versus = versus_loop([reference_runs[s]["best"] for s in seeds], [arm_runs[s]["best"] for s in seeds], seeds)
    return {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference": reference,
        "arm": arm,
        "seeds": seeds,
        "runs": {
            reference: {str(s): run for s, run in reference_runs.items()},
            arm: {str(s): run for s, run in arm_runs.items()},
        },
        "aggregate": agg,
        "versus": versus,
    }


def table(result: dict) -> str:
    reference, arm, agg = result["reference"], result["arm"], result["aggregate"]

    def cell(block: dict | None) -> str:
        return f"{block['difference']:+.2f} ± {block['se']:.2f}" if block else "-"

    lines = [
        f"| test items | {reference} vs untrained | {arm} vs untrained | {arm} vs {reference} |",
        "|---|---|---|---|",
    ]
    for group in ("weak", "strong", "all"):
        lines.append(
            f"| {group} | {cell(agg[reference][group])} | {cell(agg[arm][group])} | {cell(result['versus'][group])} |"
        )
    rows = {name: [r["rows_trained"][-1] for r in result["runs"][name].values()] for name in (reference, arm)}
    lines.append(f"| rows trained (last round, per seed) | {rows[reference]} | {rows[arm]} | - |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", nargs="+", required=True, metavar=("ARM", "FILE"))
    parser.add_argument("--arm", nargs="+", required=True, metavar=("ARM", "FILE"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if len(args.reference) < 2 or len(args.arm) < 2:
        parser.error("--reference and --arm each take an arm's name and at least one JSON file")
    reference, arm = args.reference[0], args.arm[0]
    result = compare(
        reference,
        runs_of(reference, list(map(Path, args.reference[1:]))),
        arm,
        runs_of(arm, list(map(Path, args.arm[1:]))),
    )
    result["table"] = table(result)
    print(result["table"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
