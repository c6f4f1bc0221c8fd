"""Where a run stands, in `state.json`: the steps done, and what made the run.

The kernel under `distill` and `align`: both are a table of steps, each writing its
output whole, and both run a step through `RunState.step`, which skips it once done.

Every step writes its outputs whole (atomic files, a trained model renamed into place)
before it is marked done here, and each step is safe to redo (the request cache answers
what was asked; training resumes from its checkpoints; the rest is computed from files).
So a kill at any point loses at most the step in flight, and the same command again
continues there. The fingerprint is what the data depends on (the project, the items,
the loop, student and teacher settings as changed from their defaults, so a setting added
by a later version leaves a folder resumable; the seed, baseline or not); a run folder whose
fingerprint differs belongs to another loop, and is refused rather than mixed. The
number of rounds is not in it: asking for more rounds continues a finished loop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .fsutil import atomic_write_text

VERSION = 1


def fingerprint(**parts: Any) -> dict[str, str]:
    """Each part as a short hash, so a mismatch can name the part that changed."""
    return {
        name: hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
        for name, value in sorted(parts.items())
    }


@dataclass
class RunState:
    path: Path
    fingerprint: dict[str, str]
    done: list[str] = field(default_factory=list)  # "ROUND:STEP", in the order done
    current: str | None = None  # the step in flight, for whoever watches the file
    stopped: str | None = None  # why the loop stopped before its last round, once it has

    @classmethod
    def open(cls, path: Path, expected: dict[str, str], what: str = "loop") -> RunState:
        """The state at `path`, or a fresh one; a UserError when it belongs to another `what`."""
        if not path.is_file():
            state = cls(path, expected)
            state.save()
            return state
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            found = data["fingerprint"]
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"state.json is not a {what}'s state",
                where=path,
                hint="give --run a new folder; this one holds something else",
            ) from None
        changed = [k for k in sorted(set(found) | set(expected)) if found.get(k) != expected.get(k)]
        if changed:
            raise UserError(
                f"this folder was made by another {what} configuration (its {', '.join(changed)} "
                "differ from this command's)",
                where=path.parent,
                hint="rerun with the settings it was made with, or give --run a new folder",
            )
        return cls(path, found, list(data.get("done", [])), data.get("current"), data.get("stopped"))

    def is_done(self, round_index: int, step: str) -> bool:
        return f"{round_index}:{step}" in self.done

    def step(
        self, round_index: int, name: str, work: Callable[[], None], on_begin: Callable[[], None] | None = None
    ) -> bool:
        """Run `work` unless `name` is done in this round; it is marked done only once it returned,
        so a kill inside it leaves it to be done again. True when it ran now."""
        if self.is_done(round_index, name):
            return False
        self.begin(round_index, name)
        if on_begin is not None:
            on_begin()
        work()
        self.finish(round_index, name)
        return True

    def begin(self, round_index: int, step: str) -> None:
        self.current = f"{round_index}:{step}"
        self.save()

    def finish(self, round_index: int, step: str) -> None:
        key = f"{round_index}:{step}"
        if key not in self.done:
            self.done.append(key)
        self.current = None
        self.save()

    def save(self) -> None:
        atomic_write_text(
            self.path,
            json.dumps(
                {
                    "version": VERSION,
                    "fingerprint": self.fingerprint,
                    "done": self.done,
                    "current": self.current,
                    "stopped": self.stopped,
                },
                indent=2,
            )
            + "\n",
        )
