"""The baseline a user would write by hand: AsyncOpenAI, a semaphore, gather.

Run as its own process by bench_generate.py, so that both sides pay for starting
Python and importing their client (the goal counts start-up). Reads the requests
(JSON list of {messages, temperature, top_p, max_tokens}) from a file and prints
{"output_tokens": N} when done.
"""

import argparse
import asyncio
import json

from openai import AsyncOpenAI


async def main(base_url: str, model: str, requests: list[dict], concurrency: int) -> int:
    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY")
    limit = asyncio.Semaphore(concurrency)

    async def one(request: dict) -> int:
        async with limit:
            response = await client.chat.completions.create(
                model=model,
                messages=request["messages"],
                temperature=request["temperature"],
                top_p=request["top_p"],
                max_tokens=request["max_tokens"],
            )
        return response.usage.completion_tokens

    try:
        return sum(await asyncio.gather(*(one(r) for r in requests)))
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("requests")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    args = parser.parse_args()
    with open(args.requests, encoding="utf-8") as handle:
        requests = json.load(handle)
    tokens = asyncio.run(main(args.base_url, args.model, requests, args.concurrency))
    print(json.dumps({"output_tokens": tokens}))
