"""A small OpenAI-compatible chat server on 127.0.0.1 that produces faults on demand.

A real server (llama.cpp, vLLM) cannot be told to answer 429 for the next two
requests, hang, cut a body in half or send broken JSON; this one can. It speaks
the two endpoints a `syllabus generate` run uses: `GET /v1/models` (one model id)
and `POST /v1/chat/completions` (a proper `chat.completion` with usage).

Healthy answers are deterministic functions of the request: the stage is told
from the system message (each built-in template has its own wording) and the
text depends on a hash of the last user message, so each reply parses with
`syllabus.generators.parsers` and two runs over the same requests write the same
dataset.

Hostile replies (a real server sends them only when something upstream is broken or
malicious): `reply` (a normal completion with a chosen text, usage or model, e.g. a lone
surrogate, a usage count of 2**64 - 1, the caller's key reflected back), `huge` (a body
of `size` bytes), `gzip` (a gzip body; with `size`, a bomb that inflates to that many
bytes), `trickle` (a normal body, `chunk` bytes every `interval` seconds) and `endless`
(a chunked body that never ends).

Faults are rules (`Fault`) set per test with `server.set_faults(...)` and cleared
with `server.heal()`; `server.stop()` / `server.start()` close and reopen the port
(connections refused in between); `server.models_fault` breaks the model listing.
Every request received is recorded (`received`,
`chat`) with its arrival time, so tests count requests and measure retry gaps.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:
    import pytest
except ImportError:  # bench/bench_hostile.py serves with it, where pytest may not be installed
    pytest = None

MODEL = "fault-model"
CHAT_PATH = "/v1/chat/completions"

# Wording that only one built-in template's system message has (syllabus/prompts/*.j2).
STAGE_MARKERS = (
    ("curriculum designer", "subjects"),
    ("course syllabi", "syllabus"),
    ("answer the student's homework question", "answer"),
    ("writes homework questions", "question"),
)

FAULT_KINDS = (
    "429",
    "500",
    "hang",
    "cut",
    "malformed",
    "bad-shape",
    "empty",
    "null",
    "die",
    "reply",
    "huge",
    "gzip",
    "trickle",
    "endless",
)


def stage_of(body: Any) -> str:
    """Which template asked: 'subjects', 'syllabus', 'question', 'answer' or 'other'."""
    try:
        system = " ".join(m.get("content") or "" for m in body["messages"] if m.get("role") == "system").lower()
    except (TypeError, KeyError, AttributeError):
        return "other"
    return next((stage for marker, stage in STAGE_MARKERS if marker in system), "other")


def last_user(body: Any) -> str:
    try:
        return next(m.get("content") or "" for m in reversed(body["messages"]) if m.get("role") == "user")
    except (TypeError, KeyError, AttributeError, StopIteration):
        return ""


WORDS = (
    "basis",
    "kernel",
    "image",
    "rank",
    "trace",
    "norm",
    "orthogonal",
    "projection",
    "subspace",
    "scalar",
    "column",
    "row",
    "pivot",
    "inverse",
    "transpose",
    "symmetric",
    "eigenvector",
    "spectrum",
    "determinant",
    "span",
    "dimension",
    "isomorphism",
    "matrix",
    "vector",
    "field",
    "dual",
    "bilinear",
    "quadratic",
    "unitary",
    "similar",
    "nilpotent",
    "cofactor",
)


def _words(h: str, count: int) -> str:
    """`count` words picked by the hex digest `h`: replies differ in many words, not just one."""
    return " ".join(WORDS[int(h[2 * i : 2 * i + 2], 16) % len(WORDS)] for i in range(count))


def healthy_reply(body: Any) -> str:
    """The deterministic answer of a healthy teacher, in the line format each stage parses."""
    h = hashlib.sha256(last_user(body).encode("utf-8")).hexdigest()
    stage = stage_of(body)
    if stage == "subjects":
        return (
            f"Vector Spaces {h[:4]} | undergraduate | vectors, bases, dimension\n"
            f"Matrix Methods {h[4:8]} | graduate | decompositions, least squares"
        )
    if stage == "syllabus":
        return (
            f"Session 1: Vectors {h[:4]}\n- vector addition\n- linear combinations\n- span\n"
            f"Session 2: Matrices {h[4:8]}\n- matrix products\n- determinants\n"
            f"Session 3: Eigenvalues {h[8:12]}\n- characteristic polynomial\n- diagonalisation"
        )
    if stage == "question":
        return f"Homework {h[:8]}: relate {_words(h, 4)} to {_words(h[8:], 4)} in a worked example. Why does it hold?"
    if stage == "answer":
        return (
            f"Start from {_words(h, 3)} and then use {_words(h[6:], 3)}; combine {_words(h[12:], 3)} "
            f"step by step.\n\nThe final answer is {h[:12]}."
        )
    return "Hello"


@dataclass
class Received:
    """One request as the server saw it."""

    n: int  # 1-based among chat requests (0 for other paths)
    time: float  # time.monotonic() when the request had been read
    method: str
    path: str
    body: Any
    stage: str
    distinct: int  # 1-based index of this body among distinct chat bodies, by first arrival
    stage_distinct: int  # the same among distinct bodies of its stage
    attempt: int  # how many times this body has arrived, this one included
    authorization: str
    fault: str | None = None  # the fault the server answered with


@dataclass
class Fault:
    """A rule: answer chat requests that match with `kind` instead of a healthy reply.

    kind: '429' (with Retry-After), '500' (its message: `text` when a str), 'hang' (no answer until the server stops or
    `hang_s` passes), 'cut' (headers and half the body, then the connection closes),
    'malformed' (invalid JSON), 'bad-shape' (valid JSON, not a chat.completion),
    'empty' (content ""), 'null' (content null), 'die' (the server stops listening and
    drops every connection: later requests are refused); the hostile ones: 'reply' (a
    healthy completion with `text` and/or `usage` / `model` / `finish_reason` replaced; `text`
    and `model` may be callables of (healthy text, Received), to reflect the request back),
    'huge' (a completion of about `size` bytes; `chunked` leaves out Content-Length),
    'gzip' (the completion gzip-compressed; with `size`, padded to inflate to `size` bytes),
    'trickle' (the healthy body, `chunk` bytes every `interval` s), 'endless' (a chunked body,
    `chunk` bytes every `interval` s, until the client hangs up or the server stops).
    Which requests (all given conditions must hold; with none, every request):
    `stage` (only that template's requests), `first` (the next K chat requests),
    `every` (every Nth distinct request body, on every attempt of it), `nth` (the Nth
    distinct body, of `stage` when given, on every attempt), `when` (a predicate on
    `Received`). Rules keyed on bodies (`every`, `nth`) fail the same requests on
    every retry, so a request fails for good: that is what a run must record.
    """

    kind: str
    first: int | None = None
    every: int | None = None
    nth: int | None = None
    when: Callable[[Received], bool] | None = None
    stage: str | None = None
    retry_after: float = 1.0
    hang_s: float = 30.0
    payload: Any = None  # 'bad-shape': the JSON to send (default: a choice without a message)
    text: Any = ...  # 'reply': the content (str, None, or a callable of (healthy text, Received))
    usage: dict | None = None  # 'reply': the usage object
    model: Any = None  # 'reply': the model field (str or callable of (model, Received))
    finish_reason: Any = None  # 'reply'
    size: int | None = None  # 'huge', 'gzip': bytes of the body (once inflated, for 'gzip')
    chunked: bool = False  # 'huge': Transfer-Encoding chunked, no Content-Length
    chunk: int = 1  # 'trickle', 'endless': bytes per write
    interval: float = 1.0  # 'trickle', 'endless': seconds between writes
    _start: int = field(default=0, repr=False)  # chat requests received before the rule was set

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {FAULT_KINDS}")

    def applies(self, r: Received) -> bool:
        if self.stage is not None and r.stage != self.stage:
            return False
        if self.first is not None and r.n - self._start > self.first:
            return False
        if self.every is not None and r.distinct % self.every != 0:
            return False
        if self.nth is not None and (r.stage_distinct if self.stage is not None else r.distinct) != self.nth:
            return False
        return self.when is None or bool(self.when(r))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fixture: FaultServer
    stopped = False  # set first thing on stop: a connection that slipped through gets no answer

    def handle_error(self, request, client_address) -> None:  # a client that went away is expected here
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fixture._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fixture._untrack(self.connection)

    # --- answers ---------------------------------------------------------------
    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        cut: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if cut:  # promise the whole body, send half, hang up
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(payload)
        self.wfile.flush()

    def _stream(self, chunks, headers: dict[str, str], length: int | None = None, interval: float = 0.0) -> None:
        """A 200 whose body is written piece by piece: with Content-Length when `length` is
        given, else chunked. Stops when the client hangs up or the server stops."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        released = self.server.fixture._released
        try:
            for piece in chunks:
                if self.server.stopped or (interval and released.wait(interval)):
                    break
                self.wfile.write(piece if length is not None else b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            else:
                if length is None:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                return
        except OSError:  # the client went away (it gave up on the body): expected here
            pass
        self.close_connection = True

    def _json(self, status: int, obj: Any, **kwargs: Any) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), **kwargs)

    def _error(self, status: int, message: str, **kwargs: Any) -> None:
        # Echo the Authorization header, as some proxies do: the client must redact it.
        auth = self.headers.get("Authorization", "")
        self._json(
            status,
            {
                "error": {
                    "message": f"{message} (request authorization: {auth})",
                    "type": "server_error",
                    "code": str(status),
                }
            },
            **kwargs,
        )

    # --- endpoints -------------------------------------------------------------
    def _gone(self) -> bool:
        if self.server.stopped:
            self.close_connection = True
        return self.server.stopped

    def do_GET(self) -> None:
        if self._gone():
            return
        self.server.fixture._record("GET", self.path, None, self.headers)
        broken = self.server.fixture.models_fault
        if self.path.rstrip("/") == "/v1/models" and broken == "500":
            self._error(500, "internal error")
        elif self.path.rstrip("/") == "/v1/models" and broken == "malformed":
            self._send(200, b'{"object": "list", "data": [{"id": "fault-')
        elif self.path.rstrip("/") == "/v1/models" and broken == "html":  # a web page: the wrong base URL
            self._send(200, b"<!doctype html><html><body>Welcome</body></html>", content_type="text/html")
        elif self.path.rstrip("/") == "/v1/models" and broken == "huge":  # 4 MiB of model names
            entry = b'{"id": "%s", "object": "model"}, ' % (b"m" * 1000)
            self._stream(
                iter([b'{"object": "list", "data": [', *([entry] * 4096), b'{"id": "fault-model"}]}']), {}, None
            )
        elif self.path.rstrip("/") == "/v1/models":
            self._json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": self.server.fixture.model, "object": "model", "created": 0, "owned_by": "fault-server"}
                    ],
                },
            )
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if self._gone():
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        fixture = self.server.fixture
        if self.path != CHAT_PATH:
            fixture._record("POST", self.path, body, self.headers)
            self._error(404, f"no route {self.path}")
            return
        record, fault = fixture._record("POST", self.path, body, self.headers)
        if body is None:
            self._error(400, "the request body is not JSON")
            return
        kind = fault.kind if fault else None
        if kind == "429":
            self._error(429, "rate limited", headers={"Retry-After": f"{fault.retry_after:g}"})
        elif kind == "500":
            self._error(500, fault.text if isinstance(fault.text, str) else "internal error")
        elif kind == "die":
            fixture._die()
        elif kind == "hang":
            fixture._released.wait(fault.hang_s)
            try:
                self._json(200, fixture.completion(body))
            except OSError:
                pass
        elif kind == "cut":
            self._json(200, fixture.completion(body), cut=True)
        elif kind == "malformed":
            self._send(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess')
        elif kind == "bad-shape":
            self._json(
                200,
                fault.payload
                if fault.payload is not None
                else {"id": "chatcmpl-odd", "object": "chat.completion", "choices": [{"index": 0}]},
            )
        elif kind == "empty":
            self._json(200, fixture.completion(body, text=""))
        elif kind == "null":
            self._json(200, fixture.completion(body, text=None))
        elif kind == "reply":
            self._json(200, fixture.hostile_completion(body, fault, record))
        elif kind == "huge":
            head, tail = padded_completion(fixture.completion(body), fault.size or 0)
            pieces = _padding(head, tail, fault.size or 0)
            self._stream(pieces, {}, None if fault.chunked else len(head) + max(fault.size or 0, 0) + len(tail))
        elif kind == "gzip":
            if fault.size is None:
                data = gzip_bytes([json.dumps(fixture.completion(body)).encode()])
            else:
                data = fixture.gzip_bomb(body, fault.size)
            self._send(200, data, headers={"Content-Encoding": "gzip"})
        elif kind == "trickle":
            data = json.dumps(fixture.completion(body)).encode()
            step = max(fault.chunk, 1)
            self._stream((data[i : i + step] for i in range(0, len(data), step)), {}, len(data), fault.interval)
        elif kind == "endless":
            self._stream(
                _endless(b'{"id": "chatcmpl-endless", "choices": [{"message": {"content": "', fault.chunk),
                {},
                None,
                fault.interval,
            )
        else:
            self._json(200, fixture.completion(body))


PAD = b"a"  # 'huge' and 'gzip' bombs: the reply's text is this byte repeated


def padded_completion(completion: dict[str, Any], size: int) -> tuple[bytes, bytes]:
    """A completion's JSON split around its content, so `size` bytes of padding go in between."""
    marker = "\x00PAD\x00"
    completion["choices"][0]["message"]["content"] = marker
    head, tail = json.dumps(completion).encode().split(json.dumps(marker).encode()[1:-1])
    return head, tail


def _padding(head: bytes, tail: bytes, size: int, step: int = 1 << 20):
    yield head
    left = size
    while left > 0:
        yield PAD * min(step, left)
        left -= step
    yield tail


def _endless(head: bytes, chunk: int):
    yield head
    while True:
        yield PAD * max(chunk, 1)


def gzip_bytes(pieces) -> bytes:
    """gzip of the pieces, compressed as they come (a bomb is never held inflated)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return b"".join([*(packer.compress(p) for p in pieces), packer.flush()])


class FaultServer:
    """The server, its fault rules and its record of requests. Start with `start()`."""

    def __init__(self, model: str = MODEL, port: int = 0):
        self.model = model
        self.port = port
        self.received: list[Received] = []
        self.models_fault: str | None = None  # GET /v1/models: None (healthy), '500', 'malformed', 'html' or 'huge'
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._bodies: dict[str, int] = {}  # canonical body -> distinct index
        self._stage_bodies: dict[str, dict[str, int]] = {}  # stage -> canonical body -> index in stage
        self._attempts: dict[str, int] = {}
        self._connections: set[socket.socket] = set()
        self._released = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._bombs: dict[tuple[str, int], bytes] = {}

    # --- lifecycle -------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> FaultServer:
        """Listen (again, on the same port after a stop)."""
        if self._httpd is not None:
            return self
        self._released = threading.Event()
        httpd = _HTTPServer(("127.0.0.1", self.port), _Handler)
        httpd.fixture = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fault-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection: new connections are refused."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopped = True
        self._released.set()  # hung handlers give up
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _die(self) -> None:
        threading.Thread(target=self.stop, name="fault-server-die", daemon=True).start()
        deadline = time.monotonic() + 5
        while self._httpd is not None and time.monotonic() < deadline:
            time.sleep(0.01)

    # --- faults ----------------------------------------------------------------
    def set_faults(self, *faults: Fault) -> None:
        with self._lock:
            self._released = threading.Event()  # a fresh one: 'hang' hangs again after a heal
            start = len(self.chat)
            for fault in faults:
                fault._start = start
            self._faults = list(faults)

    def heal(self) -> None:
        """No faults from now on; hung requests are released."""
        with self._lock:
            self._faults = []
        self._released.set()

    # --- the record ------------------------------------------------------------
    @property
    def chat(self) -> list[Received]:
        return [r for r in self.received if r.path == CHAT_PATH]

    def chat_count(self) -> int:
        return len(self.chat)

    def mark(self) -> int:
        """A bookmark in the record: pass it to `chat_since` to see what came after."""
        with self._lock:
            return len(self.received)

    def chat_since(self, mark: int) -> list[Received]:
        with self._lock:
            return [r for r in self.received[mark:] if r.path == CHAT_PATH]

    def gaps(self, records: list[Received] | None = None) -> list[float]:
        """Seconds between consecutive chat requests received."""
        times = [r.time for r in (records if records is not None else self.chat)]
        return [b - a for a, b in itertools.pairwise(times)]

    def _record(self, method: str, path: str, body: Any, headers) -> tuple[Received, Fault | None]:
        with self._lock:
            n, distinct, stage_distinct, attempt = 0, 0, 0, 0
            stage = stage_of(body)
            if path == CHAT_PATH:
                n = sum(1 for r in self.received if r.path == CHAT_PATH) + 1
                canonical = json.dumps(body, sort_keys=True)
                distinct = self._bodies.setdefault(canonical, len(self._bodies) + 1)
                in_stage = self._stage_bodies.setdefault(stage, {})
                stage_distinct = in_stage.setdefault(canonical, len(in_stage) + 1)
                attempt = self._attempts[canonical] = self._attempts.get(canonical, 0) + 1
            record = Received(
                n=n,
                time=time.monotonic(),
                method=method,
                path=path,
                body=body,
                stage=stage,
                distinct=distinct,
                stage_distinct=stage_distinct,
                attempt=attempt,
                authorization=headers.get("Authorization", ""),
            )
            fault = None
            if path == CHAT_PATH:
                fault = next((f for f in self._faults if f.applies(record)), None)
                record.fault = fault.kind if fault else None
            self.received.append(record)
            return record, fault

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    # --- hostile answers -------------------------------------------------------
    def hostile_completion(self, body: Any, fault: Fault, record: Received) -> dict[str, Any]:
        healthy = healthy_reply(body)
        text = fault.text(healthy, record) if callable(fault.text) else fault.text
        reply = self.completion(body, text=healthy if text is ... else text)
        if fault.usage is not None:
            reply["usage"] = fault.usage
        if fault.model is not None:
            reply["model"] = fault.model(reply["model"], record) if callable(fault.model) else fault.model
        if fault.finish_reason is not None:
            reply["choices"][0]["finish_reason"] = fault.finish_reason
        return reply

    def gzip_bomb(self, body: Any, size: int) -> bytes:
        """A gzip body that inflates to a completion of about `size` bytes (made once per size and stage)."""
        key = (stage_of(body), size)
        if key not in self._bombs:
            head, tail = padded_completion(self.completion(body), size)
            self._bombs[key] = gzip_bytes(_padding(head, tail, size))
        return self._bombs[key]

    # --- healthy answers -------------------------------------------------------
    def completion(self, body: Any, text: str | type[Ellipsis] | None = ...) -> dict[str, Any]:
        content = healthy_reply(body) if text is ... else text
        prompt_chars = sum(len(m.get("content") or "") for m in body.get("messages", []))
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
        completion_tokens = len((content or "").split())
        return {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_chars // 4 + 1,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_chars // 4 + 1 + completion_tokens,
            },
        }


def _fault_server():
    """A factory: `fault_server()` starts a FaultServer on a free port; all stop after the test."""
    servers: list[FaultServer] = []

    def make(model: str = MODEL, port: int = 0) -> FaultServer:
        server = FaultServer(model=model, port=port).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


fault_server = pytest.fixture(_fault_server, name="fault_server") if pytest is not None else None
