"""Which written answers may become training rows, and which one of several.

"Reaches the reference" lets false rows through: "Antimony is not the chemical symbol Sb.",
"30 millimeters is ... 3000 centimeters, which is the same as 3 centimeters." both contain
the reference. A row is kept only when it is *sound*: it reaches the reference, names no
competing answer (a number that is neither the question's nor the reference's, another
day or month, a negation), restates the question (full sentences teach without wrecking
recall; bare answers did), and was not cut off (a draft cut at max_tokens keeps its whole
sentences, if those are sound). Among sound drafts, the one the
student itself finds most likely given the plain question is kept (SDFT: targets in the
model's own words forget less), or the shortest, for comparison.

A DPO pair whose rejected answer nearly copies the chosen one ("...is Lima." / "...is
Cusco...") is dropped with its reason: such pairs are the ones that displace the chosen
answer's likelihood (Razin et al. 2024).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

from ..students.examine import _closed_class, _tokens, grade

# Words a question is built of that say nothing of its content: a restatement need not repeat them.
_FUNCTION_WORDS = frozenset(
    [
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "many",
        "much",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "do",
        "does",
        "did",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "if",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "they",
        "you",
        "your",
        "i",
        "me",
        "my",
        "we",
        "our",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "please",
        "tell",
        "give",
        "name",
        "find",
        "write",
        "say",
        "answer",
    ]
)
_NEGATION = re.compile(r"\b(?:not|no|never|none|neither|nor|cannot)\b|n't\b", re.IGNORECASE)
RESTATE_SHARE = 0.5  # of the question's content words a sound answer repeats


def content_words(text: str) -> set[str]:
    return {t.key for t in _tokens(text) if t.value is None and t.key not in _FUNCTION_WORDS}


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def whole_sentences(draft: str, finish_reason: str = "stop") -> str:
    """A draft cut at max_tokens, up to its last whole sentence ("" when it has none); others as they are.
    A 135M student is wordy: most of its right answers run past 40 tokens after the sentence that answers."""
    if finish_reason != "length":
        return draft
    ends = [m.end() for m in _SENTENCE_END.finditer(draft)]
    return draft[: ends[-1]].strip() if ends else ""


def unsound(question: str, reference: str, draft: str, finish_reason: str = "stop") -> str | None:
    """Why `draft` must not become a training row for this item, or None when it may. A draft cut at
    max_tokens is unsound: pass it through `whole_sentences` first to keep what it finished."""
    if finish_reason == "length":
        return "cut at max_tokens"
    if not draft.strip():
        return "empty"
    kind, correct = grade(reference, draft, question)
    if kind != "long" and not correct:
        return "does not reach the reference"
    if _NEGATION.search(draft) and not _NEGATION.search(reference):
        return "negates"
    asked = {t.key for t in _tokens(question)}
    said = _tokens(draft)
    ref = _tokens(reference)
    ref_keys = {t.key for t in ref}
    if kind == "numeric":
        other = [t.raw for t in said if t.value is not None and t.key not in asked and t.key not in ref_keys]
        if other:
            return f"names another number ({other[0]})"
    closed = _closed_class(ref[0].key) if len(ref) == 1 else None
    if closed is not None:
        other = [t.raw for t in said if t.key in closed and t.key not in asked and t.key not in ref_keys]
        if other:
            return f"names another {'day' if 'monday' in closed else 'month'} ({other[0]})"
    wanted = content_words(question)
    if wanted and len(wanted & content_words(draft)) < RESTATE_SHARE * len(wanted):
        return "does not restate the question"
    return None


KEEP_SHARE = 0.75  # of the question's content words a restatement keeps, besides every number


def keeps_the_question(question: str, restatement: str) -> bool:
    """Whether a restatement still asks the same question: every number of it and most of its
    content words. A small model restating "Which element has the chemical symbol Sb?" may write
    "The chemical symbol of silver is ___." (another question; filled, a false row)."""
    numbers = {t.key for t in _tokens(question) if t.value is not None}
    if not numbers <= {t.key for t in _tokens(restatement)}:
        return False
    wanted = content_words(question)
    return not wanted or len(wanted & content_words(restatement)) >= KEEP_SHARE * len(wanted)


def choose(drafts: Sequence[str], likelihoods: Sequence[float] | None, how: str) -> int:
    """The index of the draft kept: the student's most likely (mean log-probability per token),
    or the shortest; ties go to the earlier draft."""
    if not drafts:
        raise ValueError("choose() needs at least one draft")
    if len(drafts) == 1:
        return 0
    if how == "likelihood":
        if likelihoods is None or len(likelihoods) != len(drafts):
            raise ValueError("the likelihood choice needs one score per draft")
        return max(range(len(drafts)), key=lambda i: (likelihoods[i], -i))
    if how == "shortest":
        return min(range(len(drafts)), key=lambda i: (len(drafts[i]), i))
    raise ValueError(f"unknown choice {how!r}: likelihood or shortest")


def near_copy(chosen: str, rejected: str) -> float:
    """How much of the two answers is shared, word by word (0 to 1)."""
    a, b = [t.key for t in _tokens(chosen)], [t.key for t in _tokens(rejected)]
    return SequenceMatcher(None, a, b, autojunk=False).ratio() if a and b else 0.0
