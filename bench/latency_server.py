"""An OpenAI-compatible chat endpoint that answers after a configured latency.

A benchmark tool, not a test double for correctness: it lets the orchestration be timed without
a model. Each reply costs `fixed + per_token * output_tokens` seconds (plus optional jitter),
replies are well formed for FedTextGrad's parsers (forward answers end with `Answer: N`, updates
come between <IMPROVED_VARIABLE> tags and end with the task's answer-format sentence, merges come
between <MERGED_PROMPT> tags), and every request is logged (arrival, start, end, purpose guess,
tokens, the client's `x-bench-tag` header) so that the run's call graph can be rebuilt.

    python bench/latency_server.py --port 8000 --fixed 0.1 --per-token 0.004

Replies are a pure function of the request: with the response cache off, two runs of the same
experiment make the same calls. Output lengths are in words, and one word counts as one token.

Endpoints: POST /v1/chat/completions; GET /bench/stats, GET /bench/log, POST /bench/reset.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fedtextgrad.federated.aggregators import SUMMARIZE
from fedtextgrad.textgrad import templates

DEFAULT_TOKENS = {"forward": 50, "feedback": 70, "combine": 70, "update": 60, "aggregation": 80}
_FORMAT_RULE = re.compile(r"The last sentence must be exactly: (.+)")
_FORMAT_RETRY = re.compile(r"ending with the sentence: (.+)$", re.DOTALL)
_FILLER = "first list every item then check its category then add the counts and verify the total before writing the final line carefully"
_FILLER_WORDS = _FILLER.split(" ")


@dataclass
class Settings:
    fixed: float = 0.1  # seconds per request
    per_token: float = 0.004  # seconds per output token
    jitter: float = 0.0  # extra seconds, uniform in [0, jitter], a function of the request
    tokens: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TOKENS))
    accuracy: float = 0.5  # share of known questions answered correctly (per prompt, hashed)
    answers: dict[str, str] = field(default_factory=dict)  # question -> target
    slots: int | None = None  # requests served at once (None: unlimited)
    capacity: int | None = None  # beyond this many in flight, a request gets a 429 at once


def guess_purpose(messages: list[dict]) -> str:
    """What FedTextGrad asked for, told by its templates (their own constants: an edit of the
    wording keeps this right)."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else ""
    text = messages[-1]["content"] if messages else ""
    first_user = next((m["content"] for m in messages if m["role"] == "user"), "")
    if system == templates.UPDATE_SYSTEM:
        return "update"
    if system == templates.FEEDBACK_SYSTEM:
        return "feedback"
    if _made_from(first_user, SUMMARIZE):
        return "aggregation"
    if _made_from(first_user, templates.COMBINE_FEEDBACK):
        return "combine"
    if _made_from(text, templates.JUDGE):
        return "judge"
    return "forward"  # a system prompt and a question: forward, gate or evaluation


def _made_from(request: str, template: str) -> bool:
    """Whether `request` holds the template's longest fixed part."""
    return max(re.split(r"\{\w+\}|\n", template), key=len).strip() in request


def _unit(*parts: str) -> float:
    """A deterministic number in [0, 1) from the request's text."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _words(n: int, seed: float) -> list[str]:
    start = int(seed * len(_FILLER_WORDS))
    return [_FILLER_WORDS[(start + i) % len(_FILLER_WORDS)] for i in range(max(0, n))]


def _answer_format(messages: list[dict]) -> str:
    for message in reversed(messages):
        content = message["content"]
        match = _FORMAT_RETRY.search(content) or _FORMAT_RULE.search(content)
        if match:
            return match.group(1).strip()
    return "Answer: $VALUE"


def reply_text(messages: list[dict], purpose: str, settings: Settings) -> str:
    n = settings.tokens.get(purpose, settings.tokens["forward"])
    everything = "\x00".join(m["content"] for m in messages)
    seed = _unit(everything)
    if purpose == "forward":
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        question = messages[-1]["content"]
        target = settings.answers.get(question.strip())
        right = target is not None and _unit(system, question) < settings.accuracy
        if right:
            answer = target
        elif target is not None and target.lstrip("-").isdigit():
            answer = str(int(target) + 1)
        else:
            answer = str(int(seed * 20) + 1)
        return " ".join(_words(n - 2, seed)) + f"\nAnswer: {answer}"
    if purpose == "update":
        fmt = _answer_format(messages)
        body = " ".join(_words(n - len(fmt.split()) - 2, seed))
        # a distinct rule per request, so that candidates (and clients' uploads) differ
        return f"<IMPROVED_VARIABLE>Rule {int(seed * 10**6)}: {body}. {fmt}</IMPROVED_VARIABLE>"
    if purpose == "aggregation":
        body = " ".join(_words(n - 2, seed))
        return f"<MERGED_PROMPT>Merged {int(seed * 10**6)}: {body}.</MERGED_PROMPT>"
    if purpose == "judge":
        return "CORRECT" if seed < settings.accuracy else "INCORRECT"
    if purpose == "feedback":  # the form the feedback template asks for
        third = max(1, (n - 3) // 3)
        parts = ("Solution:", "Mistake:", "Instruction:")
        return "\n".join(
            f"{p} " + " ".join(_words(third, seed + i / 7)) for i, p in enumerate(parts)
        )
    return " ".join(_words(n, seed))


class LatencyServer:
    """The app and its bookkeeping: peak concurrency and one log entry per request."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.slots = asyncio.Semaphore(settings.slots) if settings.slots else None
        self.origin = time.time()
        self.reset()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/bench/stats", self.stats, methods=["GET"]),
                Route("/bench/log", self.get_log, methods=["GET"]),
                Route("/bench/reset", self.post_reset, methods=["POST"]),
            ]
        )

    def reset(self) -> None:
        self.log: list[dict] = []
        self.in_flight = 0
        self.peak = 0
        self.refused = 0
        self.cpu_start = time.process_time()

    async def chat(self, request: Request) -> JSONResponse:
        arrival = time.time()
        if self.settings.capacity is not None and self.in_flight >= self.settings.capacity:
            self.refused += 1  # a rate-limited endpoint: too much at once
            error = {"message": "rate limited: too many requests in flight", "type": "rate_limit"}
            return JSONResponse({"error": error}, status_code=429)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            raw = await request.body()
            body = json.loads(raw)
            messages = body["messages"]
            purpose = guess_purpose(messages)
            words = reply_text(messages, purpose, self.settings).split(" ")
            finish = "stop"
            if len(words) > body.get("max_tokens", 10**9):
                words, finish = words[: body["max_tokens"]], "length"
            text = " ".join(words)
            tokens = len(text.split())
            latency = self.settings.fixed + self.settings.per_token * tokens
            delay = latency + self.settings.jitter * _unit("jitter", json.dumps(messages))
            if self.slots is None:
                start = time.time()
                await asyncio.sleep(delay)
            else:
                async with self.slots:
                    start = time.time()
                    await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        self.log.append(
            {
                "arrival": arrival,
                "start": start,
                "end": time.time(),
                "purpose": purpose,
                "tag": request.headers.get("x-bench-tag"),
                "request_bytes": len(raw),
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
                "latency": latency,  # the configured cost, without jitter
                "delay": delay,
            }
        )
        return JSONResponse(
            {
                "id": f"bench-{len(self.log)}",
                "object": "chat.completion",
                "created": int(arrival),
                "model": body.get("model", "bench"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": tokens,
                    "total_tokens": prompt_tokens + tokens,
                },
            }
        )

    async def stats(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "requests": len(self.log),
                "in_flight": self.in_flight,
                "peak_concurrency": self.peak,
                "refused": self.refused,
                "cpu_seconds": time.process_time() - self.cpu_start,
                "settings": {
                    "fixed": self.settings.fixed,
                    "per_token": self.settings.per_token,
                    "jitter": self.settings.jitter,
                    "tokens": self.settings.tokens,
                    "accuracy": self.settings.accuracy,
                    "slots": self.settings.slots,
                    "capacity": self.settings.capacity,
                },
            }
        )

    async def get_log(self, request: Request) -> JSONResponse:
        return JSONResponse(self.log)

    async def post_reset(self, request: Request) -> JSONResponse:
        self.reset()
        return JSONResponse({"ok": True})


def parse_tokens(text: str) -> dict[str, int]:
    """'forward=50,update=60' over the defaults."""
    tokens = dict(DEFAULT_TOKENS)
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        tokens[name.strip()] = int(value)
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--fixed", type=float, default=Settings.fixed, help="seconds per request")
    parser.add_argument("--per-token", type=float, default=Settings.per_token)
    parser.add_argument("--jitter", type=float, default=0.0, help="max extra seconds")
    parser.add_argument("--tokens", default="", help="output words per purpose: forward=50,...")
    parser.add_argument("--accuracy", type=float, default=Settings.accuracy)
    parser.add_argument("--answers", type=Path, help="JSON {question: target}")
    parser.add_argument("--slots", type=int, help="requests served at once (default: no limit)")
    parser.add_argument("--capacity", type=int, help="more in flight than this: a 429 at once")
    args = parser.parse_args()
    answers = json.loads(args.answers.read_text()) if args.answers else {}
    settings = Settings(
        args.fixed,
        args.per_token,
        args.jitter,
        parse_tokens(args.tokens),
        args.accuracy,
        {q.strip(): str(t) for q, t in answers.items()},
        args.slots,
        args.capacity,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this: without it, Nagle's algorithm meets the client's
    # delayed ACK and every reply waits 40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((args.host, args.port))
    sock.listen(4096)
    print(f"listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    server = LatencyServer(settings)
    config = uvicorn.Config(
        server.app, log_level="warning", access_log=False, lifespan="off", backlog=4096
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
