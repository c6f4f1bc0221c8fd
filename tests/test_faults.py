"""Faults a teacher server can throw at a run, against a real HTTP server on 127.0.0.1.

`fault_server` (tests/fault_server.py) speaks the OpenAI chat-completions API and can be
told to refuse connections, rate-limit with Retry-After, fail with 500, hang, cut a
body short, send broken JSON or an empty reply. The promises checked here:

- a run never ends in a traceback: exit 2 with a message when the server cannot be
  reached at the start, exit 1 with a summary when requests failed during the run;
- failures are counted by reason in summary.json, and retries are bounded;
- a rerun against the healed server sends only the requests that had no answer, and
  the dataset then equals the one a healthy server gives: no row lost or twice;
- the API key reaches no output and no file, even when the server echoes it back.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli, tune_project
from fault_server import MODEL, Fault, FaultServer, fault_server  # noqa: F401  (the fixture)

from syllabus.backends.base import ChatRequest, RequestFailed
from syllabus.backends.openai_backend import OpenAIBackend
from syllabus.errors import UserError
from syllabus.generators.cache import RequestCache
from syllabus.generators.teacher import CachedTeacher
from syllabus.project import init_project
from syllabus.yamlio import dump, load

NODE = "mathematics/linear-algebra"
QUESTIONS = "8"
KEY = "sk-PLANTED-faults-0123456789abcdef"
SUBJECTS_REQUEST = ChatRequest.from_messages(
    [
        {"role": "system", "content": "You are an expert curriculum designer."},
        {"role": "user", "content": 'List 2 courses that teach the discipline "Linear Algebra".'},
    ],
    temperature=0.0,
    max_tokens=60,
)


# --- helpers -------------------------------------------------------------------------


def fault_project(folder: Path, **teacher) -> Path:
    """An example project tuned for speed, with few retries and a short timeout."""
    init_project(folder)
    tune_project(folder)
    file = folder / "syllabus.yaml"
    doc = load(file)
    doc["teacher"]["max_retries"] = teacher.pop("max_retries", 2)
    doc["teacher"]["timeout"] = teacher.pop("timeout", 2)
    for key, value in teacher.items():
        doc["teacher"][key] = value
    dump(doc, file)
    return folder


def generate(project: Path, server: FaultServer):
    return run_cli(
        "generate",
        "--project",
        str(project),
        "--teacher",
        f"openai:{MODEL}",
        "--base-url",
        server.base_url,
        "--nodes",
        NODE,
        "--questions",
        QUESTIONS,
        env={"OPENAI_API_KEY": KEY},
        timeout=180,
    )


def rows_of(project: Path) -> list[dict]:
    file = project / "runs/default/dataset.jsonl"
    return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []


def summary_of(project: Path) -> dict:
    return json.loads((project / "runs/default/summary.json").read_text())


def failed_by_stage(summary: dict) -> dict[str, dict[str, int]]:
    return {stage: s["failed"] for stage, s in summary["stages"].items() if s["failed"]}


def answered(summary: dict) -> int:
    return sum(s["answered"] for s in summary["stages"].values())


def cached_texts(project: Path) -> list[str]:
    with sqlite3.connect(project / "runs/default/cache.sqlite") as conn:
        return [row[0] for row in conn.execute("SELECT text FROM answers")]


def canon(body) -> str:
    return json.dumps(body, sort_keys=True)


def log_of(server: FaultServer) -> str:
    """The server's record, one line a chat request: for assertion messages."""
    t0 = server.chat[0].time if server.chat else 0
    return "\n".join(
        f"#{r.n} +{r.time - t0:.2f}s {r.stage} nth={r.stage_distinct} distinct={r.distinct} "
        f"try={r.attempt} fault={r.fault}"
        for r in server.chat
    )


def assert_clean(result, project: Path) -> None:
    """No traceback, and the planted key in no output and no file of the project."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert KEY not in output
    for file in project.rglob("*"):
        if file.is_file():
            assert KEY.encode() not in file.read_bytes(), file


def complete(server: FaultServer, request: ChatRequest = SUBJECTS_REQUEST, *, timeout: float = 2, max_retries: int = 2):
    """One request through the real OpenAI backend; returns the Completion or raises RequestFailed."""

    async def main():
        backend = OpenAIBackend(
            model=MODEL, base_urls=[server.base_url], api_key=KEY, timeout=timeout, max_retries=max_retries
        )
        try:
            return await backend.complete(request)
        finally:
            await backend.aclose()

    return asyncio.run(main())


def preflight(server: FaultServer) -> dict:
    """The backend's check before any work (model listing), as a run does it."""

    async def main():
        backend = OpenAIBackend(model=MODEL, base_urls=[server.base_url], api_key=KEY, max_retries=0)
        try:
            return await backend.preflight()
        finally:
            await backend.aclose()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The dataset a healthy server gives, and the request bodies it took."""
    server = FaultServer().start()
    try:
        project = fault_project(tmp_path_factory.mktemp("reference") / "proj")
        result = generate(project, server)
        assert result.returncode == 0, result.stdout + result.stderr
        rows = rows_of(project)
        bodies = [canon(r.body) for r in server.chat]
        answers_kept = summary_of(project)["stages"]["answer"]["kept"]
    finally:
        server.stop()
    assert answers_kept == int(QUESTIONS) and rows  # every reply parsed: the fixture speaks each format
    assert len(set(bodies)) == len(bodies), "the fixture's replies must make every request distinct"
    return {"rows": rows, "bodies": set(bodies), "sent": len(bodies)}


# --- the backend, one fault at a time ---------------------------------------------------


def test_429_waits_as_retry_after_says(fault_server):
    server = fault_server()
    server.set_faults(Fault("429", first=2, retry_after=1))
    reply = complete(server, max_retries=2)
    assert reply.text.startswith("Vector Spaces") and reply.completion_tokens > 0
    assert [r.fault for r in server.chat] == ["429", "429", None]
    gaps = server.gaps()
    assert all(gap >= 1.0 for gap in gaps), gaps  # the client's own backoff would be <= 0.5 s first


def test_500_retries_are_bounded(fault_server):
    server = fault_server()
    server.set_faults(Fault("500", first=3))
    with pytest.raises(RequestFailed) as failed:
        complete(server, max_retries=2)
    assert failed.value.reason == "HTTP 500"
    assert server.chat_count() == 3  # the first try and max_retries=2 retries, no more
    assert complete(server, max_retries=2).text  # the 4th request is past the fault: answered
    assert server.chat_count() == 4


def test_hang_past_the_timeout_fails_with_reason_timeout(fault_server):
    server = fault_server()
    server.set_faults(Fault("hang", first=1))
    with pytest.raises(RequestFailed) as failed:
        complete(server, timeout=0.5, max_retries=0)
    assert failed.value.reason == "timeout"
    assert complete(server, timeout=2, max_retries=0).text  # the server and the client go on
    assert server.chat_count() == 2


@pytest.mark.parametrize(
    "fault, reason, received",
    [
        (Fault("cut"), "connection error", 2),  # retried by the client, then failed
        (Fault("malformed"), "malformed response", 1),
        (Fault("bad-shape"), "malformed response", 1),
        (Fault("bad-shape", payload={"choices": "oops"}), "malformed response", 1),
        (Fault("bad-shape", payload={"choices": [{"message": {"content": 5}}]}), "malformed response", 1),
        (Fault("bad-shape", payload={"error": {"message": "overloaded"}}), "malformed response", 1),
        (Fault("bad-shape", payload=[1, 2]), "malformed response", 1),
        (Fault("empty"), "empty reply", 1),
        (Fault("null"), "empty reply", 1),
    ],
    ids=["cut", "malformed", "no-message", "choices-str", "content-int", "error-200", "list", "empty", "null"],
)
def test_broken_replies_fail_with_a_reason(fault_server, fault, reason, received):
    server = fault_server()
    server.set_faults(fault)
    with pytest.raises(RequestFailed) as failed:
        complete(server, max_retries=1)
    assert failed.value.reason == reason
    assert server.chat_count() == received


def test_refused_connections(fault_server):
    server = fault_server()
    server.stop()  # the port is closed now
    with pytest.raises(RequestFailed) as failed:
        complete(server, max_retries=0)
    assert failed.value.reason == "connection error"
    with pytest.raises(UserError, match="cannot reach the teacher server"):
        preflight(server)
    server.start()  # the same port again
    assert complete(server, max_retries=0).text
    assert server.chat_count() == 1  # nothing reached the server while it was down


@pytest.mark.parametrize(
    "broken, message",
    [
        ("malformed", "not an OpenAI model list"),
        ("html", "not an OpenAI model list"),
        ("500", "answered 500 to a model listing"),
    ],
)
def test_broken_model_listing_is_a_clear_error_at_the_start(fault_server, broken, message):
    server = fault_server()
    server.models_fault = broken
    with pytest.raises(UserError, match=message) as error:
        preflight(server)
    assert server.base_url in str(error.value) and KEY not in str(error.value)


def test_echoed_api_key_is_redacted(fault_server):
    server = fault_server()
    server.set_faults(Fault("500"))
    with pytest.raises(RequestFailed) as failed:
        complete(server, max_retries=0)
    assert server.chat[0].authorization == f"Bearer {KEY}"  # the server saw the key and echoed it
    assert "Bearer ***" in failed.value.detail and KEY not in str(failed.value)


def test_empty_reply_is_not_cached_and_is_asked_again(fault_server, tmp_path):
    """An empty reply is a failed request (retried by the next run), never a cached empty answer."""
    server = fault_server()
    server.set_faults(Fault("empty"))
    cache = RequestCache(tmp_path / "cache.sqlite")

    async def ask():
        backend = OpenAIBackend(model=MODEL, base_urls=[server.base_url], api_key=KEY, timeout=2, max_retries=0)
        teacher = CachedTeacher(backend, cache)
        try:
            return await teacher.ask("subjects", SUBJECTS_REQUEST, "v1"), teacher.stage("subjects")
        finally:
            await backend.aclose()

    try:
        reply, stats = asyncio.run(ask())
        assert reply is None and stats.failed == Counter({"empty reply": 1}) and stats.answered == 0
        assert cache.count() == 0
        assert cache._db.execute("SELECT reason FROM failures").fetchall() == [("empty reply",)]
        server.heal()
        reply, stats = asyncio.run(ask())
        assert reply is not None and reply.text and stats.answered == 1
        assert cache.count() == 1 and not cache._db.execute("SELECT * FROM failures").fetchall()
    finally:
        cache.close()
    assert server.chat_count() == 2


# --- whole runs through the CLI ---------------------------------------------------------


def test_unreachable_server_stops_before_any_work(fault_server, tmp_path):
    server = fault_server()
    server.stop()
    project = fault_project(tmp_path / "proj")
    result = generate(project, server)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot reach the teacher server" in result.stderr and server.base_url in result.stderr
    assert not (project / "runs/default/dataset").exists()
    assert not list((project / "taxonomy").rglob("subjects"))
    assert_clean(result, project)


# What each fault becomes in the summary, and whether the client retries it.
REASON = {
    "500": "HTTP 500",
    "hang": "timeout",
    "cut": "connection error",
    "malformed": "malformed response",
    "bad-shape": "malformed response",
    "empty": "empty reply",
    "null": "empty reply",
}
RETRIED = {"500", "hang", "cut"}


def test_faulty_server_then_healed_resumes_exactly(fault_server, tmp_path, reference):
    """Every 3rd request fails for good, others hang, are cut, broken or empty; then the server heals.

    (Null content and other broken shapes take the same paths: see test_broken_replies_fail_with_a_reason.)
    """
    max_retries = 1
    server = fault_server()
    server.set_faults(  # the first rule that matches a request decides
        Fault("429", first=1, retry_after=1),  # the subjects request: waits as told, then is answered
        Fault("hang", stage="question", nth=1),  # past the 2 s timeout, on every try
        Fault("malformed", stage="answer", nth=1),
        Fault("cut", stage="answer", nth=2),
        Fault("empty", stage="answer", nth=3),
        Fault("500", every=3),  # every 3rd distinct request, on each of its tries
    )
    project = fault_project(tmp_path / "proj", max_retries=max_retries, timeout=2)

    first = generate(project, server)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "Generation summary" in first.stdout and "request(s) failed" in first.stderr
    assert_clean(first, project)
    records = server.chat
    assert all(r.authorization == f"Bearer {KEY}" for r in records)  # the key was sent (and 500s echo it)

    # Retry-After honoured: the 429'd request came back no sooner than told.
    assert [r.fault for r in records[:2]] == ["429", None] and records[1].time - records[0].time >= 1.0
    # Each broken request failed for good after a bounded number of tries...
    kinds: dict[str, set] = {}
    tries: Counter = Counter()
    stage_of_body: dict[str, str] = {}
    for r in records:
        if r.fault and r.fault != "429":
            kinds.setdefault(canon(r.body), set()).add(r.fault)
            tries[canon(r.body)] += 1
            stage_of_body[canon(r.body)] = r.stage
    assert set().union(*kinds.values()) == {"hang", "malformed", "cut", "empty", "500"}, log_of(server)
    for body, kind in kinds.items():
        (kind,) = kind
        assert tries[body] == (max_retries + 1 if kind in RETRIED else 1), (kind, log_of(server))
    # ... and is counted by its reason in summary.json, under its stage.
    expected: dict[str, Counter] = {}
    for body, (kind,) in kinds.items():
        expected.setdefault(stage_of_body[body], Counter())[REASON[kind]] += 1
    summary = summary_of(project)
    assert failed_by_stage(summary) == {stage: dict(c) for stage, c in expected.items()}, log_of(server)
    assert summary["failed_requests"] == len(kinds)
    # The run went on past the hung request, and what it wrote is final.
    hung = min(r.time for r in records if r.fault == "hang")
    assert any(r.fault is None and r.time > hung for r in records)
    assert all(row in reference["rows"] for row in rows_of(project))
    assert all(text.strip() for text in cached_texts(project))  # no empty reply was cached
    answered_bodies = {canon(r.body) for r in records if r.fault is None}

    server.heal()
    mark = server.mark()
    second = generate(project, server)
    assert second.returncode == 0, second.stdout + second.stderr
    assert_clean(second, project)
    resent = [canon(r.body) for r in server.chat_since(mark)]
    # Only the requests that had no answer (the failed ones and those that waited on them), each once.
    assert len(resent) == len(set(resent)) == reference["sent"] - answered(summary), log_of(server)
    assert set(resent) == reference["bodies"] - answered_bodies
    assert answered(summary_of(project)) == len(resent)
    assert rows_of(project) == reference["rows"]  # no row lost, none twice


def test_server_dying_mid_run_then_restarted(fault_server, tmp_path, reference):
    server = fault_server()
    server.set_faults(Fault("die", stage="question", nth=3))  # stops listening, drops every connection
    project = fault_project(tmp_path / "proj", max_retries=1)

    first = generate(project, server)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "Generation summary" in first.stdout and "request(s) failed" in first.stderr
    assert_clean(first, project)
    summary = summary_of(project)
    reasons = Counter()
    for stage_reasons in failed_by_stage(summary).values():
        reasons.update(stage_reasons)
    assert set(reasons) == {"connection error"} and sum(reasons.values()) == summary["failed_requests"] >= 1
    assert len(cached_texts(project)) == answered(summary)
    assert all(row in reference["rows"] for row in rows_of(project))

    server.heal()
    server.start()  # back on the same port, healthy
    mark = server.mark()
    second = generate(project, server)
    assert second.returncode == 0, second.stdout + second.stderr
    assert_clean(second, project)
    resent = [canon(r.body) for r in server.chat_since(mark)]
    assert len(resent) == len(set(resent)) == reference["sent"] - answered(summary), log_of(server)
    assert rows_of(project) == reference["rows"]


def test_requests_are_spread_across_several_base_urls(fault_server):
    """A fleet of servers: --base-url repeated spreads the requests round robin."""
    first, second = fault_server(), fault_server()

    async def main():
        backend = OpenAIBackend(
            model=MODEL, base_urls=[first.base_url, second.base_url], api_key=KEY, timeout=2, max_retries=0
        )
        try:
            requests = [ChatRequest(SUBJECTS_REQUEST.messages, sample_index=i) for i in range(6)]
            return await asyncio.gather(*(backend.complete(r) for r in requests))
        finally:
            await backend.aclose()

    replies = asyncio.run(main())
    assert len(replies) == 6 and all(r.text for r in replies)
    assert first.chat_count() == second.chat_count() == 3


def test_key_from_a_key_file_reaches_the_server_and_no_file(fault_server, tmp_path):
    """teacher.api_key_file (outside the project): the key is sent, and although the server
    echoes it in 500 bodies, it reaches no output, run file, card or cache."""
    server = fault_server()
    server.set_faults(Fault("500", every=4))
    key_file = tmp_path / "secrets" / "key"
    key_file.parent.mkdir()
    key_file.write_text(KEY + "\n")
    project = fault_project(tmp_path / "proj", max_retries=0, api_key_file=str(key_file), api_key_env="NO_SUCH_VAR")
    result = run_cli(
        "generate",
        "--project",
        str(project),
        "--teacher",
        f"openai:{MODEL}",
        "--base-url",
        server.base_url,
        "--nodes",
        NODE,
        "--questions",
        QUESTIONS,
        timeout=180,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # the 500s failed for good
    assert server.chat and all(r.authorization == f"Bearer {KEY}" for r in server.chat)
    assert (project / "runs/default/summary.json").is_file()
    assert_clean(result, project)
