"""The adaptive concurrency limit: the ceiling on a fast endpoint, backing off on an overloaded
one, growing back after it recovers; scripted endpoints."""

from __future__ import annotations

import asyncio

import pytest

from fedtextgrad.llm import LLM, Completion, ScriptedBackend, TransientEngineError
from fedtextgrad.llm.limit import AdaptiveLimit


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr("fedtextgrad.llm.engine._backoff", lambda state: 0.001)


class Endpoint(ScriptedBackend):
    """Answers after `delay`; with `capacity`, a request beyond that many in flight gets a 429."""

    def __init__(self, capacity: int | None = None, delay: float = 0.02):
        super().__init__(lambda m: "ok", delay=delay)
        self.capacity, self.in_flight, self.peak, self.refused = capacity, 0, 0, 0

    async def chat(self, messages, **kw) -> Completion:
        if self.capacity is not None and self.in_flight >= self.capacity:
            self.refused += 1
            raise TransientEngineError("rate limited (429)", overloaded=True)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super().chat(messages, **kw)
        finally:
            self.in_flight -= 1


async def burst(llm: LLM, n: int) -> list[str]:
    return await asyncio.gather(*(llm.ask(f"q{i}", purpose="p") for i in range(n)))


def test_a_fast_endpoint_gets_the_whole_ceiling():
    endpoint = Endpoint()
    llm = LLM("scripted:fast", endpoint, concurrency=16)
    assert asyncio.run(burst(llm, 48)) == ["ok"] * 48
    assert endpoint.peak == 16 and llm.concurrency.limit == 16


def test_an_overloaded_endpoint_is_sent_less_and_every_call_completes():
    endpoint = Endpoint(capacity=4)
    llm = LLM("scripted:busy", endpoint, concurrency=32, max_retries=20)
    assert asyncio.run(burst(llm, 64)) == ["ok"] * 64
    assert endpoint.refused > 0 and llm.concurrency.limit < 32
    refused = endpoint.refused
    asyncio.run(burst(llm, 64))  # the limit learned: far fewer refusals the second time
    assert endpoint.refused - refused < refused


def test_one_burst_of_failures_halves_the_limit_once_and_successes_grow_it_back():
    limit = AdaptiveLimit(16)

    async def scenario():
        epochs = [await limit.acquire() for _ in range(8)]
        for epoch in epochs:  # eight calls sent together all fail
            limit.overloaded(epoch)
            limit.release()
        assert limit.limit == 8
        for _ in range(200):
            limit.succeeded()
        assert limit.limit == 16

    asyncio.run(scenario())


def test_a_cancelled_waiter_passes_its_wake_up_on():
    limit = AdaptiveLimit(1)

    async def scenario():
        await limit.acquire()
        first = asyncio.create_task(limit.acquire())
        second = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0)
        limit.release()  # wakes `first` ...
        first.cancel()  # ... which is cancelled before it runs
        await asyncio.wait_for(second, 1)  # the slot reaches `second`
        assert first.cancelled()

    asyncio.run(scenario())
