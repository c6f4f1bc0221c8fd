"""A hostile teacher server (issue 10): replies a real server sends only when broken or malicious.

`fault_server` (tests/fault_server.py) sends them on 127.0.0.1: a lone surrogate in the
text, usage counts of 2**64 - 1, bodies of many MB, gzip bombs, a body that trickles or
never ends, the caller's key reflected inside a normal reply, and error bodies that echo
the request's credentials. The promises checked here, through the backend and through
`syllabus generate` / `syllabus teacher check` as a user runs them:

- none of these ends a run: each is a clean reply or one failed request with a reason;
- memory stays bounded by teacher.max_response_bytes, and teacher.timeout is a deadline
  for each try, not a per-read timeout;
- the API key and credentials inside --base-url reach no output, file, file name or log.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli
from fault_server import MODEL, Fault, FaultServer, fault_server  # noqa: F401  (the fixture)
from test_faults import (
    NODE,
    QUESTIONS,
    SUBJECTS_REQUEST,
    fault_project,
    rows_of,
    summary_of,
)

from syllabus.backends import make_backend, parse_teacher_spec
from syllabus.backends.base import RequestFailed
from syllabus.backends.openai_backend import OpenAIBackend
from syllabus.backends.redact import redact_url
from syllabus.errors import UserError
from syllabus.generators.cache import RequestCache
from syllabus.generators.teacher import CachedTeacher
from syllabus.project import Project

KEY = "sk-PLANTED-hostile-0123456789abcdef"
URL_KEY = "URLSECRET-4f9a7c1e"
MiB = 2**20


# --- helpers -------------------------------------------------------------------------


def backend_for(server: FaultServer, *, url: str | None = None, **settings) -> OpenAIBackend:
    options = {"timeout": 2, "max_retries": 0, **settings}
    return OpenAIBackend(model=MODEL, base_urls=[url or server.base_url], api_key=KEY, **options)


def complete(server: FaultServer, **settings):
    """One request through the real backend: the Completion, or RequestFailed raised."""

    async def main():
        backend = backend_for(server, **settings)
        try:
            return await backend.complete(SUBJECTS_REQUEST)
        finally:
            await backend.aclose()

    return asyncio.run(main())


def failure(server: FaultServer, **settings) -> RequestFailed:
    with pytest.raises(RequestFailed) as failed:
        complete(server, **settings)
    return failed.value


def generate(project: Path, base_url: str, timeout: float = 240):
    return run_cli(
        "generate",
        "--project",
        str(project),
        "--teacher",
        f"openai:{MODEL}",
        "--base-url",
        base_url,
        "--nodes",
        NODE,
        "--questions",
        QUESTIONS,
        env={"OPENAI_API_KEY": KEY},
        timeout=timeout,
    )


def generated_with(fault_server, tmp_path: Path, fault: Fault):
    """(server, project, result) after a whole `generate` against a teacher sending `fault`, which must
    have ended well: the run survived what the server sent."""
    server = fault_server()
    server.set_faults(fault)
    project = fault_project(tmp_path / "proj")
    result = generate(project, server.base_url)
    assert result.returncode == 0, result.stdout + result.stderr
    return server, project, result


def teacher_check(base_url: str):
    return run_cli(
        "teacher",
        "check",
        "--teacher",
        f"openai:{MODEL}",
        "--base-url",
        base_url,
        env={"OPENAI_API_KEY": KEY},
        timeout=120,
    )


def token(record) -> str:
    """The secret the client sent: a bearer key, or the Basic credentials of URL user info."""
    return record.authorization.split(" ", 1)[-1]


def reflect(text: str, record) -> str:
    """The key the request carried, put back inside the reply: into the first subject's name
    (so into a file name), a session title, a question and an answer."""
    first, _, rest = text.partition("\n")
    head, bar, tail = first.partition(" |")
    return f"{head} {token(record)}{bar}{tail}\n{rest}" if bar else f"{first} {token(record)}\n{rest}"


def leaks(secrets: list[str], result, project: Path) -> list[str]:
    """Where any of `secrets` shows: the command's output, any file's bytes or any path."""
    found = []
    output = result.stdout + result.stderr
    for secret in secrets:
        if secret in output:
            found.append(f"output: {secret}")
        for path in project.rglob("*"):
            if secret.lower() in str(path.relative_to(project)).lower():
                found.append(f"path {path}")
            if path.is_file() and secret.encode() in path.read_bytes():
                found.append(f"file {path}")
    return found


def answers_in_cache(project: Path) -> list[tuple]:
    with sqlite3.connect(project / "runs/default/cache.sqlite") as conn:
        return conn.execute(
            "SELECT stage, text, finish_reason, prompt_tokens, completion_tokens FROM answers"
        ).fetchall()


# --- 4: a lone surrogate ------------------------------------------------------------------


def test_lone_surrogate_in_a_reply_is_replaced_and_cached(fault_server, tmp_path):
    server = fault_server()
    server.set_faults(Fault("reply", text="Vector \ud800Spaces | undergraduate | bases", finish_reason="st\udfffop"))
    cache = RequestCache(tmp_path / "cache.sqlite")

    async def ask():
        backend = backend_for(server)
        try:
            return await CachedTeacher(backend, cache).ask("subjects", SUBJECTS_REQUEST, "v1")
        finally:
            await backend.aclose()

    try:
        reply = asyncio.run(ask())
        assert reply.text == "Vector \ufffdSpaces | undergraduate | bases" and reply.finish_reason == "st\ufffdop"
        assert cache.count() == 1  # stored: UTF-8 could encode it
        assert cache._db.execute("SELECT text FROM answers").fetchone()[0] == reply.text
    finally:
        cache.close()


def test_lone_surrogate_in_an_error_body_is_recorded(fault_server, tmp_path):
    server = fault_server()
    server.set_faults(Fault("500", text="overloaded \ud83d"))
    failed = failure(server)
    assert failed.reason == "HTTP 500" and "overloaded \ufffd" in failed.detail
    cache = RequestCache(tmp_path / "cache.sqlite")
    try:
        cache.record_failure("k", "subjects", failed.reason, failed.detail)  # raised UnicodeEncodeError before
    finally:
        cache.close()


def test_lone_surrogate_does_not_end_a_run(fault_server, tmp_path):
    _, project, _ = generated_with(
        fault_server,
        tmp_path,
        Fault("reply", stage="answer", text=lambda text, r: text.replace("Start", "Start \ud800", 1)),
    )
    rows = rows_of(project)
    assert len(rows) == int(QUESTIONS)
    assert all("Start \ufffd" in row["completion"][0]["content"] for row in rows)
    assert (project / "runs/default/dataset").is_dir() and (project / "runs/default/summary.json").is_file()


# --- 5: usage counts past 64 bits -----------------------------------------------------------

HUGE_USAGE = {"prompt_tokens": 2**64 - 1, "completion_tokens": 2**64 - 1, "total_tokens": 2**65 - 2}


@pytest.mark.parametrize(
    "usage",
    [HUGE_USAGE, {"prompt_tokens": -5, "completion_tokens": True}, {"prompt_tokens": "12", "completion_tokens": 1.5}],
    ids=["2**64-1", "negative-bool", "str-float"],
)
def test_implausible_usage_counts_are_unknown(fault_server, tmp_path, usage):
    server = fault_server()
    server.set_faults(Fault("reply", usage=usage))
    reply = complete(server)
    assert reply.text and (reply.prompt_tokens, reply.completion_tokens) == (0, 0)
    cache = RequestCache(tmp_path / "cache.sqlite")
    try:
        cache.put("k", "subjects", reply)  # OverflowError before: SQLite holds at most 2**63 - 1
        assert cache.get("k").prompt_tokens == 0
    finally:
        cache.close()


def test_usage_count_of_2_64_does_not_end_a_run(fault_server, tmp_path):
    _, project, _ = generated_with(fault_server, tmp_path, Fault("reply", usage=HUGE_USAGE))
    summary = summary_of(project)  # written (it was not, before)
    assert summary["rows"] == int(QUESTIONS)
    assert all(s["prompt_tokens"] == s["completion_tokens"] == 0 for s in summary["stages"].values())


# --- 6: bodies too large ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, received",
    [
        (Fault("huge", size=100 * MiB), "announced"),  # Content-Length says so: nothing read
        (Fault("huge", size=100 * MiB, chunked=True), "once decoded"),  # no length: counted as it comes
        (Fault("gzip", size=200 * MiB), "once decoded"),  # ~200 KB on the wire, 200 MB inflated
    ],
    ids=["content-length", "chunked", "gzip-bomb"],
)
def test_too_large_body_fails_once_with_bounded_memory(fault_server, fault, received):
    server = fault_server()
    server.set_faults(fault)
    if fault.kind == "gzip":
        server.gzip_bomb({"messages": SUBJECTS_REQUEST.message_dicts()}, fault.size)  # made before measuring
    tracemalloc.start()
    try:
        failed = failure(server, max_response_bytes=MiB, max_retries=2, timeout=30)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert failed.reason == "response too large" and received in failed.detail, failed
    assert server.chat_count() == 1  # not retried: the same server sends the same body again
    assert peak < 40 * MiB, f"peak {peak / MiB:.0f} MiB for a 1 MiB cap"
    server.heal()
    assert complete(server, max_response_bytes=MiB).text  # the next request is answered


def test_gzip_reply_within_the_cap_is_decoded(fault_server):
    server = fault_server()
    server.set_faults(Fault("gzip"))
    assert complete(server).text.startswith("Vector Spaces")


def test_huge_model_listing_is_a_clear_error(fault_server):
    server = fault_server()
    server.models_fault = "huge"

    async def main():
        backend = backend_for(server, max_response_bytes=MiB)
        try:
            return await backend.preflight()
        finally:
            await backend.aclose()

    with pytest.raises(UserError, match="model listing is too large") as error:
        asyncio.run(main())
    assert server.base_url in str(error.value) and "max_response_bytes" in error.value.hint


def test_too_large_replies_fail_with_a_reason_and_the_run_goes_on(fault_server, tmp_path):
    server = fault_server()
    server.set_faults(
        Fault("huge", stage="answer", nth=1, size=4 * MiB), Fault("gzip", stage="answer", nth=2, size=64 * MiB)
    )
    project = fault_project(tmp_path / "proj", max_response_bytes=256 * 2**10, max_retries=2)
    result = generate(project, server.base_url)
    assert result.returncode == 1, result.stdout + result.stderr  # requests failed: exit 1, with a summary
    assert "Traceback" not in result.stderr
    summary = summary_of(project)
    assert summary["stages"]["answer"]["failed"] == {"response too large": 2}
    assert summary["rows"] == int(QUESTIONS) - 2 == len(rows_of(project))
    tries = Counter(json.dumps(r.body, sort_keys=True) for r in server.chat if r.fault)
    assert sorted(tries.values()) == [1, 1]


@pytest.mark.parametrize(
    "value, bound",
    [
        (0, "greater than or equal to 65536"),
        (1000, "greater than or equal to 65536"),
        (2**31, "less than or equal to 1073741824"),
    ],
)
def test_max_response_bytes_is_range_checked(tmp_path, value, bound):
    (tmp_path / "syllabus.yaml").write_text(f"teacher:\n  backend: openai\n  max_response_bytes: {value}\n")
    with pytest.raises(UserError) as error:
        Project.load(tmp_path)
    assert error.value.where.endswith("syllabus.yaml:3") and "teacher.max_response_bytes" in error.value.message
    assert bound in error.value.message


def test_max_response_bytes_reaches_the_client(fault_server, tmp_path):
    """The setting as written in syllabus.yaml bounds the backend that `generate` builds."""
    server = fault_server()
    server.set_faults(Fault("huge", size=200 * 2**10))
    (tmp_path / "syllabus.yaml").write_text(
        "teacher:\n  backend: openai\n  model: fault-model\n"
        f"  base_url: {server.base_url}\n  max_response_bytes: 131072\n"
    )
    project = Project.load(tmp_path)
    backend = make_backend(parse_teacher_spec(None, project.config.teacher), project.config.teacher)

    async def main():
        try:
            return await backend.complete(SUBJECTS_REQUEST)
        finally:
            await backend.aclose()

    with pytest.raises(RequestFailed, match="more than 131072"):
        asyncio.run(main())


# --- 7: a deadline per try ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault("trickle", interval=0.2, chunk=1), Fault("endless", interval=0.05, chunk=16)],
    ids=["trickle", "endless-chunked"],
)
def test_slow_body_is_cut_at_the_deadline(fault_server, fault):
    """Each byte arrives well within the 1 s timeout, the body never in time: before, one try
    took as long as the server liked (a 300-byte body at 5 bytes a second is a minute)."""
    server = fault_server()
    server.set_faults(fault)
    start = time.monotonic()
    failed = failure(server, timeout=1, max_retries=1)
    elapsed = time.monotonic() - start
    assert failed.reason == "timeout"
    assert server.chat_count() == 2  # the try, and its one retry
    assert elapsed < 2 * 1 + 1.5, f"{elapsed:.1f} s for two tries of 1 s"  # + the client's backoff


def test_slow_reply_within_the_deadline_arrives(fault_server):
    server = fault_server()
    server.set_faults(Fault("trickle", interval=0.02, chunk=40))  # ~300 bytes in ~0.2 s
    assert complete(server, timeout=3).text.startswith("Vector Spaces")


# --- 8: the key reflected inside a normal reply -------------------------------------------------


def test_reflected_key_is_scrubbed_from_the_reply(fault_server):
    server = fault_server()
    server.set_faults(Fault("reply", text=reflect, finish_reason=f"stop {KEY}"))
    reply = complete(server)
    assert server.chat[0].authorization == f"Bearer {KEY}"
    assert KEY not in reply.text and "***" in reply.text and KEY not in reply.finish_reason
    assert reply.text.startswith("Vector Spaces")  # the rest of the reply is as sent


def test_reflected_key_reaches_no_cache_dataset_or_file_name(fault_server, tmp_path):
    server, project, result = generated_with(fault_server, tmp_path, Fault("reply", text=reflect))
    assert server.chat and all(r.authorization == f"Bearer {KEY}" for r in server.chat)  # each reply reflected it
    assert rows_of(project) and (project / "runs/default/dataset").is_dir()
    assert all("***" in text for _, text, *_ in answers_in_cache(project))
    assert list((project / "taxonomy").rglob("subjects")), "the subjects were written"
    assert leaks([KEY], result, project) == []


def test_reflected_key_is_not_shown_by_teacher_check(fault_server, tmp_path):
    server = fault_server()
    server.set_faults(Fault("reply", text=lambda text, r: f"Hello {token(r)}", model=lambda m, r: f"{m}-{token(r)}"))
    result = teacher_check(server.base_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.chat and KEY not in result.stdout + result.stderr
    assert "Hello ***" in result.stdout


# --- 13: credentials inside --base-url -------------------------------------------------------


def with_user_info(url: str) -> str:
    return url.replace("://", f"://user:{URL_KEY}@")


def test_redact_url():
    assert redact_url(f"http://user:{URL_KEY}@127.0.0.1:8000/v1") == "http://***@127.0.0.1:8000/v1"
    assert redact_url(f"https://h/v1?api-version=2024&key={URL_KEY}") == "https://h/v1?api-version=2024&key=***"
    assert redact_url("https://api.openai.com/v1") == "https://api.openai.com/v1"
    assert URL_KEY not in redact_url(f"user:{URL_KEY}@host/v1")


def test_base_url_credentials_reach_no_card_summary_message_or_file(fault_server, tmp_path):
    server = fault_server()
    server.set_faults(Fault("500", every=4))  # whose bodies echo the Authorization header
    url = with_user_info(server.base_url)
    project = fault_project(tmp_path / "proj", max_retries=0)
    result = generate(project, url)
    assert result.returncode == 1, result.stdout + result.stderr
    basic = base64.b64encode(f"user:{URL_KEY}".encode()).decode()
    assert server.chat and any(basic in r.authorization for r in server.chat)  # sent, and echoed by the 500s
    card = (project / "runs/default/README.md").read_text()
    assert redact_url(url) in card  # the command line, redacted
    assert leaks([URL_KEY, basic, KEY], result, project) == []

    server.stop()  # unreachable: the error names the server, without its credentials
    again = generate(project, url)
    assert again.returncode == 2, again.stdout + again.stderr
    assert "cannot reach the teacher server" in again.stderr and redact_url(url) in again.stderr
    assert URL_KEY not in again.stdout + again.stderr


def test_base_url_credentials_are_not_shown_by_teacher_check(fault_server):
    server = fault_server()
    ok = teacher_check(with_user_info(server.base_url))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "***@127.0.0.1" in ok.stdout and URL_KEY not in ok.stdout + ok.stderr
    # A key in the query: the SDK appends paths after it, the server answers 404 echoing the path.
    broken = teacher_check(f"{server.base_url}?key={URL_KEY}")
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "key=***" in broken.stderr and URL_KEY not in broken.stdout + broken.stderr


def test_base_url_credentials_are_redacted_in_the_http_logs(fault_server, caplog):
    server = fault_server()
    caplog.set_level(logging.DEBUG)

    async def main():
        backend = backend_for(server, url=with_user_info(server.base_url))
        try:
            await backend.preflight()
            return await backend.complete(SUBJECTS_REQUEST)
        finally:
            await backend.aclose()

    assert asyncio.run(main()).text
    logged = caplog.text
    assert "***@127.0.0.1" in logged  # the client logged the URL it requested...
    assert URL_KEY not in logged and KEY not in logged  # ... without the credentials
