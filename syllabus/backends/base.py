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


class Backend(Protocol):
    kind: str  # "openai" or "local": part of every cache key
    model: str  # the model's name as the backend knows it

    async def preflight(self) -> dict[str, Any]:
        """Check the model can be reached before any work starts; raise UserError if not."""

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one request, or raise RequestFailed."""

    async def aclose(self) -> None:
        """Release connections, threads and memory."""
