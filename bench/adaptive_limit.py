"""Does an engine back off on a rate-limited endpoint? (issue 21, item 2)

The latency server answers at most `--capacity` requests at once and refuses the rest with a
429. One engine at `llm.concurrency = 64` sends `--requests` chats at once, twice: with the
adaptive limit (halved once per overload, grown back as calls succeed) and with the limit pinned
at 64 (what the engine did before). Both in one run, one after the other; each prints and writes
its wall time, the 429s it drew, its retries and the limit it ended at.

    python bench/adaptive_limit.py [--requests 200] [--capacity 8] [--fixed 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from benchlib import RESULTS_DIR, latency_server, machine, write_json

from fedtextgrad.llm import LLMSettings, open_engine


async def send(url: str, requests: int, *, adaptive: bool) -> dict:
    settings = LLMSettings(
        base_url=f"{url}/v1", api_key="bench", cache=False, concurrency=64, max_retries=50
    )
    llm = open_engine("openai:bench", settings)
    if not adaptive:  # the limit as it was: never lowered
        llm.concurrency.overloaded = lambda epoch: None
    started = time.perf_counter()
    try:
        await asyncio.gather(
            *(llm.ask(f"Question {i}: how many?", purpose="forward") for i in range(requests))
        )
    finally:
        await llm.aclose()
    total = llm.usage.total()
    return {
        "wall_seconds": round(time.perf_counter() - started, 2),
        "retries": total.retries,
        "final_limit": round(llm.concurrency.limit, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--fixed", type=float, default=0.2, help="seconds per reply")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "adaptive_limit.json")
    args = parser.parse_args()
    rows = {}
    for name, adaptive in (("adaptive", True), ("pinned", False)):
        with latency_server(fixed=args.fixed, per_token=0.0, capacity=args.capacity) as server:
            row = asyncio.run(send(server.url, args.requests, adaptive=adaptive))
            row["refused_429"] = server.stats()["refused"]
        rows[name] = row
        print(f"{name:>8}: {row}", flush=True)
    ideal = args.requests / args.capacity * args.fixed  # the endpoint busy all the time
    result = {
        "shape": {
            "requests": args.requests,
            "capacity": args.capacity,
            "fixed": args.fixed,
            "concurrency": 64,
            "ideal_seconds": round(ideal, 2),
        },
        "runs": rows,
        "wall_ratio_pinned_over_adaptive": round(
            rows["pinned"]["wall_seconds"] / rows["adaptive"]["wall_seconds"], 2
        ),
        "machine": machine(),
    }
    print(
        f"ideal {ideal:.1f} s; pinned / adaptive wall: {result['wall_ratio_pinned_over_adaptive']}"
    )
    write_json(args.out, result)


if __name__ == "__main__":
    main()
