"""Shared by the benchmarks: run a command as a subprocess and measure it; describe the machine.

`run_measured` times a command from start to exit and polls the resident memory (RSS)
of its whole process tree (the process and every descendant, summed) with psutil,
every `interval` seconds; the peak of that sum is the figure reported. It also returns
`ru_maxrss` of the largest single child from `resource.getrusage(RUSAGE_CHILDREN)`
as a cross-check (that one cannot be reset, so it is only meaningful as an upper bound
over everything this process waited for so far).
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata

import psutil


@dataclass
class Measured:
    returncode: int
    wall_s: float
    peak_rss_mib: float  # peak of the summed RSS of the process tree, polled
    peak_processes: int  # processes in the tree when the peak was seen
    stdout: str
    stderr: str
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, tree RSS MiB)
    cpu_s: float = 0.0  # user + system CPU of the tree (children waited for)


def tree_rss(process: psutil.Process) -> tuple[float, int]:
    total, count = 0, 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0
    for member in members:
        try:
            total += member.memory_info().rss
            count += 1
        except psutil.Error:
            pass
    return total / 2**20, count


def run_measured(
    command: list[str],
    *,
    timeout: float = 3600,
    interval: float = 0.1,
    env: dict | None = None,
    cwd: str | None = None,
    sample_every: float = 1.0,
    on_start=None,
) -> Measured:
    """Run `command`, poll its tree's RSS, return timings, memory and output (text)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        popen = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        if on_start is not None:
            on_start(popen)
        process = psutil.Process(popen.pid)
        peak, peak_count, samples, next_sample = 0.0, 0, [], 0.0
        stop = threading.Event()

        def poll() -> None:
            nonlocal peak, peak_count, next_sample
            while not stop.is_set():
                rss, count = tree_rss(process)
                now = time.perf_counter() - start
                if rss > peak:
                    peak, peak_count = rss, count
                if now >= next_sample and rss:
                    samples.append((round(now, 2), round(rss, 1)))
                    next_sample = now + sample_every
                stop.wait(interval)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            code = popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            code = popen.wait()
        wall = time.perf_counter() - start
        stop.set()
        poller.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.seek(0)
        err.seek(0)
        return Measured(
            code,
            wall,
            round(peak, 1),
            peak_count,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            samples,
            round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
        )


def children_max_rss_mib() -> float:
    """ru_maxrss of the largest child waited for so far (KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine(*dists: str) -> dict:
    """The machine and versions; load averages (1, 5, 15 min) now: other work skews every figure."""

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_at_start": load_avg(),
        "versions": {dist: version(dist) for dist in dists},
    }
