"""`frequency_penalty`, a stage's setting against the repetition loops of a small teacher: the
server is sent it, and the local backends apply it the same way."""

from __future__ import annotations

import asyncio

import pytest

LOOPING = "Repeat after me: la la la la la la la la la la la la la la la la"


def most_repeated(text: str) -> int:
    """How often the reply's most frequent word stands in it: high in a repetition loop."""
    from collections import Counter

    words = Counter(text.lower().split())
    return max(words.values(), default=0)


def plain_and_penalised(backend) -> tuple[str, str]:
    """The backend's greedy replies to LOOPING without a penalty and with 1.0; the backend is closed after."""
    from syllabus.backends.base import ChatRequest

    async def replies():
        try:
            return [
                await backend.complete(
                    ChatRequest.from_messages(
                        [{"role": "user", "content": LOOPING}], temperature=0, max_tokens=80, frequency_penalty=penalty
                    )
                )
                for penalty in (0.0, 1.0)
            ]
        finally:
            await backend.aclose()

    plain, penalised = asyncio.run(replies())
    return plain.text, penalised.text


@pytest.mark.server
def test_the_frequency_penalty_reaches_the_server_and_breaks_its_loop(llama_server):
    from syllabus.backends.openai_backend import OpenAIBackend

    plain, penalised = plain_and_penalised(
        OpenAIBackend(model="smollm2", base_urls=[llama_server.base_url], api_key=None)
    )
    assert most_repeated(penalised) < most_repeated(plain), (plain, penalised)


def test_the_local_backend_applies_the_frequency_penalty(embedded_dir):
    from syllabus.backends.local import LocalBackend

    plain, penalised = plain_and_penalised(LocalBackend(embedded_dir))
    assert most_repeated(plain) >= 8, plain  # greedy decoding falls into a loop here ...
    assert most_repeated(penalised) < most_repeated(plain), penalised  # ... the penalty breaks it
