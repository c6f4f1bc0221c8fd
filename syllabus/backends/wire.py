"""HTTP/1.1 to a teacher server: pooled keep-alive connections, one deadline and a size cap per try.

Why not the openai SDK or httpx: against a server that answers at once, the client's own
cost per request is the ceiling of a run. Measured on these cores (docs/benchmarks.md):
the SDK spends about 1.4 ms of CPU a request, httpx alone 0.6 ms, httpcore 0.4 ms; h11
(the HTTP/1.1 parser under httpcore) on asyncio streams 0.1 ms. So the protocol itself
(framing, chunked bodies, keep-alive rules, malformed messages) is h11's, and this module
adds only what a teacher client needs:

- a pool of idle connections per origin (scheme, host, port), reused while h11 says the
  connection can carry another exchange; a reused connection the server had closed is
  retried once on a fresh one (that is no failure of the request);
- one deadline for the whole try (connect, send, headers, body): a server that trickles a
  byte a second or sends an endless chunked body is cut at the deadline;
- a cap on the body, on the wire and once Content-Encoding (gzip, deflate) is undone, so a
  runaway body or a gzip bomb costs at most `max_bytes` of memory;
- redirects followed as httpx does (303, and 301/302 of a POST, become GET; the
  Authorization header is dropped for another origin).

A URL for which the environment names a proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY)
goes through httpx instead (http_limits.py), with the same limits and the same errors.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import h11

log = logging.getLogger("syllabus.http")  # its records carry URLs: redact.Redactor filters it
_READ = 65536
_MAX_REDIRECTS = 5
_SAFE_TARGET = "/?&=%:@!$'()*+,;~-._#[]"
_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+; wait_for before


class HTTPError(Exception):
    """Any try that brought no whole reply; `reason` is what RequestFailed records."""

    reason = "connection error"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class ConnectFailed(HTTPError):
    """No connection, or it broke before the reply was whole (retried by the caller)."""


class Timeout(HTTPError):
    """No whole reply within the try's deadline (retried by the caller)."""

    reason = "timeout"


class ReplyTooLarge(HTTPError):
    """The body (as sent, or once decompressed) went past teacher.max_response_bytes (not retried)."""

    reason = "response too large"


class BadEncoding(HTTPError):
    """A body that claims an encoding it does not have, or one we did not ask for (not retried)."""

    reason = "malformed response"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes  # whole and decoded
    url: str


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    host_header: bytes


def origin_of(url: str) -> tuple[Origin, bytes]:
    """(where to connect, the request target) of an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectFailed(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConnectFailed(f"bad port in the URL: {exc}") from None
    host_header = parts.netloc.rpartition("@")[2]
    target = quote(parts.path or "/", safe=_SAFE_TARGET) + (
        f"?{quote(parts.query, safe=_SAFE_TARGET)}" if parts.query else ""
    )
    return Origin(parts.scheme, parts.hostname, port, host_header.encode("idna")), target.encode("ascii")


class _Connection:
    __slots__ = ("h11", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)

    def close(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):  # the loop is closing, or the socket is gone: nothing to release
            pass


class _Decoder:
    """Undoes Content-Encoding piece by piece, never producing more than the cap (+1 byte)."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        self._zlib: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding not in ("", "identity", "deflate"):
            raise BadEncoding(f"cannot decode the body: unsupported Content-Encoding {encoding!r}")

    def decode(self, data: bytes, room: int) -> bytes:
        if not self.encoding or self.encoding == "identity":
            return data
        try:
            if self._zlib is None:  # deflate: zlib-wrapped as the RFC says, raw as some servers send it
                try:
                    self._zlib = zlib.decompressobj()
                    return self._zlib.decompress(data, room + 1)
                except zlib.error:
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._zlib.decompress(data, room + 1)
        except zlib.error as exc:
            raise BadEncoding(f"cannot decode the body: {exc}") from None

    def overflowed(self) -> bool:
        return bool(self._zlib is not None and self._zlib.unconsumed_tail)


class HTTPClient:
    """Pooled HTTP/1.1 requests; see the module docstring. One per backend, closed by `aclose`."""

    def __init__(self, *, max_bytes: int, pool_size: int = 16, user_agent: str = "syllabus"):
        self.max_bytes = max_bytes
        self.pool_size = pool_size
        self.user_agent = user_agent.encode()
        self._idle: dict[Origin, list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._fallback: Any = None  # httpx, for URLs behind an environment proxy
        self._proxied: dict[tuple[str, str, int], bool] = {}

    async def request(
        self, method: str, url: str, *, body: bytes | None, headers: list[tuple[bytes, bytes]], timeout: float
    ) -> Reply:
        """One try: the whole reply within `timeout` seconds, or an HTTPError."""
        for _ in range(_MAX_REDIRECTS + 1):
            origin, target = origin_of(url)
            if self._behind_proxy(origin):
                reply = await self._via_proxy(method, url, body, headers, timeout)
            else:
                reply = await self._within(timeout, self._exchange(origin, method, target, body, headers, url))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("HTTP %s %s: %d", method, url, reply.status)
            location = reply.headers.get("location")
            if reply.status not in (301, 302, 303, 307, 308) or not location:
                return reply
            new_url = urljoin(url, location)
            if reply.status == 303 or (reply.status in (301, 302) and method == "POST"):
                method, body = "GET", None
            if origin_of(new_url)[0] != origin:
                headers = [(k, v) for k, v in headers if k.lower() != b"authorization"]
            url = new_url
        raise ConnectFailed(f"more than {_MAX_REDIRECTS} redirects")

    async def _within(self, timeout: float, exchange) -> Reply:
        try:
            if _timeout is not None:
                async with _timeout(timeout):
                    return await exchange
            return await asyncio.wait_for(exchange, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise Timeout(f"no complete reply within {timeout:g} s") from None

    async def _exchange(
        self,
        origin: Origin,
        method: str,
        target: bytes,
        body: bytes | None,
        headers: list[tuple[bytes, bytes]],
        url: str,
    ) -> Reply:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.reader.at_eof() or conn.writer.is_closing():
                conn.close()
                continue
            try:
                return await self._on(conn, origin, method, target, body, headers, url, reused=True)
            except _StaleConnection:
                continue  # the server had closed it while idle: a fresh connection, not a failure
        conn = await self._connect(origin)
        return await self._on(conn, origin, method, target, body, headers, url, reused=False)

    async def _connect(self, origin: Origin) -> _Connection:
        try:
            if origin.scheme == "https":
                if self._ssl is None:
                    self._ssl = _default_ssl_context()
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=self._ssl, server_hostname=origin.host, limit=_READ
                )
            else:
                reader, writer = await asyncio.open_connection(origin.host, origin.port, limit=_READ)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"cannot connect: {type(exc).__name__}: {exc}") from None
        return _Connection(reader, writer)

    async def _on(
        self,
        conn: _Connection,
        origin: Origin,
        method: str,
        target: bytes,
        body: bytes | None,
        headers: list[tuple[bytes, bytes]],
        url: str,
        *,
        reused: bool,
    ) -> Reply:
        """One exchange on `conn`; it goes back to the pool only when h11 says it may. On a `reused`
        connection, a failure before any byte of the reply is `_StaleConnection` (try a new one)."""
        received = False
        try:
            all_headers = [
                (b"host", origin.host_header),
                (b"user-agent", self.user_agent),
                (b"accept", b"application/json"),
                (b"accept-encoding", b"gzip, deflate"),
                *headers,
            ]
            if body is not None:
                all_headers.append((b"content-length", b"%d" % len(body)))
            out = conn.h11.send(h11.Request(method=method.encode(), target=target, headers=all_headers))
            if body:
                out += conn.h11.send(h11.Data(data=body))
            out += conn.h11.send(h11.EndOfMessage())
            conn.writer.write(out)
            status, reply_headers, decoder = 0, {}, _Decoder("")
            chunks: list[bytes] = []
            wire = size = 0
            limit = self.max_bytes
            while True:
                event = conn.h11.next_event()
                if event is h11.NEED_DATA:
                    data = await conn.reader.read(_READ)
                    if data:
                        received = True
                        wire += len(data)
                    elif not received and reused:
                        raise _StaleConnection("the server closed the connection")
                    conn.h11.receive_data(data)
                    continue
                kind = type(event)
                if kind is h11.Response:
                    status = event.status_code  # type: ignore[union-attr]
                    reply_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}  # type: ignore[union-attr]
                    declared = reply_headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise ReplyTooLarge(f"the server announced {int(declared)} bytes, more than {limit}")
                    decoder = _Decoder(reply_headers.get("content-encoding", "").strip().lower())
                elif kind is h11.Data:
                    piece = decoder.decode(bytes(event.data), limit - size)  # type: ignore[union-attr]
                    size += len(piece)
                    if size > limit or decoder.overflowed():
                        raise ReplyTooLarge(f"more than {limit} bytes once decoded")
                    if wire > limit:
                        raise ReplyTooLarge(f"more than {limit} bytes received")
                    chunks.append(piece)
                elif kind is h11.EndOfMessage:
                    break
                elif kind is h11.ConnectionClosed:
                    raise ConnectFailed("the server closed the connection before the reply was whole")
                # h11.InformationalResponse (100 Continue): read on
        except h11.RemoteProtocolError as exc:
            conn.close()
            if not received and reused:
                raise _StaleConnection(str(exc)) from None
            raise ConnectFailed(f"the server broke the protocol: {exc}") from None
        except (OSError, h11.LocalProtocolError) as exc:
            conn.close()
            if not received and reused:
                raise _StaleConnection(str(exc)) from None
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from None
        except BaseException:  # a deadline, a cap, a cancelled run: the connection is in an unknown state
            conn.close()
            raise
        if conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.pool_size:
                idle.append(conn)
            else:
                conn.close()
        else:
            conn.close()
        return Reply(status, reply_headers, b"".join(chunks), url)

    # -- an environment proxy: httpx does it ---------------------------------------------
    def _behind_proxy(self, origin: Origin) -> bool:
        key = (origin.scheme, origin.host, origin.port)
        found = self._proxied.get(key)
        if found is None:
            from urllib.request import getproxies, proxy_bypass

            proxies = getproxies()
            found = bool((proxies.get(origin.scheme) or proxies.get("all")) and not proxy_bypass(origin.host))
            self._proxied[key] = found
        return found

    async def _via_proxy(
        self, method: str, url: str, body: bytes | None, headers: list[tuple[bytes, bytes]], timeout: float
    ) -> Reply:
        from .http_limits import bounded_client, httpx

        if self._fallback is None:
            self._fallback = bounded_client(timeout=timeout, max_bytes=self.max_bytes)
        try:
            response = await self._fallback.request(
                method, url, content=body, headers=headers, timeout=timeout, follow_redirects=False
            )
        except httpx.TimeoutException:
            raise Timeout(f"no complete reply within {timeout:g} s") from None
        except httpx.DecodingError as exc:
            raise BadEncoding(f"cannot decode the body: {exc}") from None
        except httpx.HTTPError as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from None
        return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content, url)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        if self._fallback is not None:
            await self._fallback.aclose()
            self._fallback = None


def _default_ssl_context() -> ssl.SSLContext:
    """The certificates the openai SDK's HTTP library trusts (SSL_CERT_FILE / SSL_CERT_DIR, else
    the system's), so a teacher reached over TLS before is reached the same way now."""
    try:
        from httpcore2 import default_ssl_context  # under httpx2, which openai 3 is built on
    except ImportError:
        context = ssl.create_default_context()
        try:
            import certifi  # what httpx (openai < 3) trusts

            context.load_verify_locations(certifi.where())
        except ImportError:
            pass
        return context
    return default_ssl_context()


class _StaleConnection(Exception):
    """A reused connection failed before any byte of the reply: the server had closed it."""
