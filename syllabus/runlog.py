"""A log file per run: what a generation did, still there after the terminal is gone.

The library logs through module loggers under `syllabus` (`logging.getLogger(__name__)`)
and configures nothing at import: where logs go is the application's choice, so the
package adds a NullHandler only (`syllabus/__init__.py`). A run is the one place that
keeps its own record: `run_log(folder, redact)` attaches, for the block alone, a
FileHandler appending to `folder/syllabus.log` at INFO, so every run (and every round)
of a run folder adds its lines after the last one's.

Every line is redacted as formatted, message, arguments, exception text and stack alike,
so a secret passed as an argument or inside an exception cannot reach the file whatever
the call site did. The handler sits on the `syllabus` logger only: the HTTP client's
loggers (httpx, openai) carry URLs and request options and are not written here.

For the block the `syllabus` logger is at INFO at least (a record under the logger's level
is never made), so an application whose root handler has no level of its own sees those
lines too. Runs in parallel threads of one process would each write the other's lines;
runs are one per process today (the loop runs its rounds one after another).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .backends.redact import Redactor

LOG_FILE = "syllabus.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _RedactingFormatter(logging.Formatter):
    """The standard line, then the redaction over all of it (traceback included)."""

    def __init__(self, redact: Callable[[str], str]):
        super().__init__(FORMAT)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


@contextmanager
def run_log(folder: Path, redact: Callable[[str], str] | None = None) -> Iterator[Path]:
    """`folder/syllabus.log` receives the `syllabus` loggers' INFO records until the block ends.

    `redact`: the teacher backend's redaction (it knows the API key and the base URLs'
    credentials); default, a Redactor that masks URL credentials and key-shaped words."""
    path = Path(folder) / LOG_FILE
    handler = logging.FileHandler(path, mode="a", encoding="utf-8", errors="backslashreplace")
    handler.setLevel(logging.INFO)
    handler.setFormatter(_RedactingFormatter(redact or Redactor()))
    logger = logging.getLogger("syllabus")
    level = logger.level
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
