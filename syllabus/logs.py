"""The library's log: one `syllabus` logger, and a file per run in the run folder.

The terminal shows progress bars and a closing table; the log file is what a person reads
after the fact (which settings, which teacher, what failed and why). A log is an output
like any other, so every record passes through the same redaction as the messages: the
configured keys, and anything shaped like a key or a credential in a URL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger("syllabus")
logger.addHandler(logging.NullHandler())  # a library logs nothing anywhere unless asked

_KEY_SHAPED = re.compile(r"\b(sk|key|api)[-_][A-Za-z0-9_\-*]{6,}")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+(:[^/@\s]*)?@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:api[-_]?key|key|token|access_token|auth)=)[^&\s]+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each of `secrets`, credentials in URLs and key-shaped words masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL_CREDENTIALS.sub("***@", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    return _KEY_SHAPED.sub(r"\1-***", text)


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


@contextmanager
def run_log(path: Path, secrets: Iterable[str] = (), level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Append the library's records to `path` while the block runs (one file per run folder;
    a resumed run appends, so the file tells the whole history)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_Redacting(secrets))
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
