"""`LLM`: one client object for every backend, with caching, retries, an adaptive concurrency
limit, timeouts and usage accounting. Every LLM call of FedTextGrad goes through it."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from fedtextgrad.llm.base import (
    Backend,
    Completion,
    EngineError,
    Message,
    TokenLogprob,
    TransientEngineError,
)
from fedtextgrad.llm.cache import ResponseCache, cache_key
from fedtextgrad.llm.limit import AdaptiveLimit
from fedtextgrad.llm.usage import Usage, record

_backoff = wait_exponential_jitter(initial=1, max=30)
_MAX_RETRY_AFTER = 60.0  # a server asking for an hour would stall the whole round silently


def _wait(state: RetryCallState) -> float:
    """Exponential backoff, but never sooner than the server's Retry-After (up to a minute)."""
    error = state.outcome.exception() if state.outcome else None
    retry_after = min(getattr(error, "retry_after", None) or 0.0, _MAX_RETRY_AFTER)
    return max(retry_after, _backoff(state))


@dataclass(frozen=True)
class Request:
    """One call: a chat, or the log-probabilities of a text. Its cache key is everything that
    changes the answer."""

    messages: list[Message] | None = None
    logprobs_of: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int | None = None
    frequency_penalty: float = 0.0

    def options(self) -> dict:
        """The chat's options; frequency_penalty only when set, so that other requests keep
        their cache keys."""
        options = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }
        if self.frequency_penalty:
            options["frequency_penalty"] = self.frequency_penalty
        return options

    @property
    def replayable(self) -> bool:
        """Sampled answers are only replayable when seeded; greedy ones always are."""
        return self.temperature <= 0 or self.seed is not None

    def key(self, engine: str) -> str:
        if self.logprobs_of is not None:
            return cache_key(engine=engine, logprobs_of=self.logprobs_of)
        return cache_key(engine=engine, messages=self.messages, **self.options())


class LLM:
    def __init__(
        self,
        spec: str,
        backend: Backend,
        *,
        cache: ResponseCache | None = None,
        concurrency: int = 4,
        timeout: float = 600.0,
        max_retries: int = 4,
        temperature: float = 0.0,
    ):
        self.spec = spec
        self.backend = backend
        self.cache = cache
        self.timeout = timeout
        self.max_retries = max_retries
        self.temperature = temperature
        self.usage = Usage()
        self.concurrency = AdaptiveLimit(concurrency)  # calls in flight: backs off on overload
        self._in_flight: dict[str, asyncio.Future[Completion]] = {}

    def __repr__(self) -> str:
        return f"LLM({self.spec!r})"

    async def ask(
        self, prompt: str, *, system: str | None = None, purpose: str = "ask", **kw
    ) -> str:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        return (await self.chat(messages, purpose=purpose, **kw)).text

    async def chat(
        self,
        messages: list[Message],
        *,
        purpose: str,
        max_tokens: int = 512,
        temperature: float | None = None,
        seed: int | None = None,
        frequency_penalty: float = 0.0,
    ) -> Completion:
        temperature = self.temperature if temperature is None else temperature
        request = Request(messages, None, max_tokens, temperature, seed, frequency_penalty)
        return await self._send(request, purpose)

    async def prompt_logprobs(self, text: str, *, purpose: str = "metrics") -> list[TokenLogprob]:
        """Log-probabilities of the tokens of `text` under this model (for surprisal metrics)."""
        completion = await self._send(Request(logprobs_of=text), purpose)
        return [TokenLogprob(*pair) for pair in json.loads(completion.text)]

    async def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer; about 4 characters each if it has none."""
        exact = await self.backend.count_tokens(text)
        return exact if exact is not None else -(-len(text) // 4)

    # -- the call path: cache ► shared in-flight ► retries ► slot, timeout, usage ► backend ----

    async def _send(self, request: Request, purpose: str) -> Completion:
        if self.cache is None or not request.replayable:
            return await self._retried(request, purpose)
        key = request.key(self.backend.identity)
        if (hit := self.cache.get(key)) is not None:
            _record_hit(self.usage, purpose, hit)
            return hit
        return await self._shared(key, request, purpose)

    async def _shared(self, key: str, request: Request, purpose: str) -> Completion:
        """Identical requests in flight at once make one backend call; the others share it."""
        if key in self._in_flight:
            try:
                shared = await asyncio.shield(self._in_flight[key])
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():  # we are cancelled ourselves
                    raise
                # Its sender was cancelled (a client past the round deadline), not us: ask anew.
                return await self._shared(key, request, purpose)
            _record_hit(self.usage, purpose, shared)
            return shared
        future = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            completion = await self._retried(request, purpose)
            self.cache.put(key, completion)
            future.set_result(completion)
            return completion
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: nobody may be waiting
            raise
        finally:
            del self._in_flight[key]

    async def _retried(self, request: Request, purpose: str) -> Completion:
        def count_retry(state: RetryCallState) -> None:
            record(self.usage, purpose, retries=1)

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(TransientEngineError),
                stop=stop_after_attempt(self.max_retries + 1),
                wait=_wait,
                before_sleep=count_retry,
                reraise=True,
            ):
                with attempt:
                    return await self._once(request, purpose)
        except TransientEngineError as error:
            record(self.usage, purpose, errors=1)
            raise EngineError(
                f"{self.spec}: {error} (gave up after {self.max_retries + 1} attempts; "
                "check the endpoint or raise llm.max_retries / llm.timeout)"
            ) from None
        except EngineError:
            record(self.usage, purpose, errors=1)
            raise
        raise AssertionError("unreachable")

    async def _once(self, request: Request, purpose: str) -> Completion:
        epoch = await self.concurrency.acquire()
        try:
            started = time.perf_counter()
            try:
                completion = await asyncio.wait_for(self._backend_call(request), self.timeout)
            except TimeoutError:
                raise TransientEngineError(
                    f"no reply within {self.timeout:g} s", overloaded=True
                ) from None
            record(
                self.usage,
                purpose,
                calls=1,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                seconds=time.perf_counter() - started,
            )
            self.concurrency.succeeded()
        except TransientEngineError as error:
            if error.overloaded:
                self.concurrency.overloaded(epoch)
            raise
        finally:
            self.concurrency.release()
        empty = not completion.text.strip() and completion.finish_reason != "length"
        if request.logprobs_of is None and empty:
            raise TransientEngineError("the endpoint returned an empty reply")
        return completion

    async def _backend_call(self, request: Request) -> Completion:
        if request.logprobs_of is not None:  # as a completion, so the cache can keep it
            pairs = await self.backend.prompt_logprobs(request.logprobs_of)
            text = json.dumps([[p.token, p.logprob] for p in pairs])
            return Completion(text, len(pairs), 0)
        return await self.backend.chat(list(request.messages or ()), **request.options())

    async def aclose(self) -> None:
        await self.backend.aclose()


def _record_hit(usage: Usage, purpose: str, hit: Completion) -> None:
    cached = hit.prompt_tokens + hit.completion_tokens
    record(usage, purpose, calls=1, cache_hits=1, cached_tokens=cached)
