"""An OpenAI-compatible server on 127.0.0.1 that answers every request at once.

Why: against a real teacher the client's own cost hides behind the model's; a server
that answers in microseconds shows the client's ceiling (requests per second it can
drive), which is where `syllabus generate` and a plain openai loop differ.

What it answers (stdlib asyncio streams only, HTTP/1.1 keep-alive, one process):
  GET  /v1/models             one model (`--model`, default "instant")
  POST /v1/chat/completions   a `chat.completion` with usage, finish_reason "stop"
  GET  /bench/stats           {"chat": N, "models": N, "stages": {...}, "cpu_s": ..., "first_chat_time",
                              "last_chat_time" (time.time() of the first and latest chat request)}
  GET  /bench/requests?start=K  [[request_hash, stage], ...] of chat requests K.. (with --record)
  GET  /bench/reset           counts and first/last times start again (recorded hashes are kept)
  GET  /bench/arm?pid=P&after=N  SIGKILL process P when the N-th chat request from now arrives,
                              before answering it (bench_resume.py: a kill at an exact point)
The reply is chosen by the request's system message (each built-in template of
syllabus/prompts has its own wording) and is parseable by syllabus' parsers:
  subjects  "Name | level | topics" lines (as many as the user message asks for)
  syllabus  "Session N: title" + "- concept" lines (as many sessions as asked, 6 concepts each)
  question  one question (>= 15 characters, ends with '?')
  answer    a few sentences
  other     a short sentence (flat prompts of bench_distilabel.py, warm-ups)
Every reply contains a hash of the last user message, so different requests get
different text (dedup filters keep them) and the same request the same text (a
rerun writes the same rows). With --record, each chat request's `request_hash`
(messages, temperature, top_p, max_tokens) is kept, so a benchmark can tell which
requests a client sent twice; the same function hashes the requests a cache stored.

Run alone:  python bench/instant_server.py [--port 0] [--model instant] [--record]
            (prints "READY <base url>" once listening)
From a benchmark:  with instant_server(record=True) as server: server.base_url, server.stats()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MODEL = "instant"

# Wording only one built-in template's system message has (syllabus/prompts/*.j2), most specific first.
STAGE_MARKERS = (
    ("curriculum designer", "subjects"),
    ("course syllabi", "syllabus"),
    ("answer the student's homework question", "answer"),
    ("writes homework questions", "question"),
)


def request_hash(request: dict) -> str:
    """What decides a chat request's answer, hashed: messages (role, content), temperature, top_p,
    max_tokens. Takes an HTTP body or a cache `answers.request` alike (both carry these keys)."""

    def number(value, kind):
        return None if value is None else kind(value)

    canonical = {
        "messages": [[m.get("role"), m.get("content")] for m in request.get("messages") or []],
        "temperature": number(request.get("temperature"), float),
        "top_p": number(request.get("top_p"), float),
        "max_tokens": number(request.get("max_tokens"), int),
    }
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def stage_of(messages: list[dict]) -> str:
    system = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "system").lower()
    return next((stage for marker, stage in STAGE_MARKERS if marker in system), "other")


def last_user(messages: list[dict]) -> str:
    return next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")


def reply_for(stage: str, user: str) -> str:
    h = hashlib.sha256(user.encode("utf-8")).hexdigest()
    if stage == "subjects":
        match = re.search(r"List (\d+) courses", user)
        count = max(1, min(int(match.group(1)) if match else 3, 50))
        return "\n".join(
            f"Course {h[:8]} {i + 1} | undergraduate | topic {h[8:12]} {i}a, topic {h[8:12]} {i}b, topic {h[8:12]} {i}c"
            for i in range(count)
        )
    if stage == "syllabus":
        match = re.search(r"at most (\d+) sessions", user)
        count = max(1, min(int(match.group(1)) if match else 4, 30))
        lines = []
        for s in range(1, count + 1):
            lines.append(f"Session {s}: Unit {h[:6]} part {s}")
            lines.extend(f"- concept {h[6:10]} {s}.{c}" for c in range(1, 7))
        return "\n".join(lines)
    if stage == "question":
        return (
            f"How does {h[:6]} relate to {h[6:12]} when {h[12:18]} is applied to {h[18:24]}, "
            f"and why does {h[24:30]} follow?"
        )
    if stage == "answer":
        return (
            f"Start from {h[:6]} and {h[6:12]}. Applying {h[12:18]} to {h[18:24]} step by step "
            f"gives {h[24:30]}, so the final answer is {int(h[30:36], 16) % 997}."
        )
    return f"Reply {h[:12]}: one short exam question about this topic, as asked."


class InstantServer:
    def __init__(self, model: str = MODEL, record: bool = False):
        self.model = model
        self.record = record
        self.chat = 0
        self.models = 0
        self.stages: Counter = Counter()
        self.requests: list[tuple[str, str]] = []
        self.armed: tuple[int, int] | None = None  # (pid, chat count at which to kill it)
        self.killed: list[dict] = []
        self.first_chat: float | None = None  # time.time() of the first and the latest chat request
        self.last_chat: float | None = None

    # HTTP ----------------------------------------------------------------------
    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, _ = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await self._chunked(reader)
                else:
                    length = int(headers.get("content-length") or 0)
                    body = await reader.readexactly(length) if length else b""
                status, payload = self.route(method, target, body)
                data = json.dumps(payload).encode()
                writer.write(
                    b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                    b"Connection: keep-alive\r\n\r\n%s"
                    % (status, b"OK" if status == 200 else b"Error", len(data), data)
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readline()

    def route(self, method: str, target: str, body: bytes) -> tuple[int, object]:
        url = urlsplit(target)
        path = url.path.rstrip("/")
        if method == "POST" and path.endswith("/chat/completions"):
            return self.completion(body)
        if method == "GET" and path.endswith("/models"):
            self.models += 1
            return 200, {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "bench"}],
            }
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if path == "/bench/stats":
            cpu = os.times()
            return 200, {
                "chat": self.chat,
                "models": self.models,
                "stages": dict(self.stages),
                "cpu_s": round(cpu.user + cpu.system, 3),
                "killed": self.killed,
                "first_chat_time": self.first_chat,
                "last_chat_time": self.last_chat,
            }
        if path == "/bench/requests":
            return 200, self.requests[int(query.get("start", 0)) :]
        if path == "/bench/reset":  # counts and times start again (recorded hashes are kept)
            self.chat, self.models, self.first_chat, self.last_chat = 0, 0, None, None
            self.stages.clear()
            return 200, {"reset": True}
        if path == "/bench/arm":
            self.armed = (int(query["pid"]), self.chat + int(query["after"]))
            return 200, {"armed": True, "at": self.armed[1]}
        return 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}}

    def completion(self, body: bytes) -> tuple[int, object]:
        try:
            request = json.loads(body)
            messages = request["messages"]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": {"message": "body is not a chat completion request", "type": "invalid_request"}}
        self.chat += 1
        self.last_chat = time.time()
        if self.first_chat is None:
            self.first_chat = self.last_chat
        stage = stage_of(messages)
        self.stages[stage] += 1
        if self.record:
            self.requests.append((request_hash(request), stage))
        if self.armed and self.chat >= self.armed[1]:
            pid, _ = self.armed
            self.armed = None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.killed.append({"pid": pid, "at_chat_request": self.chat, "time": time.time()})
        text = reply_for(stage, last_user(messages))
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        completion_tokens = len(text.split())
        return 200, {
            "id": f"chatcmpl-{self.chat}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_chars // 4 + 1,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_chars // 4 + 1 + completion_tokens,
            },
        }


async def serve(port: int, model: str, record: bool) -> None:
    server = InstantServer(model, record)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", port, backlog=1024)
    bound = listener.sockets[0].getsockname()[1]
    print(f"READY http://127.0.0.1:{bound}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # end quietly, between requests
    async with listener:
        await stop.wait()


class Running:
    """A started server process: its base URL and the /bench endpoints."""

    def __init__(self, process: subprocess.Popen, base_url: str):
        self.process = process
        self.base_url = base_url
        self.root = base_url.rsplit("/v1", 1)[0]

    def _get(self, path: str):
        with urllib.request.urlopen(self.root + path, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._get("/bench/stats")

    def requests(self, start: int = 0) -> list[tuple[str, str]]:
        return [tuple(item) for item in self._get(f"/bench/requests?start={start}")]

    def reset(self) -> dict:
        return self._get("/bench/reset")

    def arm(self, pid: int, after: int) -> dict:
        return self._get(f"/bench/arm?pid={pid}&after={after}")


@contextlib.contextmanager
def instant_server(model: str = MODEL, record: bool = False, python: str = sys.executable):
    """Start the server as its own process (so it does not share the client's GIL); yields `Running`."""
    command = [python, str(Path(__file__).resolve()), "--port", "0", "--model", model]
    if record:
        command.append("--record")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"instant server did not start (exit {process.poll()}): {line!r}")
        yield Running(process, line.split()[1])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--record", action="store_true", help="keep a hash of every chat request")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.model, args.record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
