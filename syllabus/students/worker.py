"""One process of a training run launched on several (`python -m syllabus.students.worker OUT/launch.json`).

torchrun starts N of these (launch.py); each reads the run's options as train.py wrote
them and trains its share, dying with torchrun if it is killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .launch import die_with_parent


def main(argv: list[str]) -> None:
    die_with_parent()
    from .train import options_from_spec, train

    train(options_from_spec(Path(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
