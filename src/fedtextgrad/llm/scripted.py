"""A deterministic engine for tests and examples: replies come from a Python function.

It stands in for a model only where the logic around the model is under test; it is never a
default and never resolves from a config string."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

from fedtextgrad.llm.base import Completion, EngineError, Message, TokenLogprob

# (messages) -> reply, or (messages, *, seed) -> reply for a responder that samples by seed.
Responder = Callable[..., str]


class ScriptedBackend:
    def __init__(self, responder: Responder, *, name: str = "scripted", delay: float = 0.0):
        self.responder = responder
        self._seeded = "seed" in inspect.signature(responder).parameters
        self.identity = f"scripted:{name}"
        self.delay = delay
        self.requests: list[list[Message]] = []

    async def chat(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        frequency_penalty: float = 0.0,
    ) -> Completion:
        self.requests.append(list(messages))
        if self.delay:
            await asyncio.sleep(self.delay)
        text = self.responder(messages, seed=seed) if self._seeded else self.responder(messages)
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        return Completion(text, prompt_tokens, len(text.split()))

    async def prompt_logprobs(self, text: str) -> list[TokenLogprob]:
        raise EngineError(f"{self.identity}: prompt log-probabilities are not supported")

    async def count_tokens(self, text: str) -> int | None:
        return len(text.split())

    async def aclose(self) -> None:
        return None
