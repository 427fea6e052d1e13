"""`LLM`: one client object for every backend, with caching, retries, a concurrency limit,
timeouts and usage accounting. Every LLM call of FedTextGrad goes through it."""

from __future__ import annotations

import asyncio
import json
import time

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
from fedtextgrad.llm.usage import Usage, record

_backoff = wait_exponential_jitter(initial=1, max=30)
_MAX_RETRY_AFTER = 60.0  # a server asking for an hour would stall the whole round silently


def _wait(state: RetryCallState) -> float:
    """Exponential backoff, but never sooner than the server's Retry-After (up to a minute)."""
    error = state.outcome.exception() if state.outcome else None
    retry_after = min(getattr(error, "retry_after", None) or 0.0, _MAX_RETRY_AFTER)
    return max(retry_after, _backoff(state))


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
        self._slots = asyncio.Semaphore(concurrency)
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
        request = dict(messages=messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
        if frequency_penalty:  # only when set, so that other requests keep their cache keys
            request["frequency_penalty"] = frequency_penalty
        # Sampled answers are only replayable when seeded; greedy ones always are.
        if self.cache is None or (temperature > 0 and seed is None):
            return await self._call(purpose, request)
        key = cache_key(engine=self.backend.identity, **request)
        if (hit := self.cache.get(key)) is not None:
            _record_hit(self.usage, purpose, hit)
            return hit
        if key in self._in_flight:  # an identical request is being answered: share its reply
            try:
                shared = await asyncio.shield(self._in_flight[key])
            except asyncio.CancelledError:
                if asyncio.current_task().cancelling():  # we are cancelled ourselves
                    raise
                # Its sender was cancelled (a client past the round deadline), not us: ask anew.
                return await self.chat(
                    messages,
                    purpose=purpose,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                )
            _record_hit(self.usage, purpose, shared)
            return shared
        future = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            completion = await self._call(purpose, request)
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

    async def prompt_logprobs(self, text: str, *, purpose: str = "metrics") -> list[TokenLogprob]:
        """Log-probabilities of the tokens of `text` under this model (for surprisal metrics)."""
        key = cache_key(engine=self.backend.identity, logprobs_of=text)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            _record_hit(self.usage, purpose, hit)
            return [TokenLogprob(*pair) for pair in _decode_pairs(hit.text)]
        async with self._slots:
            started = time.perf_counter()
            result = await asyncio.wait_for(self.backend.prompt_logprobs(text), self.timeout)
            record(
                self.usage,
                purpose,
                calls=1,
                prompt_tokens=len(result),
                seconds=time.perf_counter() - started,
            )
        if self.cache is not None:
            self.cache.put(key, Completion(_encode_pairs(result), len(result), 0))
        return result

    async def count_tokens(self, text: str) -> int:
        """Tokens of `text` under this model's tokenizer; about 4 characters each if it has none."""
        exact = await self.backend.count_tokens(text)
        return exact if exact is not None else -(-len(text) // 4)

    async def _call(self, purpose: str, request: dict) -> Completion:
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
                    return await self._call_once(purpose, request)
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

    async def _call_once(self, purpose: str, request: dict) -> Completion:
        async with self._slots:
            started = time.perf_counter()
            try:
                completion = await asyncio.wait_for(
                    self.backend.chat(
                        request["messages"],
                        **{key: value for key, value in request.items() if key != "messages"},
                    ),
                    self.timeout,
                )
            except TimeoutError:
                raise TransientEngineError(f"no reply within {self.timeout:g} s") from None
            record(
                self.usage,
                purpose,
                calls=1,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                seconds=time.perf_counter() - started,
            )
        if not completion.text.strip() and completion.finish_reason != "length":
            raise TransientEngineError("the endpoint returned an empty reply")
        return completion

    async def aclose(self) -> None:
        await self.backend.aclose()


def _record_hit(usage: Usage, purpose: str, hit: Completion) -> None:
    cached = hit.prompt_tokens + hit.completion_tokens
    record(usage, purpose, calls=1, cache_hits=1, cached_tokens=cached)


def _encode_pairs(pairs: list[TokenLogprob]) -> str:
    return json.dumps([[p.token, p.logprob] for p in pairs])


def _decode_pairs(text: str) -> list[list]:
    return json.loads(text)
