"""The one interface every model backend offers: chat requests in, completions out."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

# Lone UTF-16 surrogates: JSON can carry them ("\ud800"), UTF-8 cannot, so the first write
# of such a string (the cache, the dataset, a file name) raises UnicodeEncodeError.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Token counts past this are not counts (a server sent 2**64 - 1): SQLite stores at most
# 2**63 - 1, and sums over a run must stay far below that.
MAX_TOKEN_COUNT = 2**31 - 1


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it can be encoded anywhere."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def token_count(value: Any) -> int:
    """A usage count as reported by a server, or 0 (unknown) when it is not a plausible one."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value if 0 <= value <= MAX_TOKEN_COUNT else 0


@dataclass(frozen=True)
class ChatRequest:
    """A chat completion request; `sample_index` tells apart repeated samples of one prompt."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs: hashable and JSON-friendly
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    sample_index: int = 0
    frequency_penalty: float = 0.0  # 0: off, and left out of sampling() so older cache keys hold

    @classmethod
    def from_messages(cls, messages: list[dict[str, str]], **sampling: Any) -> ChatRequest:
        return cls(messages=tuple((m["role"], m["content"]) for m in messages), **sampling)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    @functools.cached_property
    def messages_json(self) -> str:
        """`message_dicts()` as compact JSON, text as is (not escaped to ASCII). Why: the HTTP body
        and the cache's record of what was asked both carry the messages; against a fast server,
        encoding JSON is a tenth of the client's time."""
        return json.dumps(self.message_dicts(), ensure_ascii=False, separators=(",", ":"))

    def json_with(self, fields: dict[str, Any]) -> str:
        """A JSON object of `"messages"` (as `messages_json`) and then `fields`, encoded as
        json.dumps would (text as is)."""
        rest = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        return '{"messages":' + self.messages_json + ("," + rest[1:] if fields else "}")

    def sampling(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}
        if self.frequency_penalty:
            settings["frequency_penalty"] = self.frequency_penalty
        return settings


@dataclass
class Completion:
    """One reply. It is made valid here, whatever built it: text that UTF-8 can encode, a
    short finish reason, token counts that fit the cache; so no backend can hand the cache,
    the dataset or a file name something that fails to be written."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.text = clean_text(self.text)
        reason = self.finish_reason
        self.finish_reason = clean_text(reason)[:64] if isinstance(reason, str) and reason else "stop"
        self.prompt_tokens = token_count(self.prompt_tokens)
        self.completion_tokens = token_count(self.completion_tokens)


class RequestFailed(Exception):
    """A request that failed for good (after the backend's retries); `reason` groups failures."""

    def __init__(self, reason: str, detail: str = ""):
        # Both are recorded in the cache and shown: often quoted from the server's body.
        self.reason = clean_text(reason)
        self.detail = clean_text(detail)
        super().__init__(f"{self.reason}: {self.detail}" if self.detail else self.reason)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, asked once, so callers decide instead of guessing with hasattr.

    `notes` says why a capability is missing (and how to get it) where the backend knows;
    `context_tokens` is the model's context window where it is known.
    """

    chat: bool = True
    logprobs: bool = False  # per-token log-probabilities of generated text
    prompt_scoring: bool = False  # `score()`: teacher-forced log-probabilities of given continuations
    json_mode: bool = False
    n_gt_1: bool = False  # several choices in one request
    trainable: bool = False  # weights on this machine that `syllabus train` can fine-tune
    context_tokens: int | None = None
    notes: dict[str, str] = field(default_factory=dict, compare=False)

    FLAGS = ("chat", "logprobs", "prompt_scoring", "json_mode", "n_gt_1", "trainable")

    def flags(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in self.FLAGS}


@dataclass(frozen=True)
class Score:
    """Teacher-forced log-probabilities (natural log) of one continuation's tokens given a prompt.

    `truncated` is true when the prompt (or the continuation) was cut to fit the model's context.
    """

    logprobs: tuple[float, ...]
    truncated: bool = False

    @property
    def total(self) -> float:
        return float(sum(self.logprobs))

    @property
    def mean(self) -> float:
        return self.total / len(self.logprobs) if self.logprobs else float("nan")


class ScoringUnsupported(RequestFailed):
    """The backend cannot score prompts at all (not a passing failure: retrying will not help)."""

    def __init__(self, detail: str):
        super().__init__("prompt scoring unsupported", detail)


class Backend(Protocol):
    kind: str  # "openai" or "local": part of every cache key
    model: str  # the model's name as the backend knows it

    async def preflight(self) -> dict[str, Any]:
        """Check the model can be reached before any work starts; raise UserError if not."""

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one request, or raise RequestFailed."""

    async def aclose(self) -> None:
        """Release connections, threads and memory."""

    async def capabilities(self) -> Capabilities:
        """What this backend offers (may send a few small requests, once); callers decide by it."""

    async def score(self, prompt: list[dict[str, str]], continuations: list[str]) -> list[Score]:
        """Teacher-forced log-probabilities of each continuation as the assistant's reply to the chat
        `prompt`; ScoringUnsupported where the backend cannot, RequestFailed for a failed request."""
