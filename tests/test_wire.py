"""The backend's own HTTP client (syllabus/backends/wire.py) where the fault and hostile-reply
tests do not reach it: a kept-alive connection the server closed, an environment proxy,
the pool's size, and TLS."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading

import pytest
from fault_server import MODEL, FaultServer, _Handler, _HTTPServer, fault_server  # noqa: F401  (the fixture)
from test_faults import SUBJECTS_REQUEST

from syllabus.backends.base import ChatRequest
from syllabus.backends.openai_backend import OpenAIBackend

KEY = "sk-PLANTED-wire-0123456789abcdef"


def test_a_kept_alive_connection_the_server_closed_is_replaced_not_failed(fault_server):
    """max_retries=0: the second request passes only if the stale connection is replaced silently."""
    server = fault_server()

    async def main():
        backend = OpenAIBackend(model=MODEL, base_urls=[server.base_url], api_key=KEY, timeout=2, max_retries=0)
        try:
            first = await backend.complete(SUBJECTS_REQUEST)
            server.stop()  # drops every open connection, the idle one in the pool too
            server.start()
            second = await backend.complete(ChatRequest(SUBJECTS_REQUEST.messages, sample_index=1))
            return first, second
        finally:
            await backend.aclose()

    first, second = asyncio.run(main())
    assert first.text and second.text and server.chat_count() == 2


def test_requests_reuse_pooled_connections(fault_server):
    server = fault_server()

    async def main():
        backend = OpenAIBackend(
            model=MODEL, base_urls=[server.base_url], api_key=KEY, timeout=2, max_retries=0, concurrency=4
        )
        try:
            requests = [ChatRequest(SUBJECTS_REQUEST.messages, sample_index=i) for i in range(24)]
            replies = await asyncio.gather(*(backend.complete(r) for r in requests))
            idle = sum(len(conns) for conns in backend._api.http._idle.values())
            return replies, idle, backend.peak_in_flight
        finally:
            await backend.aclose()

    replies, idle, peak = asyncio.run(main())
    assert len(replies) == 24 and all(r.text for r in replies)
    assert 1 <= idle <= 4 and peak <= 4  # at most one connection per request in flight, kept for the next


def test_an_environment_proxy_is_honoured(fault_server, monkeypatch):
    """A URL the environment routes through a proxy goes through httpx to that proxy: here the fault
    server stands in for one, and answers 404 to the absolute-form target a proxy is sent."""
    target, proxy = fault_server(), fault_server()
    monkeypatch.setenv("HTTP_PROXY", proxy.base_url.rsplit("/v1", 1)[0])
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)

    async def main():
        backend = OpenAIBackend(model=MODEL, base_urls=[target.base_url], api_key=KEY, timeout=2, max_retries=0)
        try:
            return await backend.complete(SUBJECTS_REQUEST)
        except Exception as exc:
            return exc
        finally:
            await backend.aclose()

    outcome = asyncio.run(main())
    assert target.chat_count() == 0
    seen = [r for r in proxy.received if r.method == "POST"]
    assert seen and seen[0].path == f"{target.base_url}/chat/completions", [r.path for r in proxy.received]
    assert seen[0].authorization == f"Bearer {KEY}"
    assert getattr(outcome, "reason", None) == "HTTP 404"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_verifies_the_certificate_as_the_sdk_did(tmp_path, monkeypatch):
    """TLS to a server whose certificate SSL_CERT_FILE trusts works (and its connection is kept);
    without that trust the request fails as a connection error, not silently unverified."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    subprocess.run(
        [*command, "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    fixture = FaultServer()
    httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.fixture = fixture
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"https://localhost:{httpd.server_address[1]}/v1"

    async def ask():
        backend = OpenAIBackend(model=MODEL, base_urls=[url], api_key=KEY, timeout=5, max_retries=0)
        try:
            replies = [await backend.complete(ChatRequest(SUBJECTS_REQUEST.messages, sample_index=i)) for i in range(2)]
            return replies, sum(len(conns) for conns in backend._api.http._idle.values())
        except Exception as exc:
            return exc, 0
        finally:
            await backend.aclose()

    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        replies, idle = asyncio.run(ask())
        assert isinstance(replies, list) and all(r.text for r in replies) and idle == 1, replies
        monkeypatch.delenv("SSL_CERT_FILE")
        failed, _ = asyncio.run(ask())
        assert getattr(failed, "reason", None) == "connection error" and "CERTIFICATE_VERIFY_FAILED" in str(failed)
    finally:
        httpd.shutdown()
        httpd.server_close()
