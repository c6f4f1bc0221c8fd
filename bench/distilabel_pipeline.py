"""The distilabel side of bench_distilabel.py; runs under the separate distilabel venv, never .venv.

LoadDataFromDicts -> TextGeneration(OpenAILLM) over flat prompts, as a distilabel user
writes it: OpenAILLM is async and TextGeneration sends each input batch at once, so
`input_batch_size` = the concurrency. Prints {"rows": N, "output_tokens": N} when done.
"""

import argparse
import json
import logging


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("requests", help="JSON list of {messages, temperature, top_p, max_tokens}")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--cache-dir", required=True)
    args = parser.parse_args()
    with open(args.requests, encoding="utf-8") as handle:
        requests = json.load(handle)
    logging.disable(logging.WARNING)

    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    first = requests[0]
    with Pipeline(name="bench-distilabel", cache_dir=args.cache_dir) as pipeline:
        load = LoadDataFromDicts(
            data=[{"instruction": r["messages"][-1]["content"]} for r in requests], batch_size=args.concurrency
        )
        generate = TextGeneration(
            llm=OpenAILLM(model=args.model, base_url=args.base_url, api_key="EMPTY", max_retries=0),
            input_batch_size=args.concurrency,
        )
        load >> generate
    distiset = pipeline.run(
        use_cache=False,
        parameters={
            generate.name: {
                "llm": {
                    "generation_kwargs": {
                        "temperature": first["temperature"],
                        "top_p": first["top_p"],
                        "max_new_tokens": first["max_tokens"],
                    }
                }
            }
        },
    )
    rows = distiset["default"]["train"]
    generated = [g for g in rows["generation"] if g]
    tokens = 0
    for meta in rows["distilabel_metadata"] if "distilabel_metadata" in rows.column_names else []:
        stats = (meta or {}).get(f"statistics_{generate.name}") or {}
        out = stats.get("output_tokens")
        tokens += sum(out) if isinstance(out, list) else (out or 0)
    print(json.dumps({"rows": len(generated), "rows_in": len(rows), "output_tokens": tokens}))


if __name__ == "__main__":
    main()
