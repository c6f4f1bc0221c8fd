"""When two texts are the same: the one normalisation and the keys built on it.

Dedup (`filters/exact.py`), decontamination (`filters/decontaminate.py`, as words) and the
probe-leak check (`students/probes.py`) all compare questions through `normalise`, so a
question that differs from another only in case, Unicode form, punctuation or spacing is
the same question to every one of them: a probe cannot slip past one and not the other.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACE = re.compile(r"\s+")


@functools.lru_cache(maxsize=2 * 1024)
def normalise(text: str) -> str:
    """NFKC, case folded, punctuation and underscores as spaces, runs of space as one."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def words(text: str) -> list[str]:
    return normalise(text).split()


def text_key(*parts: str) -> bytes:
    """sha256 of the normalised parts (NUL-separated): one short digest per row in memory."""
    return hashlib.sha256("\x00".join(normalise(p) for p in parts).encode("utf-8")).digest()


def question_key(question: str) -> bytes:
    """The key of a question: equal for questions that are the same after `normalise`."""
    return text_key(question)


def content_hash(question: str, answer: str) -> str:
    """The `content_hash` of a generated row: its exact question and answer (not normalised),
    so `mix` recognises the same row pooled from two runs. Its value is part of every dataset
    written so far; it must not change."""
    return hashlib.sha256(f"{question}\n\x00\n{answer}".encode()).hexdigest()[:16]
