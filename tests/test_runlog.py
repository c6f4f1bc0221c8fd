"""The run log (syllabus/runlog.py): RUN/syllabus.log tells what a run did, and never a secret.

One unit test of the handler on a real logger and file (secrets in arguments and in an
exception's text; the HTTP client's loggers stay out; nothing is written after the run),
then whole `syllabus generate` runs: against the real llama.cpp server with credentials in
--base-url and an API key, and against the fault server, whose 500s echo the credentials
(a fault a real server does not make), for the failed-request warnings.
"""

from __future__ import annotations

import base64
import logging
import re

import pytest
from conftest import run_cli
from fault_server import MODEL, Fault, fault_server  # noqa: F401  (the fixture)
from test_faults import NODE, fault_project

from syllabus.backends.redact import Redactor
from syllabus.runlog import LOG_FILE, run_log

KEY = "sk-PLANTED-runlog-0123456789abcdef"
URL_KEY = "URLSECRET-runlog-77c1"
BASIC = base64.b64encode(f"user:{URL_KEY}".encode()).decode()
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) syllabus[.\w]*: ")


def secret_url(base_url: str) -> str:
    return base_url.replace("://", f"://user:{URL_KEY}@")


def test_run_log_redacts_arguments_and_exceptions_and_keeps_other_loggers_out(tmp_path):
    url = secret_url("http://127.0.0.1:9/v1")
    log = logging.getLogger("syllabus.generators.test")
    with run_log(tmp_path, Redactor([KEY], [url])) as path:
        log.info("teacher at %s with key %s", url, KEY)
        log.debug("not at INFO: %s", "left out")
        try:
            raise RuntimeError(f"server said: Authorization: Bearer {KEY} ({url})")
        except RuntimeError:
            log.exception("the request failed")
        logging.getLogger("httpx").warning("HTTP Request: POST %s", url)  # not ours: not in the file
    log.info("after the run")  # the handler is gone

    text = path.read_text()
    assert path == tmp_path / LOG_FILE
    assert "teacher at http://***@127.0.0.1:9/v1 with key ***" in text
    assert "the request failed" in text and "RuntimeError: server said: Authorization: Bearer ***" in text
    assert "left out" not in text and "HTTP Request" not in text and "after the run" not in text
    assert KEY not in text and URL_KEY not in text
    assert LINE.match(text.splitlines()[0]), text

    with run_log(tmp_path):  # a second run appends
        log.warning("second run, key %s", "sk-unknown-but-key-shaped-1234")
    again = path.read_text()
    assert again.startswith(text) and "second run, key sk-***" in again


def generate(project, base_url: str, teacher: str, questions: str):
    return run_cli(
        "generate",
        "--project",
        str(project),
        "--teacher",
        teacher,
        "--base-url",
        base_url,
        "--nodes",
        NODE,
        "--questions",
        questions,
        env={"OPENAI_API_KEY": KEY},
        timeout=600,
    )


def log_lines(project) -> list[str]:
    return (project / "runs/default" / LOG_FILE).read_text().splitlines()


@pytest.mark.server
def test_generation_logs_the_job_and_its_counts_without_secrets(llama_server, make_project):
    project = make_project()
    url = secret_url(llama_server.base_url)
    result = generate(project, url, "openai:smollm2", "2")
    assert result.returncode == 0, result.stdout + result.stderr

    lines = log_lines(project)
    text = "\n".join(lines)
    assert all(LINE.match(line) for line in lines if not line.startswith((" ", "Traceback"))), text
    assert "generate: teacher smollm2 (openai), round 0" in text
    assert "teacher server(s): http://***@127.0.0.1" in text
    assert f"disciplines: {NODE}=2; 2 question(s)" in text
    assert "command: syllabus generate --project" in text and "--base-url http://***@127.0.0.1" in text
    for stage in ("subjects", "syllabus", "question", "answer"):
        assert re.search(rf"INFO syllabus\.generators\.run: stage {stage}: [1-9]\d* requested, 0 from cache", text)
    kept = re.search(r"rows: (\d+) generated, (\d+) kept, (\d+) dropped", text)
    assert kept and int(kept[2]) > 0, text
    assert re.search(rf"filters: {kept[1]} row\(s\) in, {kept[2]} kept", text)
    assert "wrote dataset: " in text and "wrote summary: " in text and "generate finished in" in text
    assert "WARNING" not in text
    assert KEY not in text and URL_KEY not in text and BASIC not in text

    again = generate(project, url, "openai:smollm2", "2")  # the same command: all from cache, appended
    assert again.returncode == 0, again.stdout + again.stderr
    later = "\n".join(log_lines(project)[len(lines) :])
    assert re.search(r"stage answer: [1-9]\d* requested, [1-9]\d* from cache, 0 answered", later), later


def test_failed_requests_are_warnings_and_echoed_credentials_stay_out(fault_server, tmp_path):
    server = fault_server()
    server.set_faults(Fault("500", every=4))  # error bodies that echo the Authorization header
    project = fault_project(tmp_path / "proj", max_retries=0)
    result = generate(project, secret_url(server.base_url), f"openai:{MODEL}", "4")
    assert result.returncode == 1, result.stdout + result.stderr
    assert server.chat and any(BASIC in r.authorization for r in server.chat)  # sent, and echoed back

    text = "\n".join(log_lines(project))
    failures = re.findall(
        r"WARNING syllabus\.generators\.teacher: stage \w+: a request failed for good \(HTTP 500\)", text
    )
    assert failures, text
    summary = re.search(
        r"WARNING syllabus\.generators\.run: (\d+) request\(s\) failed for good \(HTTP 500 (\d+)\)", text
    )
    assert summary and int(summary[1]) == int(summary[2]) == len(failures), text
    assert KEY not in text and URL_KEY not in text and BASIC not in text
