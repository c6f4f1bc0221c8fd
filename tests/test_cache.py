"""The request cache (the resume mechanism) and the cached teacher in front of a backend."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_cli

from syllabus.backends.base import ChatRequest, Completion, RequestFailed
from syllabus.generators.cache import RequestCache, request_key
from syllabus.generators.teacher import CachedTeacher

MESSAGES = (("system", "You are a teacher."), ("user", "Write one question about velocity."))
BASE = dict(backend_kind="openai", model="gpt-x", request=ChatRequest(MESSAGES), template_version="abc123")


def key(**changes) -> str:
    args = {**BASE, **changes}
    return request_key(args["backend_kind"], args["model"], args["request"], args["template_version"])


def test_request_key_is_stable_for_equal_requests():
    same = ChatRequest.from_messages([{"role": r, "content": c} for r, c in MESSAGES])
    assert key() == key() == key(request=same)
    assert len(key()) == 64


@pytest.mark.parametrize(
    "changes",
    [
        {"backend_kind": "local"},
        {"model": "gpt-y"},
        {"template_version": "abc124"},
        {"request": ChatRequest((*MESSAGES[:1], ("user", "Write one question about velocity!")))},
        {"request": ChatRequest((("user", MESSAGES[0][1]), MESSAGES[1]))},  # same text, other role
        {"request": ChatRequest(MESSAGES[1:])},
        {"request": ChatRequest(MESSAGES, temperature=0.8)},
        {"request": ChatRequest(MESSAGES, top_p=0.9)},
        {"request": ChatRequest(MESSAGES, max_tokens=257)},
        {"request": ChatRequest(MESSAGES, sample_index=1)},
        {"request": ChatRequest(MESSAGES, frequency_penalty=0.5)},
    ],
)
def test_request_key_changes_with_everything_that_determines_the_answer(changes):
    assert key(**changes) != key()


def test_a_frequency_penalty_of_zero_leaves_the_key_as_older_builds_made_it():
    assert ChatRequest(MESSAGES, frequency_penalty=0.0).sampling() == {
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 256,
    }
    assert key(request=ChatRequest(MESSAGES, frequency_penalty=0.0)) == key()


@pytest.mark.parametrize(
    "messages",
    [
        MESSAGES,
        (("user", 'Say "messages":0 and \\ then \u00e9\u2028\U0001f600\n'),),
        (("system", ""), ("user", "\x00\t")),
    ],
)
def test_a_request_encodes_its_messages_once_for_the_body_and_the_cache_record(messages):
    request = ChatRequest(messages, temperature=0.2)
    assert json.loads(request.messages_json) == request.message_dicts()
    asked = json.loads(request.json_with({"model": "m", **request.sampling()}))
    assert asked == {"messages": request.message_dicts(), "model": "m", **request.sampling()}
    assert list(asked) == ["messages", "model", "temperature", "top_p", "max_tokens"]
    assert json.loads(request.json_with({})) == {"messages": request.message_dicts()}


def test_request_keys_are_all_different():
    variants = [key(request=ChatRequest(MESSAGES, sample_index=i)) for i in range(50)]
    assert len(set(variants)) == 50


def test_put_get_and_count(tmp_path):
    cache = RequestCache(tmp_path / "cache.sqlite")
    assert cache.get("k1") is None and cache.count() == 0
    cache.put("k1", "question", Completion("Why?", "length", 10, 3))
    got = cache.get("k1")
    assert (got.text, got.finish_reason, got.prompt_tokens, got.completion_tokens) == ("Why?", "length", 10, 3)
    cache.put("k1", "question", Completion("Why not?"))  # a second answer replaces the first
    assert cache.get("k1").text == "Why not?" and cache.count() == 1
    cache.close()


def test_answers_survive_closing_and_reopening(tmp_path):
    path = tmp_path / "nested" / "run" / "cache.sqlite"  # parent folders are created
    cache = RequestCache(path)
    for i in range(5):
        cache.put(f"k{i}", "answer", Completion(f"answer {i} ✓", "stop", i, 2 * i))
    cache.close()

    reopened = RequestCache(path)
    assert reopened.count() == 5
    got = reopened.get("k3")
    assert (got.text, got.finish_reason, got.prompt_tokens, got.completion_tokens) == ("answer 3 ✓", "stop", 3, 6)
    assert reopened.get("k9") is None
    reopened.close()


def test_an_answer_is_visible_to_another_connection_at_once(tmp_path):
    path = tmp_path / "cache.sqlite"
    writer = RequestCache(path)
    writer.put("k", "subjects", Completion("Physics | undergraduate | motion"))
    reader = RequestCache(path)  # as after a kill -9: nothing was closed
    assert reader.get("k").text == "Physics | undergraduate | motion"
    writer.close()
    reader.close()


def failures(path):
    with sqlite3.connect(path) as db:
        return {row[0]: row[1:] for row in db.execute("SELECT key, stage, reason, detail, attempts FROM failures")}


def test_record_failure_counts_attempts_and_put_clears_it(tmp_path):
    path = tmp_path / "cache.sqlite"
    cache = RequestCache(path)
    cache.record_failure("k", "answer", "timeout", "no reply in 120 s")
    cache.record_failure("k", "answer", "server_error", "HTTP 500")
    cache.record_failure("other", "question", "timeout", "")
    cache.close()
    assert failures(path) == {"k": ("answer", "server_error", "HTTP 500", 2), "other": ("question", "timeout", "", 1)}

    cache = RequestCache(path)
    cache.record_failure("k", "answer", "timeout", "again")  # attempts survive a reopen
    assert failures(path)["k"][3] == 3
    cache.put("k", "answer", Completion("42"))
    assert "k" not in failures(path) and "other" in failures(path)
    assert cache.get("k").text == "42"
    cache.close()


# --- the cached teacher -----------------------------------------------------------------------


class FakeBackend:
    """Answers from a script: text, or a RequestFailed to raise; records what it was asked."""

    kind = "openai"
    model = "fake-model"

    def __init__(self, script=None):
        self.script = script or {}
        self.calls: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls.append(request)
        reply = self.script.get(request.messages[-1][1], "an answer")
        if isinstance(reply, RequestFailed):
            raise reply
        return Completion(reply, "stop", prompt_tokens=7, completion_tokens=5)


class Progress:
    def __init__(self):
        self.advanced: dict[str, int] = {}

    def add_total(self, stage, count):
        pass

    def advance(self, stage, count=1):
        self.advanced[stage] = self.advanced.get(stage, 0) + count


def ask(text: str, sample_index: int = 0) -> ChatRequest:
    return ChatRequest((("user", text),), temperature=0.9, max_tokens=96, sample_index=sample_index)


def test_second_ask_is_served_from_cache(tmp_path):
    backend, progress = FakeBackend({"q1": "Why is the sky blue?"}), Progress()
    teacher = CachedTeacher(backend, RequestCache(tmp_path / "cache.sqlite"), progress)

    async def run():
        first = await teacher.ask("question", ask("q1"), "v1")
        second = await teacher.ask("question", ask("q1"), "v1")
        return first, second

    first, second = asyncio.run(run())
    assert first.text == second.text == "Why is the sky blue?"
    assert len(backend.calls) == 1
    stats = teacher.stage("question")
    assert (stats.requested, stats.cached, stats.answered) == (2, 1, 1)
    assert (stats.prompt_tokens, stats.completion_tokens) == (7, 5)  # cached answers are not counted again
    assert progress.advanced == {"question": 2}
    teacher.cache.close()


def test_a_new_teacher_on_the_same_cache_file_resumes_without_calling_the_backend(tmp_path):
    path = tmp_path / "cache.sqlite"
    first = CachedTeacher(FakeBackend(), RequestCache(path))
    asyncio.run(first.ask("answer", ask("q1"), "v1"))
    first.cache.close()

    backend = FakeBackend()
    second = CachedTeacher(backend, RequestCache(path))
    reply = asyncio.run(second.ask("answer", ask("q1"), "v1"))
    assert reply.text == "an answer" and backend.calls == []
    assert asyncio.run(second.ask("answer", ask("q1"), "v2")) is not None  # a new template version: asked again
    assert len(backend.calls) == 1
    second.cache.close()


def test_failed_request_is_recorded_and_returns_none(tmp_path):
    path = tmp_path / "cache.sqlite"
    backend = FakeBackend(
        {
            "bad": RequestFailed("timeout", "no reply in 120 s"),
            "worse": RequestFailed("context_length", "prompt too long"),
        }
    )
    teacher = CachedTeacher(backend, RequestCache(path))

    async def run():
        return [await teacher.ask("question", ask(text), "v1") for text in ("bad", "good", "bad", "worse")]

    replies = asyncio.run(run())
    assert replies[0] is None and replies[2] is None and replies[3] is None
    assert replies[1].text == "an answer"
    assert len(backend.calls) == 4  # a failure is not cached: it is tried again
    stats = teacher.stage("question")
    assert (stats.requested, stats.cached, stats.answered) == (4, 0, 1)
    assert dict(stats.failed) == {"timeout": 2, "context_length": 1}
    assert teacher.failed == 3
    bad = request_key("openai", "fake-model", ask("bad"), "v1")
    assert failures(path)[bad] == ("question", "timeout", "no reply in 120 s", 2)
    assert stats.as_dict()["failed"] == {"timeout": 2, "context_length": 1}
    teacher.cache.close()


def test_stats_are_kept_per_stage_and_concurrent_asks_work(tmp_path):
    backend = FakeBackend({"boom": RequestFailed("server_error")})
    teacher = CachedTeacher(backend, RequestCache(tmp_path / "cache.sqlite"))

    async def run():
        await asyncio.gather(*(teacher.ask("question", ask("q", i), "v1") for i in range(6)))
        await asyncio.gather(*(teacher.ask("question", ask("q", i), "v1") for i in range(3)))
        await teacher.ask("answer", ask("boom"), "v1")
        await teacher.ask("answer", ask("fine"), "v1")

    asyncio.run(run())
    q, a = teacher.stage("question"), teacher.stage("answer")
    assert (q.requested, q.cached, q.answered, sum(q.failed.values())) == (9, 3, 6, 0)
    assert (a.requested, a.cached, a.answered, dict(a.failed)) == (2, 0, 1, {"server_error": 1})
    assert q.as_dict()["from_cache"] == 3 and q.as_dict()["completion_tokens"] == 30
    assert len(backend.calls) == 8 and teacher.failed == 1
    teacher.cache.close()


def test_identical_requests_in_flight_at_once_share_one_call(tmp_path):
    """A weak teacher repeats questions; their identical answer requests must be sent once."""

    class SlowBackend(FakeBackend):
        async def complete(self, request):
            await asyncio.sleep(0.05)  # both asks are waiting before the first answer lands
            return await super().complete(request)

    backend = SlowBackend({"same": "one answer"})
    teacher = CachedTeacher(backend, RequestCache(tmp_path / "cache.sqlite"))

    async def run():
        return await asyncio.gather(*(teacher.ask("answer", ask("same"), "v1") for _ in range(3)))

    replies = asyncio.run(run())
    assert [r.text for r in replies] == ["one answer"] * 3
    assert len(backend.calls) == 1
    stats = teacher.stage("answer")
    assert (stats.requested, stats.answered, stats.cached) == (3, 1, 2)
    teacher.cache.close()


def test_two_local_model_folders_of_one_name_are_two_models_to_the_cache(tmp_path):
    """A trained student and an aligned teacher are both `.../final`: one's answers must never
    be served for the other's requests; the same folder again keys the same."""
    from syllabus.backends.local import LocalBackend

    for name, weights in (("a", b"one"), ("b", b"two")):
        (tmp_path / name / "final").mkdir(parents=True)
        (tmp_path / name / "final" / "model.safetensors").write_bytes(weights)
    first, second = LocalBackend(tmp_path / "a" / "final"), LocalBackend(tmp_path / "b" / "final")
    assert first.model == second.model == "final"  # what rows and cards show
    assert first.cache_identity != second.cache_identity
    assert LocalBackend(tmp_path / "a" / "final").cache_identity == first.cache_identity
    (tmp_path / "a" / "final" / "model.safetensors").write_bytes(b"retrained")  # trained again in place
    assert LocalBackend(tmp_path / "a" / "final").cache_identity != first.cache_identity


@pytest.mark.slow
def test_a_run_folder_made_by_an_older_build_resumes_without_asking_again(tmp_path):
    """Cache keys are the resume mechanism: a change to how a request is keyed (its fields, their
    order, the template text, the sampling defaults) would make every old run ask its teacher again.

    tests/data/cache-9a1f78f.sqlite was written by commit 9a1f78f for the command below on a fresh
    `syllabus init` project (embedded teacher). To regenerate after a deliberate change of a
    request: `git worktree add /tmp/old <commit>`, run the same two commands with
    PYTHONPATH=/tmp/old, and copy runs/default/cache.sqlite here."""
    import shutil

    project = tmp_path / "p"
    assert run_cli("init", str(project)).returncode == 0
    # As that build's `init` wrote it (no frequency penalty), with no redraws and no replacements: the
    # refused answers would be drawn again, and their questions replaced (new requests).
    config = project / "syllabus.yaml"
    old = config.read_text().replace("max_tokens: 256, frequency_penalty: 0.5}", "max_tokens: 256, redraws: 0}")
    old = old.replace("replacements: 0.5", "replacements: 0")
    assert "redraws: 0" in old and "replacements: 0\n" in old
    config.write_text(old)
    (project / "runs" / "default").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "data" / "cache-9a1f78f.sqlite", project / "runs/default/cache.sqlite")
    result = run_cli(
        "generate", "--nodes", "mathematics/linear-algebra", "--questions", "3", "--seed", "3", cwd=project
    )
    summary = json.loads((project / "runs/default/summary.json").read_text())
    asked = {name: (s["requested"], s["from_cache"], s["answered"]) for name, s in summary["stages"].items()}
    assert asked == {"subjects": (2, 2, 0), "syllabus": (2, 2, 0), "question": (3, 3, 0), "answer": (3, 3, 0)}, (
        result.stderr
    )
