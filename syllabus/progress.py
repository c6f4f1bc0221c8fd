"""What long work tells whoever watches it: one protocol for generate, align and the loop.

A command shows these events as rich bars on a terminal or as plain lines in a log
(cli/common.py, cli/distill.py); the library only ever calls the four methods below, so
it never knows which. `NoProgress` is the silent watcher and the base of every other one,
so a watcher implements only the events it shows.
"""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    def step(self, name: str, round_index: int | None = None) -> None:
        """A step begins (of the loop's round `round_index`, or of a one-off command such as align)."""

    def add_total(self, stage: str, count: int) -> None:
        """`count` more units of work in `stage` (requests, items, training runs)."""

    def advance(self, stage: str, count: int = 1) -> None:
        """`count` units of `stage` done."""

    def round_done(self, record: dict[str, Any]) -> None:
        """A loop round finished; `record` is its round.json."""


class NoProgress:
    """Shows nothing; subclass it and override what a view shows."""

    def step(self, name: str, round_index: int | None = None) -> None:
        pass

    def add_total(self, stage: str, count: int) -> None:
        pass

    def advance(self, stage: str, count: int = 1) -> None:
        pass

    def round_done(self, record: dict[str, Any]) -> None:
        pass


class StagesOnly(NoProgress):
    """A watcher's stage bars without its steps: for work run as one step of something larger
    (align inside a loop round, whose steps would otherwise replace the round's)."""

    def __init__(self, inner: Progress):
        self.inner = inner

    def add_total(self, stage: str, count: int) -> None:
        self.inner.add_total(stage, count)

    def advance(self, stage: str, count: int = 1) -> None:
        self.inner.advance(stage, count)
