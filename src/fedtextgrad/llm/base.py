"""What every backend speaks: chat messages in, a completion out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fedtextgrad.errors import EngineError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    cached: bool = False


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float


class TransientEngineError(EngineError):
    """A failure worth retrying: 5xx, 429, timeouts, dropped connections, empty replies.
    `overloaded`: the endpoint says it has too much to do (429, a timeout): send less at once."""

    def __init__(self, message: str, retry_after: float | None = None, *, overloaded: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.overloaded = overloaded


class Backend(Protocol):
    """A model endpoint. Backends do one request each; the `LLM` wrapper adds the rest."""

    identity: str  # everything about the backend that changes answers (goes into cache keys)

    async def chat(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        frequency_penalty: float = 0.0,
    ) -> Completion: ...

    async def prompt_logprobs(self, text: str) -> list[TokenLogprob]: ...

    async def count_tokens(self, text: str) -> int | None: ...  # None: no tokenizer available

    async def aclose(self) -> None: ...
