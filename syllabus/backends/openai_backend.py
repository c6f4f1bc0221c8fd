"""Any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, Ollama, SGLang) over HTTP.

Requests go through api_client.py over wire.py, not the openai SDK: against a fast server
the SDK's own cost per request (typed params, pydantic models, httpx) was the ceiling of a
run (docs/benchmarks.md). Kept from the SDK: the auth header, retries with exponential
backoff that honour Retry-After, the error classes a failure is reported by. We add bounded
concurrency, spreading across several base URLs, one pooled connection set sized to the
concurrency, a clear check before any work starts, and redaction so the key never reaches
a message.

Every reply is untrusted input. Each try has one deadline (teacher.timeout) and a body cap
(teacher.max_response_bytes, also once decompressed); bodies are plain dicts whose fields
are checked here where they are read; every string the server sends is cleaned
(base.Completion) and has the configured secrets scrubbed (redact.py) before anything
stores or shows it; base URLs are shown redacted.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from .api_client import APIClient, HTTPError, Malformed, StatusError
from .base import ChatRequest, Completion, RequestFailed, clean_text, token_count
from .redact import Redactor, redact_url

NO_KEY = "EMPTY"  # local servers (llama.cpp, vLLM) take any key; a header is sent all the same
DEFAULT_MAX_RESPONSE_BYTES = 8 * 2**20  # teacher.max_response_bytes: a chat reply is a few KB
_MISSING = object()


def read_api_key(env_var: str | None, key_file: str | None) -> str | None:
    if env_var and os.environ.get(env_var):
        return os.environ[env_var].strip()
    if key_file:
        path = Path(key_file).expanduser()
        if not path.is_file():
            raise UserError("API key file does not exist", where=path, hint="fix teacher.api_key_file in syllabus.yaml")
        return path.read_text(encoding="utf-8").strip()
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first_choice(response: Any) -> dict[str, Any] | None:
    choices = response.get("choices") if isinstance(response, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    return choice if isinstance(choice, dict) else None


class OpenAIBackend:
    kind = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_urls: list[str],
        api_key: str | None,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 4,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ):
        self.model = model
        self.timeout = timeout  # the deadline of each try, connect to last byte (wire.py)
        self.base_urls = list(base_urls)
        self.shown_urls = [redact_url(url) for url in self.base_urls]  # the only form a URL is shown in
        self._redactor = Redactor([api_key if api_key != NO_KEY else None], self.base_urls)
        self._redactor.install_log_filter()
        self._api = APIClient(
            self.base_urls,
            api_key or NO_KEY,
            timeout=timeout,
            max_retries=max_retries,
            max_bytes=max_response_bytes,
            pool_size=concurrency,  # per server: every request in flight keeps its connection
        )
        self._limit = asyncio.Semaphore(concurrency)
        self.in_flight = 0  # HTTP requests open right now, and the most there ever were
        self.peak_in_flight = 0

    def redact(self, text: str) -> str:
        """A message fit to show: no configured secret, no URL credentials, nothing key-shaped."""
        return self._redactor(clean_text(text))

    def _from_server(self, text: str) -> str:
        """A string the server sent (a reply, a model name), fit to store: the configured secrets
        scrubbed (a server can reflect the key inside a normal reply), nothing else changed."""
        return self._redactor.scrub(clean_text(text))

    async def preflight(self) -> dict[str, Any]:
        """Reach every server and check it knows the model: fail in seconds, not hours later."""
        from .api_client import ReplyTooLarge

        info: dict[str, Any] = {"model": self.model, "backend": "openai", "servers": []}
        for index, url in enumerate(self.shown_urls):
            try:
                page = await self._api.call(
                    "GET", "/models", base=index, max_retries=0, timeout=min(60.0, self.timeout)
                )
                data = page.get("data") if isinstance(page, dict) else None
                if not isinstance(data, list):
                    raise Malformed("no data list")
                listed: list[Any] = [entry.get("id") for entry in data if isinstance(entry, dict)]
            except ReplyTooLarge as exc:
                raise UserError(
                    f"the server's answer to a model listing is too large ({self.redact(exc.detail)})",
                    where=url,
                    hint="raise teacher.max_response_bytes if the server is right",
                ) from None
            except StatusError as exc:
                if exc.status == 401:
                    raise UserError(
                        "the server rejected the API key",
                        where=url,
                        hint="set the key in the environment variable named by teacher.api_key_env",
                    ) from None
                if exc.status != 404:
                    raise UserError(f"the server answered {exc.status} to a model listing", where=url) from None
                listed = []  # some servers have no /models; the first real request will tell
            except Malformed:  # a body that is no model list (a web page: the wrong base URL)
                raise UserError(
                    "the server's answer to a model listing is not an OpenAI model list",
                    where=url,
                    hint="is --base-url an OpenAI-compatible API (it usually ends in /v1)?",
                ) from None
            except HTTPError as exc:
                raise UserError(
                    f"cannot reach the teacher server ({self.redact(exc.reason)}: {self.redact(exc.detail)[:200]})",
                    where=url,
                    hint="is the server running, and is --base-url right (it usually ends in /v1)?",
                ) from None
            names = [name for name in listed if isinstance(name, str)]
            if names and self.model not in names:
                shown = self.redact(", ".join(names[:8]) + (" ..." if len(names) > 8 else ""))
                raise UserError(
                    f"the server does not offer model '{self.model}'", where=url, hint=f"it offers: {shown}"
                )
            info["servers"].append(url)
        return info

    async def _post(self, path: str, body: dict[str, Any] | bytes, *, max_retries: int | None = None) -> Any:
        """One request to the next server, counted in flight; its JSON, or every way it can fail
        as a RequestFailed with a reason and a redacted detail (chat and scoring alike)."""
        async with self._limit:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                return await self._api.call("POST", path, body, max_retries=max_retries)
            except HTTPError as exc:  # connection, deadline, size cap, an encoding that is not one
                raise RequestFailed(exc.reason, self.redact(exc.detail)[:200]) from None
            except StatusError as exc:
                raise RequestFailed(f"HTTP {exc.status}", self.redact(exc.message)[:200]) from None
            except Malformed as exc:
                raise RequestFailed("malformed response", self.redact(str(exc))[:200]) from None
            finally:
                self.in_flight -= 1

    async def complete(self, request: ChatRequest) -> Completion:
        body = request.json_with({"model": self.model, **request.sampling()}).encode("utf-8")
        response = await self._post("/chat/completions", body)
        # Valid JSON that is not a chat completion is a failed request, not an error that ends the run.
        choice = _first_choice(response)
        text = _dict(choice.get("message")).get("content", _MISSING) if choice else _MISSING
        if not (text is None or isinstance(text, str)):
            error = response.get("error") if isinstance(response, dict) else None  # some proxies: an error, status 200
            raise RequestFailed(
                "malformed response",
                self.redact(f"error in the body: {error}")[:200]
                if error
                else "not a chat completion (no choices[0].message.content)",
            )
        text = self._from_server(text or "")  # the one point a reply enters: nothing after sees the key
        finish_reason = choice.get("finish_reason") if choice else None
        finish_reason = self._from_server(finish_reason) if isinstance(finish_reason, str) else None
        if not text.strip():
            # An empty reply is not an answer: fail it (not cached, retried by the next run)
            # rather than cache "" as the teacher's final word on this request.
            raise RequestFailed("empty reply", f"finish_reason={finish_reason!r}")
        usage = _dict(response.get("usage"))
        return Completion(  # Completion itself makes the text encodable and the counts plausible
            text=text.strip(),
            finish_reason=finish_reason or "stop",
            prompt_tokens=token_count(usage.get("prompt_tokens", 0)),
            completion_tokens=token_count(usage.get("completion_tokens", 0)),
        )

    async def check_features(self) -> dict[str, Any]:
        """Latency of one short request, and whether logprobs, JSON mode and n > 1 work."""
        messages = [{"role": "user", "content": "Say hello in one word."}]
        report: dict[str, Any] = {}

        async def chat(**kwargs) -> Any:
            body = {"model": self.model, "messages": messages, "max_tokens": 8, **kwargs}
            return await self._post("/chat/completions", body, max_retries=1)

        start = time.perf_counter()
        try:
            response = await chat()
            choice = _first_choice(response)
            text = _dict(choice.get("message")).get("content") if choice else None
            if not (text is None or isinstance(text, str)):
                raise RequestFailed("malformed response", "not a chat completion (no choices[0].message.content)")
        except RequestFailed as exc:  # the server listed the model but cannot answer: say so plainly
            raise UserError(
                f"the server failed a chat request: {self.redact(str(exc))[:200]}", where=self.shown_urls[0]
            ) from None
        report["latency_s"] = round(time.perf_counter() - start, 3)
        report["reply"] = self._from_server(text or "").strip()
        report["served_model"] = self._from_server(str(response.get("model")))

        async def probe(**kwargs) -> Any:
            try:
                return await chat(**kwargs)
            except RequestFailed:
                return None

        r = await probe(logprobs=True, top_logprobs=2)
        report["logprobs"] = bool(_dict(_dict(_first_choice(r)).get("logprobs")).get("content"))
        r = await probe(
            response_format={"type": "json_object"},
            messages=[{"role": "user", "content": 'Reply with the JSON object {"ok": true}.'}],
        )
        report["json_mode"] = r is not None
        r = await probe(n=2, temperature=1.0)
        choices = r.get("choices") if isinstance(r, dict) else None
        report["n_gt_1"] = isinstance(choices, list) and len(choices) == 2
        return report

    async def aclose(self) -> None:
        await self._api.aclose()

    # Capabilities and scoring ---------------------------------------------------------
    # Teacher-forced scoring goes through /v1/completions with echo + logprobs: the server returns
    # the log-probability of every prompt token (vLLM does, through prompt_logprobs; llama.cpp's
    # Python server does when its model keeps all logits, --logits_all True, its default in 0.3.x;
    # OpenAI's own API no longer does). That endpoint takes text, so the chat is rendered here with
    # the served model's chat template, from a local tokenizer (`chat_template_source`).
    chat_template_source: Path | None = None
    _capabilities = None
    _template_tokenizer = None

    async def capabilities(self):
        """chat, logprobs, JSON mode and n > 1 from `check_features`; prompt scoring probed apart."""
        from .base import Capabilities

        if self._capabilities is None:
            features = await self.check_features()
            notes = {"trainable": "a served model: train a local copy of its weights"}
            if not features["logprobs"]:
                notes["logprobs"] = "the server returned no token log-probabilities for a chat reply"
            if not features["json_mode"]:
                notes["json_mode"] = "the server refused response_format json_object"
            if not features["n_gt_1"]:
                notes["n_gt_1"] = "the server returned one choice for n=2"
            scoring, why = await self._probe_scoring()
            if why:
                notes["prompt_scoring"] = why
            self._capabilities = Capabilities(
                chat=True,
                logprobs=features["logprobs"],
                prompt_scoring=scoring,
                json_mode=features["json_mode"],
                n_gt_1=features["n_gt_1"],
                trainable=False,
                notes=notes,
            )
        return self._capabilities

    async def _probe_scoring(self) -> tuple[bool, str]:
        try:
            entries = await self._echo_logprobs("The sky is blue.")
        except RequestFailed as exc:
            return False, (
                f"the server does not return prompt log-probabilities (/v1/completions with echo and "
                f"logprobs: {exc}); vLLM does, llama.cpp's server when started with --logits_all True"
            )
        if sum(lp is not None for _, lp in entries) < 2:
            return False, (
                "the server echoed the prompt without its log-probabilities; vLLM returns them, "
                "llama.cpp's server when started with --logits_all True"
            )
        if self.chat_template_source is None:
            return False, (
                "the server can score, but the chat must be rendered with the served model's chat "
                "template here: pass --chat-template FOLDER (its tokenizer) or 'embedded'"
            )
        return True, ""

    def _template(self):
        if self._template_tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._template_tokenizer = AutoTokenizer.from_pretrained(
                    self.chat_template_source, local_files_only=True
                )
            except (OSError, ValueError) as exc:
                raise UserError(
                    f"cannot load the tokenizer: {str(exc).splitlines()[0]}", where=self.chat_template_source
                ) from None
            if self._template_tokenizer.chat_template is None:
                raise UserError("the tokenizer has no chat template", where=self.chat_template_source)
        return self._template_tokenizer

    async def _echo(self, prompt: str, k: int, field: str) -> tuple[list[Any], list[Any]]:
        """The echoed tokens of `prompt` and, beside each, `logprobs.<field>` (`token_logprobs` or
        `top_logprobs`, at `k`): one /completions request that generates a single token."""
        response = await self._post(
            "/completions",
            {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": k},
        )
        logprobs = _dict(_dict(_first_choice(response)).get("logprobs"))
        tokens, values = logprobs.get("tokens"), logprobs.get(field)
        if not (isinstance(tokens, list) and isinstance(values, list) and len(tokens) == len(values)):
            raise RequestFailed("malformed response", f"no logprobs.tokens / {field} in the completion")
        return tokens, values

    async def _echo_logprobs(self, prompt: str) -> list[tuple[str, float | None]]:
        """(token text, log-probability) of each token the server echoes back for `prompt`."""
        tokens, values = await self._echo(prompt, 1, "token_logprobs")
        return [
            (t if isinstance(t, str) else "", float(v) if isinstance(v, (int, float)) else None)
            for t, v in zip(tokens, values)
        ]

    async def echo_topk(self, prompt: str, k: int) -> tuple[list[str], list[dict[str, float] | None]]:
        """The text of each token the server echoes back for `prompt`, and its top-`k` log-probabilities
        keyed by token text (None where the server gives none, as the first); what a served teacher
        is distilled from (students/served_teacher.py). Malformed entries fail the request."""
        tokens, tops = await self._echo(prompt, k, "top_logprobs")
        entries: list[dict[str, float] | None] = []
        for top in tops:
            if top is None:
                entries.append(None)
                continue
            if not isinstance(top, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v <= 1e-3
                for v in top.values()
            ):
                raise RequestFailed("malformed response", "a top_logprobs entry is not a map of log-probabilities")
            entries.append({self._from_server(str(key)): min(0.0, float(v)) for key, v in top.items()})
        return [self._from_server(t) if isinstance(t, str) else "" for t in tokens], entries

    async def score(self, prompt: list[dict[str, str]], continuations: list[str]):
        """One echo request per continuation; its tokens are found at the end of the echoed prompt.

        The server's echo may or may not end with the one generated token (vLLM lists it, llama.cpp's
        server does not), so the span of the continuation's token count is taken either way and the
        one whose text is the continuation wins.
        """
        import difflib

        from .base import Score, ScoringUnsupported

        capabilities = await self.capabilities()
        if not capabilities.prompt_scoring:
            raise ScoringUnsupported(capabilities.notes.get("prompt_scoring", "the server cannot score prompts"))
        tokenizer = self._template()
        prefix = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        prefix_count = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])

        async def one(continuation: str) -> Score:
            text = continuation or (tokenizer.eos_token or "")
            count = len(tokenizer(prefix + text, add_special_tokens=False)["input_ids"]) - prefix_count
            entries = await self._echo_logprobs(prefix + text)
            spans = [
                entries[len(entries) - extra - count : len(entries) - extra]
                for extra in (0, 1)
                if 0 < count <= len(entries) - extra
            ]
            if not spans:
                raise RequestFailed("malformed response", "the server echoed fewer tokens than the continuation has")
            span = max(
                spans,
                key=lambda s: difflib.SequenceMatcher(None, "".join(t for t, _ in s).strip(), text.strip()).ratio(),
            )
            values = tuple(lp for _, lp in span if lp is not None)
            if len(values) < len(span):
                raise RequestFailed("malformed response", "a continuation token came back without a log-probability")
            return Score(values)

        return list(await asyncio.gather(*(one(c) for c in continuations)))
