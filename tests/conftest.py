"""Shared slow parts: the embedded model folder, a real llama.cpp server, a generated run.

Each is made once per session so the suite stays quick enough for CI.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from syllabus.project import init_project
from syllabus.yamlio import dump, load

ROOT = Path(__file__).resolve().parents[1]


def _threads_per_worker() -> int:
    """The cores each test process may use: all of them alone, a share under `pytest -n N`.

    Two torch processes each spinning up every core run slower together than one after
    the other, so a worker of `make test` (pytest-xdist) keeps to its share, and so do the
    `python -m syllabus` processes and the llama.cpp server it starts (they inherit it).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 1) // workers)


if "PYTEST_XDIST_WORKER_COUNT" in os.environ:  # before any test imports torch
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, str(_threads_per_worker()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files with slow tests first, the loop's own (the longest) at the head, so that under
    `pytest -n N --dist loadfile` no long file starts last; a stable sort keeps each file's
    own order. Every test of the shared loop run (`two_rounds`) lives in test_distill.py:
    loadfile keeps a file in one process, so that run is made once."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") or item.get_closest_marker("server")}
    items.sort(key=lambda item: (item.path.name != "test_distill.py", item.path not in slow_files))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tune_project(folder: Path, **generation) -> None:
    """Small, quick settings for tests: few subjects, short replies, greedy unless told."""
    file = folder / "syllabus.yaml"
    doc = load(file)
    gen = doc["generation"]
    gen["subject_samples"] = generation.pop("subject_samples", 1)
    gen["max_subjects"] = generation.pop("max_subjects", 1)
    gen["max_sessions"] = generation.pop("max_sessions", 4)
    temperature = generation.pop("temperature", 0.0)
    tokens = generation.pop("max_tokens", {"subjects": 60, "syllabus": 120, "question": 48, "answer": 64})
    for stage, stage_tokens in tokens.items():
        gen["stages"][stage]["max_tokens"] = stage_tokens
        gen["stages"][stage]["temperature"] = temperature
        # No frequency penalty: with one, llama.cpp's server answered the same greedy request
        # differently in two runs (seen in test_kill_then_resume_sends_only_missing_requests), and
        # tests that compare a resumed run with a reference need a reply to depend on its request alone.
        gen["stages"][stage].pop("frequency_penalty", None)
    # Replies this short are often cut off, and a 135M teacher often restates the question:
    # tests of the pipeline keep those rows (the filter tests turn the checks on).
    checks = gen.setdefault("filters", {}).setdefault("checks", {})
    checks["truncated"] = generation.pop("drop_truncated", False)
    checks["restated_question"] = generation.pop("drop_restated", False)
    for key, value in generation.items():
        gen[key] = value
    dump(doc, file)


@pytest.fixture
def make_project(tmp_path):
    """A fresh example project in tmp_path, tuned for speed."""

    def make(name: str = "proj", **generation) -> Path:
        folder = tmp_path / name
        init_project(folder)
        tune_project(folder, **generation)
        return folder

    return make


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    from syllabus.backends.embedded import embedded_model_dir

    return embedded_model_dir()


@pytest.fixture(scope="session")
def shrunk(embedded_dir, tmp_path_factory) -> Path:
    """The embedded model cut to 4 of its 30 layers (`students shrink`): a real, fast, weaker student
    with the teacher's tokenizer, made once per test process."""
    folder = tmp_path_factory.mktemp("shrunk") / "small"
    done = run_cli("students", "shrink", "--layers", "4", "--out", str(folder), cwd=folder.parent)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    from syllabus.backends.embedded import gguf_file

    return gguf_file()


class LlamaServer:
    """A running server: its base URL, and its access log to count the requests it received."""

    def __init__(self, base_url: str, log: Path):
        self.base_url = base_url
        self.log = log

    def chat_requests(self) -> int:
        return self.log.read_text(errors="replace").count("POST /v1/chat/completions")

    def wait_idle(self, quiet: float = 3.0, limit: float = 120.0) -> int:
        """Wait until no request has been answered for `quiet` seconds; the count then."""
        deadline = time.time() + limit
        last, since = self.chat_requests(), time.time()
        while time.time() < deadline:
            time.sleep(0.5)
            now = self.chat_requests()
            if now != last:
                last, since = now, time.time()
            elif time.time() - since >= quiet:
                break
        return last


def _serve_gguf(gguf_path: Path, folder: Path, *extra: str):
    """Start llama.cpp's OpenAI-compatible server on the GGUF; yields the LlamaServer, then stops it."""
    try:
        import llama_cpp.server  # noqa: F401
    except Exception as exc:  # pragma: no cover - CI installs it through `make test`
        if os.environ.get("CI"):
            raise
        pytest.skip(f"llama-cpp-python[server] not installed ({exc}); `make test` installs it")
    port = free_port()
    log = folder / "server.log"
    handle = open(log, "wb")  # noqa: SIM115 (the server writes to it until the fixture ends)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf_path),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            str(min(2, _threads_per_worker())),
            "--n_ctx",
            "2048",
            *extra,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{base}/models", timeout=2).read()
            break
        except OSError:
            if time.time() > deadline:
                process.kill()
                raise RuntimeError(f"llama.cpp server did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.5)
    yield LlamaServer(base, log)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    handle.close()


@pytest.fixture(scope="session")
def llama_server(gguf_path, tmp_path_factory):
    """A real OpenAI-compatible server (llama.cpp) serving the embedded GGUF on 127.0.0.1.

    It keeps the logits of every prompt token (`--logits_all True`, the default of llama-cpp-python
    0.3.x, named so an older default cannot change it), so /v1/completions with echo + logprobs scores.
    """
    yield from _serve_gguf(gguf_path, tmp_path_factory.mktemp("llama"), "--logits_all", "True")


@pytest.fixture(scope="session")
def llama_server_last_logits(gguf_path, tmp_path_factory):
    """The same server keeping only the last token's logits: it cannot return prompt log-probabilities."""
    yield from _serve_gguf(gguf_path, tmp_path_factory.mktemp("llama-last"), "--logits_all", "False")


def cli_env(env: dict | None = None) -> dict:
    """The environment of a `python -m syllabus` subprocess: this checkout's package comes first."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "COLUMNS": "200", "PYTHONPATH": path, **(env or {})}


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 900):
    """Run `python -m syllabus ARGS` as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "syllabus", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
    )


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory, embedded_dir):
    """One small generation on the embedded model, shared by the tests that read its output."""
    folder = tmp_path_factory.mktemp("embedded") / "proj"
    init_project(folder)
    tune_project(folder)
    result = run_cli("generate", "--project", str(folder), "--nodes", "mathematics/linear-algebra", "--questions", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    (folder / "generate.stderr").write_text(result.stderr)  # what a log of the run shows (test_cli_generate.py)
    return folder


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def small_example(folder: Path, *, exam: int = 2, dev: int = 1, test: int = 1) -> Path:
    """The distill example with `exam`/`dev`/`test` items per node, one training step a model, and
    short teacher replies."""
    init_project(folder, example="distill")
    rows = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    limits, taken, kept = {"exam": exam, "dev": dev, "test": test}, Counter(), []
    for row in rows:
        if taken[row["node"], row["split"]] < limits[row["split"]]:
            taken[row["node"], row["split"]] += 1
            kept.append(row)
    write_jsonl(folder / "items.jsonl", kept)
    config = folder / "syllabus.yaml"
    text = (
        config.read_text()
        .replace("  max_steps: -1 ", "  max_steps: 1 ")
        .replace("  save_steps: 10 ", "  save_steps: 1 ")
    )
    # Shorter syllabi and questions (a test reads counts and provenance, not their quality); answers
    # keep their length, since the truncation filter would drop most of them.
    for stage, (was, now) in {"syllabus": (300, 120), "question": (96, 48)}.items():
        line = f"    {stage}: {{temperature"
        start = text.index(line)
        end = text.index("}", start)
        text = text[:start] + text[start:end].replace(f"max_tokens: {was}", f"max_tokens: {now}") + text[end:]
    config.write_text(text)
    return folder


@pytest.fixture(scope="session")
def two_rounds(tmp_path_factory, embedded_dir):
    """Two real rounds of `syllabus distill` on the small example, run once for every test that reads them."""
    folder = small_example(tmp_path_factory.mktemp("distill") / "p")
    done = run_cli("distill", "--rounds", "2", "--budget", "6", cwd=folder, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, done
