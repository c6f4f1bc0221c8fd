"""Run every bench/bench_*.py in turn (`make bench`); exit 1 if any of them failed.

Each benchmark writes its own JSON under bench/results/. Run:
    .venv/bin/python bench/run_all.py                 # every benchmark
    .venv/bin/python bench/run_all.py memory train    # only bench_memory.py and bench_train.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(BENCH.glob("bench_*.py"))
    unknown = [n for n in names if not (BENCH / f"bench_{n}.py").is_file()]
    if unknown:
        known = ", ".join(s.stem.removeprefix("bench_") for s in scripts)
        print(f"unknown benchmark(s): {', '.join(unknown)} (known: {known})", file=sys.stderr)
        return 2
    if names:
        scripts = [BENCH / f"bench_{n}.py" for n in names]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, str(script)], cwd=BENCH.parent).returncode
        print(
            f"== {script.name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {time.perf_counter() - start:.0f}s",
            flush=True,
        )
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
