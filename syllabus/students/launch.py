"""Training on several processes: `student.processes: N` runs one training under torchrun.

Data parallel (DDP: gloo on CPU, nccl on GPU), as `accelerate launch` or `torchrun` would
run it by hand: each process trains on its share of every batch, and only the main process
writes final/, the metrics and the loss curve (both writing final/ at once was the crash
of a hand-run `torchrun -m syllabus train sft`). A caller in one process (the CLI, the
loop's train step) asks for N processes through the setting; train.py writes the run's
options to OUT/launch.json and `run_processes` starts torchrun on `-m
syllabus.students.worker OUT/launch.json`, whose processes train exactly as one would, from
the same checkpoints, so a killed run resumes with the same command. torchrun and its
workers die with the command (Linux: PR_SET_PDEATHSIG), so a kill leaves no worker
training on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AGENT = "--agent"


def die_with_parent() -> None:
    """Linux: this process is killed when its parent dies. torchrun starts each worker in a session
    of its own, so a kill of the command (even of its whole process group) would leave the workers
    training on, and a rerun would race them for the same checkpoints. Elsewhere: nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def under_launcher() -> bool:
    """Whether this process is one of several started by torchrun or accelerate launch."""
    return "LOCAL_RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def run_processes(processes: int, worker: str, spec: Path) -> int:
    """`python -m WORKER SPEC` in `processes` processes under torchrun (which dies with this one);
    its exit status. Each process gets its share of the cores for its threads."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    command = [
        sys.executable,
        "-m",
        "syllabus.students.launch",
        AGENT,  # torchrun, made to die with this process first
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        worker,
        str(spec),
    ]
    return subprocess.run(command, env=env).returncode


def main(argv: list[str]) -> None:
    """`--agent ARGS`: torchrun with ARGS, dying with its parent (the command that launched it)."""
    die_with_parent()
    if argv[:1] != [AGENT]:
        raise SystemExit("usage: python -m syllabus.students.launch --agent TORCHRUN-ARGS")
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
