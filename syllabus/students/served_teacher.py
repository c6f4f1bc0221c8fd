"""A served teacher's top-k at every token of a row, for sparse logit distillation.

An OpenAI-compatible server (vLLM, llama.cpp) has no logits to hand over, but /v1/completions
with `echo: true, logprobs: k` returns, for every token of the prompt, the text of the token and
the top-k log-probabilities of the distribution there, keyed by token *text*. Each training row
(prompt + completion, rendered with the student's chat template) is sent once as such a prompt;
the answer goes into the request cache (OUT/teacher-cache.sqlite), so a rerun, or a resume,
sends nothing. The texts are mapped back to ids with the student's tokenizer, which the served
model must share.

What servers do, found by trying llama-cpp-python 0.3 (`--logits_all True`, without which it
refuses logprobs) on SmolLM2: it drops a leading BOS token from the echo and skips every other
BOS id inside the prompt (for SmolLM2 the BOS is <|im_start|>); special tokens are echoed as "";
bytes of an unfinished UTF-8 character are dropped from a token's text; the first entry carries
no log-probabilities; each top-k map also holds the echoed token itself (up to k + 1 entries).
With the leading BOS dropped, entry j is the distribution that predicts echoed token j (OpenAI's
convention, vLLM's too); when the prompt does not start with BOS, llama-cpp-python pairs token j
with the distribution after it, one position late. `align_row` therefore matches the echoed
texts to the student's ids, skipping ids the server left out, and tells the two alignments apart
by which gives the row's own tokens the higher log-probability.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import Completion, RequestFailed
from ..errors import UserError

TOPK_VERSION = "echo-topk-1"  # part of every cache key: bump when the request changes
STAGE = "teacher-topk"  # the cache's stage name for these answers


class TokenTexts:
    """The shared tokenizer's ids by the texts a server shows for them.

    An id's texts: its decoded text; the same without U+FFFD (a server that drops the bytes of an
    unfinished character, as llama.cpp does); for a special token, also "" (llama.cpp echoes them
    so). A text that several ids share (a lone space and a space plus an unfinished character; ""
    for every special token) is ambiguous: it names the id the tokenizer itself makes of that text
    when that is one of them, else no id, and its probability stays in the tail bucket. The echoed
    token's own text always names the row's id (the server keyed that entry by it)."""

    def __init__(self, tokenizer):
        size = len(tokenizer)
        decoded = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False)
        special = set(tokenizer.all_special_ids)
        self.special = special
        self.texts: list[set[str]] = []
        by_text: dict[str, list[int]] = {}
        for i, text in enumerate(decoded):
            texts = {text, text.replace("\ufffd", "")} | ({""} if i in special else set())
            self.texts.append(texts)
            for t in texts:
                by_text.setdefault(t, []).append(i)
        self.ids: dict[str, int] = {}
        for text, ids in by_text.items():
            if len(ids) == 1:
                self.ids[text] = ids[0]
            elif text:
                own = tokenizer(text, add_special_tokens=False)["input_ids"]
                if len(own) == 1 and own[0] in ids:
                    self.ids[text] = own[0]

    def matches(self, token_id: int, text: str) -> bool:
        return 0 <= token_id < len(self.texts) and text in self.texts[token_id]


@dataclass
class RowTopK:
    """A row's teacher, position by position: `ids[p]`/`logprobs[p]` list the distribution that
    predicts token p; `known[p]` is false where the server gave none (the first token, skipped ids)."""

    ids: list[list[int]]
    logprobs: list[list[float]]
    known: list[bool]
    shifted: bool = False  # the server paired each token with the distribution after it

    def tensors(self, width: int):
        """(ids, logprobs, known) as tensors (positions x width), id -1 in unused slots."""
        import torch

        n = len(self.ids)
        ids = torch.full((n, width), -1, dtype=torch.long)
        logprobs = torch.zeros((n, width), dtype=torch.float32)
        for p, (row_ids, row_lps) in enumerate(zip(self.ids, self.logprobs)):
            ids[p, : len(row_ids)] = torch.tensor(row_ids[:width], dtype=torch.long)
            logprobs[p, : len(row_lps)] = torch.tensor(row_lps[:width], dtype=torch.float32)
        return ids, logprobs, torch.tensor(self.known, dtype=torch.bool)


class EchoMismatch(ValueError):
    """The server's tokens are not the student's tokenisation of the row."""


def align_row(ids: list[int], tokens: list[str], tops: list[dict[str, float] | None], texts: TokenTexts) -> RowTopK:
    """The server's echo of a row (`tokens`, `tops`) matched to the student's `ids`; EchoMismatch
    when the server split the row into other tokens."""
    pairs: list[tuple[int, int]] = []  # (position in ids, entry in the echo)
    j = 0
    for i, token_id in enumerate(ids):
        if j < len(tokens) and texts.matches(token_id, tokens[j]):
            pairs.append((i, j))
            j += 1
        elif token_id in texts.special:
            continue  # a special token the server left out of its echo (llama.cpp: every BOS)
        else:
            shown = tokens[j] if j < len(tokens) else "(nothing)"
            raise EchoMismatch(
                f"at token {i}, the student has {sorted(texts.texts[token_id])[-1]!r}, the server {shown!r}"
            )
    if len(tokens) - j > 1:  # one extra entry may be the token the server generated
        raise EchoMismatch(f"the server echoed {len(tokens) - j} tokens more than the student's {len(ids)}")

    def logprob(top: dict[str, float], token_id: int) -> float:
        found = [v for key, v in top.items() if texts.matches(token_id, key)]
        return max(found) if found else min(top.values(), default=0.0)

    scored = [(i, j) for i, j in pairs if tops[j]]
    aligned = sum(logprob(tops[j] or {}, ids[i]) for i, j in scored)
    later = sum(logprob(tops[j] or {}, ids[i + 1]) for i, j in scored if i + 1 < len(ids))
    shifted = later > aligned
    row = RowTopK([[] for _ in ids], [[] for _ in ids], [False] * len(ids), shifted)
    for i, j in scored:
        position = i + 1 if shifted else i
        if position >= len(ids):
            continue
        seen: set[int] = set()
        for key, value in sorted((tops[j] or {}).items(), key=lambda kv: -kv[1]):
            listed = ids[i] if key == tokens[j] else texts.ids.get(key)  # the echoed token keys itself
            if listed is None or listed in seen:
                continue  # ambiguous text: its probability stays in the tail
            seen.add(listed)
            row.ids[position].append(listed)
            row.logprobs[position].append(value)
        row.known[position] = True
    return row


@dataclass
class FetchCounts:
    """Where each row's top-k came from (OUT/metrics.json's `teacher_requests`): a rerun's shows 0 answered."""

    rows: int = 0
    from_cache: int = 0
    answered: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "from_cache": self.from_cache, "answered": self.answered, "failed": self.failed}


def topk_key(backend: Any, prompt: str, k: int) -> str:
    """The cache key of one row's echo: the model, the prompt text and k (not the URL, as for chat)."""
    from ..generators.cache import KEY_VERSION, payload_key

    return payload_key(
        {
            "v": KEY_VERSION,
            "backend": backend.kind,
            "model": getattr(backend, "cache_identity", None) or backend.model,
            "echo_topk": {"prompt": prompt, "k": k},
            "template": TOPK_VERSION,
        }
    )


async def fetch_rows(backend: Any, cache: Any, prompts: list[str], k: int, counts: FetchCounts) -> list[Any]:
    """Each prompt's (tokens, tops) from the cache or, once, from the server (then cached); a
    RequestFailed in place of a row the server failed for good (recorded in the cache's failures)."""

    async def one(prompt: str) -> Any:
        key = topk_key(backend, prompt, k)
        cached = cache.get(key)
        if cached is not None:
            counts.from_cache += 1
            saved = json.loads(cached.text)
            return saved["tokens"], saved["top_logprobs"]
        try:
            tokens, tops = await backend.echo_topk(prompt, k)
        except RequestFailed as exc:
            cache.record_failure(key, STAGE, exc.reason, exc.detail)
            counts.failed[exc.reason] = counts.failed.get(exc.reason, 0) + 1
            return exc
        text = json.dumps({"tokens": tokens, "top_logprobs": tops}, ensure_ascii=True)
        cache.put(key, STAGE, Completion(text, "echo", prompt_tokens=len(tokens)))
        counts.answered += 1
        return tokens, tops

    counts.rows += len(prompts)
    return list(await asyncio.gather(*(one(p) for p in prompts)))


LOGPROBS_HINT = (
    "the server must return prompt log-probabilities from /v1/completions with echo and logprobs: "
    "vLLM does, llama.cpp's server when started with --logits_all True"
)


def served_topk(backend: Any, rows: list[list[int]], tokenizer, k: int, cache_file: Path, where: str) -> dict:
    """The teacher's top-k for every row (student token ids), keyed by the row's ids, fetched once per
    row through the request cache; with the fetch counts. UserError naming the row for a server that
    tokenises a row otherwise, or fails it."""
    from ..generators.cache import RequestCache
    from ..generators.session import opened

    prompts = [tokenizer.decode(ids, skip_special_tokens=False) for ids in rows]
    counts = FetchCounts()

    async def fetch(cache: Any) -> list[Any]:
        if all(cache.get(topk_key(backend, prompt, k)) is not None for prompt in prompts):
            try:  # every row answered before: not even the preflight goes out
                return await fetch_rows(backend, cache, prompts, k, counts)
            finally:
                await backend.aclose()
        async with opened(backend):
            return await fetch_rows(backend, cache, prompts, k, counts)

    cache = RequestCache(cache_file)
    try:
        answers = asyncio.run(fetch(cache))
    finally:
        cache.close()
    texts = TokenTexts(tokenizer)
    table: dict = {}
    for number, (ids, answer) in enumerate(zip(rows, answers)):
        if isinstance(answer, RequestFailed):
            raise UserError(
                f"the teacher's server failed row {number} ({answer}); the rows it answered are cached, "
                "so a rerun asks only for the rest",
                where=where,
                hint=LOGPROBS_HINT,
            )
        tokens, tops = answer
        if not any(tops):
            raise UserError(
                f"the teacher's server returned no log-probabilities for row {number}", where=where, hint=LOGPROBS_HINT
            )
        try:
            table[tuple(ids)] = align_row(ids, tokens, tops, texts)
        except EchoMismatch as exc:
            raise UserError(
                f"row {number}: the served teacher does not tokenise the row as the student does ({exc})",
                where=where,
                hint="serve a model with the student's tokenizer (sizes of one family), or use a local teacher",
            ) from None
    return {"rows": table, "counts": counts.as_dict()}
