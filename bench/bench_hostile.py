"""Does the teacher client stay bounded in memory and time against a hostile server?

Why: issue 10 found that a 200 MB reply body took 2 to 5 GB of the client's memory and a
305 KB gzip body that inflates to 300 MB took 2.8 GB, and that a body trickled a byte at a
time held a request far past teacher.timeout. The fix (syllabus/backends/wire.py, and
http_limits.py for a URL behind a proxy) caps the body as sent and inflated
(teacher.max_response_bytes) and makes the timeout one deadline per try. This bench checks the figures that matter: the client's peak RSS, the
time to fail, and the reason recorded.

How: per case, tests/fault_server.py serves the fault from its own process on 127.0.0.1
(so the server's memory is not counted), and a fresh client process sends one chat
request through OpenAIBackend (max_retries 0) and reports the outcome, its own
`ru_maxrss` and its tracemalloc peak; bench/measure.py also polls the client's RSS. The
`baseline` cases send the same kind of body to the plain openai client (no bounds), at
a smaller size by default (--baseline-mib 20) so the bench stays light on a shared
machine; the old path's memory grows with the body (120 MiB at 20 MB, 658 MiB at 200 MB).
Results: bench/results/hostile.json.

Run:
    .venv/bin/python bench/bench_hostile.py [--body-mib 200] [--bomb-mib 300] [--cap-mib 8] [--baseline-mib 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
MiB = 2**20
GOAL_MIB = 300  # the client's peak RSS, whatever the body


def serve(spec: str) -> None:
    """Server process: serve one fault on every chat request until killed; print the port."""
    from fault_server import Fault, FaultServer

    fault = json.loads(spec)
    server = FaultServer().start()
    if fault:
        server.set_faults(Fault(**fault))
        if fault.get("kind") == "gzip" and fault.get("size"):  # compress the bomb before the client asks
            from syllabus.backends.base import ChatRequest

            server.gzip_bomb({"messages": ChatRequest.from_messages(MESSAGES).message_dicts()}, fault["size"])
    print(server.port, flush=True)
    while True:
        time.sleep(3600)


MESSAGES = [
    {"role": "system", "content": "You are an expert curriculum designer."},
    {"role": "user", "content": 'List 2 courses that teach the discipline "Linear Algebra".'},
]


def client(url: str, cap: int, timeout: float, plain: bool) -> None:
    """Client process: one request; print outcome, reason, wall time and memory as JSON."""
    from fault_server import MODEL

    from syllabus.backends.base import ChatRequest, RequestFailed
    from syllabus.backends.openai_backend import OpenAIBackend

    request = ChatRequest.from_messages(MESSAGES, temperature=0.0, max_tokens=60)

    async def bounded():
        backend = OpenAIBackend(
            model=MODEL, base_urls=[url], api_key="EMPTY", timeout=timeout, max_retries=0, max_response_bytes=cap
        )
        try:
            reply = await backend.complete(request)
            return {"outcome": "answered", "text_bytes": len(reply.text)}
        except RequestFailed as exc:
            return {"outcome": "failed", "reason": exc.reason, "detail": exc.detail[:120]}
        finally:
            await backend.aclose()

    async def unbounded():  # the request path as it was: the SDK's own client, reading whatever comes
        from openai import AsyncOpenAI
        from openai.types.chat import ChatCompletion

        sdk = AsyncOpenAI(base_url=url, api_key="EMPTY", timeout=timeout, max_retries=0)
        try:
            reply = await sdk.post(
                "/chat/completions", body={"model": MODEL, "messages": request.message_dicts()}, cast_to=ChatCompletion
            )
            return {"outcome": "answered", "text_bytes": len(reply.choices[0].message.content or "")}
        except Exception as exc:
            return {"outcome": "failed", "reason": type(exc).__name__, "detail": str(exc)[:120]}
        finally:
            await sdk.close()

    import openai  # noqa: F401  (imported before measuring: the import is not the reply's cost)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    start = time.perf_counter()
    result = asyncio.run(unbounded() if plain else bounded())
    result["wall_s"] = round(time.perf_counter() - start, 2)
    result["tracemalloc_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / MiB, 1)
    tracemalloc.stop()
    result["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["ru_maxrss_before_request_mib"] = round(rss_before, 1)
    print(json.dumps(result))


def one_case(name: str, fault: dict, *, cap: int, timeout: float, plain: bool = False) -> dict:
    from measure import run_measured

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", json.dumps(fault)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/v1"
        command = [sys.executable, __file__, "--client", url, "--cap", str(cap), "--timeout", str(timeout)]
        measured = run_measured(command + (["--plain"] if plain else []), timeout=600, interval=0.05, env=env)
    finally:
        server.kill()
        server.wait()
    try:
        report = json.loads(measured.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report = {"outcome": "client crashed", "returncode": measured.returncode, "stderr": measured.stderr[-600:]}
    report.update(
        case=name,
        client="plain openai client (before)" if plain else "OpenAIBackend (bounded)",
        fault=fault,
        cap_bytes=None if plain else cap,
        timeout_s=timeout,
        polled_peak_rss_mib=measured.peak_rss_mib,
        process_wall_s=round(measured.wall_s, 2),
    )
    print(
        f"{name:28s} {report['client']:30s} {report.get('outcome'):9s} {report.get('reason', ''):20s} "
        f"peak RSS {measured.peak_rss_mib:7.1f} MiB  in {report.get('wall_s', '?')} s",
        flush=True,
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--body-mib", type=int, default=200)
    parser.add_argument("--bomb-mib", type=int, default=300)
    parser.add_argument("--cap-mib", type=int, default=8, help="teacher.max_response_bytes, in MiB")
    parser.add_argument("--baseline-mib", type=int, default=20, help="body size for the unbounded client (0: skip)")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--serve")
    parser.add_argument("--client")
    parser.add_argument("--cap", type=int)
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench/results/hostile.json"))
    args = parser.parse_args()
    if args.serve is not None:
        return serve(args.serve)
    if args.client:
        return client(args.client, args.cap, args.timeout, args.plain)

    from measure import load_avg, machine

    cap, timeout = args.cap_mib * MiB, args.timeout
    cases = [
        ("healthy", {}),
        (f"body {args.body_mib} MiB, Content-Length", {"kind": "huge", "size": args.body_mib * MiB}),
        (f"body {args.body_mib} MiB, chunked", {"kind": "huge", "size": args.body_mib * MiB, "chunked": True}),
        (f"gzip bomb -> {args.bomb_mib} MiB", {"kind": "gzip", "size": args.bomb_mib * MiB}),
        ("trickle 1 byte / 0.5 s", {"kind": "trickle", "chunk": 1, "interval": 0.5}),
        ("endless chunked body", {"kind": "endless", "chunk": 64, "interval": 0.01}),
    ]
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    info = machine("openai", "httpx2", "httpx")
    results = [one_case(name, fault, cap=cap, timeout=timeout) for name, fault in cases]
    if args.baseline_mib:
        size = args.baseline_mib * MiB
        results += [
            one_case(
                f"body {args.baseline_mib} MiB, Content-Length",
                {"kind": "huge", "size": size},
                cap=cap,
                timeout=60,
                plain=True,
            ),
            one_case(
                f"gzip bomb -> {args.baseline_mib} MiB", {"kind": "gzip", "size": size}, cap=cap, timeout=60, plain=True
            ),
        ]
    bounded = [r for r in results if r.get("cap_bytes")]
    worst = max(r["polled_peak_rss_mib"] for r in bounded)
    report = {
        "bench": "hostile",
        "started": started,
        "machine": info,
        "load_avg_at_end": load_avg(),
        "goal": f"client peak RSS under {GOAL_MIB} MiB for every hostile case; slow bodies fail at the deadline",
        "worst_bounded_peak_rss_mib": worst,
        "met": worst < GOAL_MIB
        and all(r.get("outcome") == ("answered" if r["case"] == "healthy" else "failed") for r in bounded),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"worst bounded peak RSS {worst} MiB (goal < {GOAL_MIB}); met: {report['met']}; wrote {args.out}")


if __name__ == "__main__":
    main()
