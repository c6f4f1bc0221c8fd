"""OpenAI-compatible API calls over wire.py: auth, JSON bodies as plain dicts, retries.

The openai SDK builds a pydantic model per request and per reply; our bodies are plain
dicts of strings and numbers and the backend checks by hand the few fields it reads, so
this module sends `json.dumps(body)` and hands back `json.loads(reply)`. What the SDK gave
is kept as the SDK does it (openai 3.x `_base_client`): the bearer key (or the Basic
credentials of user info in a base URL, as httpx sends them), retries of timeouts,
connection errors, 408, 409, 429 and 5xx (or as `x-should-retry` says), waits of
Retry-After / Retry-After-Ms up to two minutes (a longer one is not retried), else
exponential backoff from 0.5 s to 8 s with 25 % jitter, and the same error message for a
status ("Error code: N - message from the body").
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import json
import math
import os
import random
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from .wire import BadEncoding, ConnectFailed, HTTPClient, HTTPError, ReplyTooLarge, Timeout

MAX_RETRY_AFTER = 120.0  # the SDK's MAX_RETRY_AFTER_DELAY: a longer wait is not retried
INITIAL_RETRY_DELAY, MAX_RETRY_DELAY = 0.5, 8.0

__all__ = [
    "APIClient",
    "BadEncoding",
    "ConnectFailed",
    "HTTPError",
    "Malformed",
    "ReplyTooLarge",
    "StatusError",
    "Timeout",
]


class StatusError(Exception):
    """The server answered 4xx/5xx (after the retries it earned)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Malformed(Exception):
    """A 2xx body that is not JSON."""


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds the server asked us to wait (Retry-After-Ms, Retry-After as seconds or a date)."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if delay == math.inf and value.strip().lower() not in ("inf", "+inf", "infinity", "+infinity"):
            return MAX_RETRY_AFTER + 1
        return delay / divisor
    value = headers.get("retry-after")
    try:
        parsed = email.utils.parsedate_tz(value) if value else None
        return None if parsed is None else float(email.utils.mktime_tz(parsed) - time.time())
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def should_retry(status: int, headers: dict[str, str]) -> bool:
    wait = retry_after(headers)
    if wait is not None and math.isfinite(wait) and wait > MAX_RETRY_AFTER:
        return False
    told = headers.get("x-should-retry")
    if told in ("true", "false"):
        return told == "true"
    return status in (408, 409, 429) or status >= 500


def backoff(retries_taken: int, headers: dict[str, str] | None) -> float:
    wait = retry_after(headers) if headers else None
    if wait is not None and math.isfinite(wait) and 0 < wait <= MAX_RETRY_AFTER:
        return wait
    return min(INITIAL_RETRY_DELAY * 2.0 ** min(retries_taken, 1000), MAX_RETRY_DELAY) * (1 - 0.25 * random.random())


def status_message(status: int, body: bytes) -> str:
    """What the SDK's APIStatusError says: the code, and the body's error message if it has one."""
    message = f"Error code: {status}"
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return message
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    return f"{message} - {text}" if isinstance(text, str) and text else message


class _Base:
    """One base URL: the prefix paths are appended to (as the SDK joins them) and its auth header."""

    def __init__(self, url: str, api_key: str):
        self.prefix = url.rstrip("/")
        parts = urlsplit(url)
        try:
            user, password = parts.username, parts.password
        except ValueError:
            user = password = None
        if user is not None or password is not None:  # httpx sends URL user info as Basic auth
            token = base64.b64encode(f"{unquote(user or '')}:{unquote(password or '')}".encode()).decode()
            auth = f"Basic {token}"
        else:
            auth = f"Bearer {api_key}"
        self.headers = [(b"authorization", auth.encode("latin-1", "replace")), (b"content-type", b"application/json")]
        # As the SDK does: an organization or project named in the environment is sent with every request.
        for variable, header in (("OPENAI_ORG_ID", b"openai-organization"), ("OPENAI_PROJECT_ID", b"openai-project")):
            value = os.environ.get(variable)
            if value:
                self.headers.append((header, value.encode("latin-1", "replace")))


class APIClient:
    """Requests to one or more base URLs (round robin), each with its retries."""

    def __init__(
        self, base_urls: list[str], api_key: str, *, timeout: float, max_retries: int, max_bytes: int, pool_size: int
    ):
        self.timeout = timeout
        self.max_retries = max_retries
        self.http = HTTPClient(max_bytes=max_bytes, pool_size=pool_size)
        self.bases = [_Base(url, api_key) for url in base_urls]
        self._next = itertools.cycle(self.bases)

    async def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        base: int | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The JSON a request returned; HTTPError, StatusError or Malformed when it failed for good.
        `payload` is encoded as JSON, or sent as it is when it is bytes (a body already encoded)."""
        target = self.bases[base] if base is not None else next(self._next)
        retries = self.max_retries if max_retries is None else max_retries
        url = target.prefix + path
        data = payload if payload is None or isinstance(payload, bytes) else json.dumps(payload).encode()
        wait = timeout or self.timeout
        for attempt in range(retries + 1):
            try:
                reply = await self.http.request(method, url, body=data, headers=target.headers, timeout=wait)
            except (Timeout, ConnectFailed):
                if attempt < retries:
                    await asyncio.sleep(backoff(attempt, None))
                    continue
                raise
            if reply.status >= 400:
                if attempt < retries and should_retry(reply.status, reply.headers):
                    await asyncio.sleep(backoff(attempt, reply.headers))
                    continue
                raise StatusError(reply.status, status_message(reply.status, reply.body))
            break
        try:
            return json.loads(reply.body)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise Malformed(f"the body is not JSON: {type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        await self.http.aclose()
