"""The library's log: one `syllabus` logger, and a file per run in the run folder.

The terminal shows progress bars and a closing table; the log file is what a person reads
after the fact (which settings, which teacher, what failed and why). A log is an output
like any other, so every record passes through the same redaction as the messages: the
configured keys, credentials inside URLs, and anything shaped like a key
(`backends/redact.py`, the one redaction of the project).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .backends.redact import Redactor

logger = logging.getLogger("syllabus")
logger.addHandler(logging.NullHandler())  # a library logs nothing anywhere unless asked


class _Redacting(logging.Formatter):
    def __init__(self, redactor: Redactor):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


@contextmanager
def run_log(path: Path, redactor: Redactor | None = None, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Append the library's records to `path` while the block runs (one file per run folder;
    a resumed run appends, so the file tells the whole history)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_Redacting(redactor or Redactor()))
    handler.setLevel(level)
    previous = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()
