"""The one interface every model backend offers: chat requests in, completions out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatRequest:
    """A chat completion request; `sample_index` tells apart repeated samples of one prompt."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs: hashable and JSON-friendly
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    sample_index: int = 0

    @classmethod
    def from_messages(cls, messages: list[dict[str, str]], **sampling: Any) -> "ChatRequest":
        return cls(messages=tuple((m["role"], m["content"]) for m in messages), **sampling)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def sampling(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}


@dataclass
class Completion:
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class RequestFailed(Exception):
    """A request that failed for good (after the backend's retries); `reason` groups failures."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


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
