"""Bounds on an HTTP exchange through httpx: a size cap and a deadline per try.

The backend's own client (wire.py) sends every request itself, except to a URL that the
environment routes through a proxy: those go through httpx, which knows proxies, and this
module gives them the same bounds and the same errors (wire.ReplyTooLarge, wire.Timeout).

The teacher's server is untrusted. Left to itself the HTTP client reads whatever body it
is sent into memory (a 200 MB body, or 300 KB of gzip that inflates to 300 MB, took GBs:
the bytes, then the JSON parse of them), and its timeout is per read, so a server that
trickles one byte a second, or sends an endless chunked body, holds a request for ever.

`BoundedTransport` wraps the client's transports, the one place every request passes
(chat, model listing, feature probes, error bodies, proxies). It reads the
whole body itself, counting the bytes on the wire and the bytes after Content-Encoding
is undone, and stops at `max_bytes` of either; and it runs the exchange (connect, send,
headers, body) under one deadline, the request's timeout. The response it hands up is
already read and decoded, so nothing above it buffers more.

An oversized body raises `wire.ReplyTooLarge`, which httpx passes up as it is. A missed
deadline raises the HTTP library's `ReadTimeout`, which the caller reports as a timeout.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import anyio

from .wire import ReplyTooLarge

# The HTTP library installed with the openai SDK (httpx2 from openai 3, httpx before).
try:
    httpx: Any = importlib.import_module("httpx2")
except ImportError:  # pragma: no cover - an older SDK
    httpx = importlib.import_module("httpx")

# Headers that describe the body as sent; the body handed up is decoded and whole.
_BODY_HEADERS = {"content-encoding", "content-length", "transfer-encoding"}


def deadline_of(request) -> float | None:
    """The request's timeout as one deadline for the whole try: the largest of its parts."""
    parts = (request.extensions.get("timeout") or {}).values()
    values = [v for v in parts if isinstance(v, (int, float)) and math.isfinite(v) and v > 0]
    return max(values) if values else None


class BoundedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner, max_bytes: int):
        self.inner = inner
        self.max_bytes = max_bytes

    async def handle_async_request(self, request):
        deadline = deadline_of(request)
        try:
            with anyio.fail_after(deadline):
                response = await self.inner.handle_async_request(request)
                try:
                    body = await self._read(response, request)
                finally:
                    with anyio.CancelScope(shield=True):  # release the connection even past the deadline
                        await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(f"no complete reply within {deadline:g} s", request=request) from None
        headers = [(name, value) for name, value in response.headers.multi_items() if name.lower() not in _BODY_HEADERS]
        extensions = {k: v for k, v in response.extensions.items() if k in ("http_version", "reason_phrase")}
        return httpx.Response(
            response.status_code, headers=headers, content=body, request=request, extensions=extensions
        )

    async def _read(self, response, request) -> bytes:
        limit = self.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ReplyTooLarge(f"the server announced {int(declared)} bytes, more than {limit}")
        chunks: list[bytes] = []
        size = 0
        # aiter_bytes undoes Content-Encoding in bounded pieces; num_bytes_downloaded counts the wire.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise ReplyTooLarge(f"more than {limit} bytes once decoded")
            if response.num_bytes_downloaded > limit:
                raise ReplyTooLarge(f"more than {limit} bytes received")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        await self.inner.aclose()


def bounded_client(*, timeout: float, max_bytes: int):
    """An httpx client (environment proxies), with every transport it would use wrapped in
    `BoundedTransport`.

    The client picks a transport per URL (a proxy from the environment, or the default
    pool); passing `transport=` would drop the environment proxies, so the ones it built
    are wrapped in place."""
    client = httpx.AsyncClient(timeout=timeout)
    client._transport = BoundedTransport(client._transport, max_bytes)
    client._mounts = {
        pattern: None if transport is None else BoundedTransport(transport, max_bytes)
        for pattern, transport in client._mounts.items()
    }
    return client
