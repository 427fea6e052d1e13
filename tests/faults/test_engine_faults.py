"""The engine layer against a real HTTP endpoint that fails on purpose: transient faults are
retried and counted, permanent ones end in one clear EngineError line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedtextgrad.llm import EngineError, LLMSettings, open_engine
from fedtextgrad.robustness import FaultServer
from fedtextgrad.robustness.fault_server import PERMANENT, TRANSIENT

pytest_plugins = ["fault_fixtures"]  # the `server` and `no_backoff` fixtures

CLI = str(Path(sys.executable).with_name("fedtextgrad"))


def engine_for(server: FaultServer, **settings):
    defaults = {"api_key": "sk-local", "max_retries": 2, "timeout": 3.0, "cache": False}
    return open_engine(
        "openai:fault-model", LLMSettings(base_url=server.url, **defaults | settings)
    )


def ask(llm, text="How many?"):
    async def go():
        try:
            return await llm.ask(text, purpose="forward", max_tokens=16)
        finally:
            await llm.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("fault", TRANSIENT)
def test_a_transient_fault_is_retried_and_counted(server, no_backoff, fault):
    server.inject(fault)
    llm = engine_for(server)
    assert ask(llm) == "Let me count.\nAnswer: 3"
    counts = llm.usage.by_purpose["forward"]
    assert counts.retries == 1 and counts.errors == 0
    assert [seen.fault for seen in server.requests] == [fault, None]


def test_a_burst_of_every_transient_fault_in_a_row_is_survived(server, no_backoff):
    server.inject(*TRANSIENT)
    llm = engine_for(server, max_retries=len(TRANSIENT))
    assert ask(llm).endswith("Answer: 3")
    assert llm.usage.total().retries == len(TRANSIENT) and llm.usage.total().errors == 0


def test_concurrent_requests_share_a_flaky_endpoint(server, no_backoff):
    faults = ("503", "reset", "429", "truncated", "hang", "empty_reply")
    server.inject(*faults)  # whichever requests meet them, none can meet more than all six

    async def many():
        llm = engine_for(server, max_retries=len(faults), concurrency=4)
        try:
            replies = await asyncio.gather(
                *(llm.ask(f"question {i}", purpose="forward") for i in range(12))
            )
        finally:
            await llm.aclose()
        return llm, replies

    llm, replies = asyncio.run(many())
    assert all(r.endswith("Answer: 3") for r in replies)
    assert llm.usage.total().retries == len(faults) and llm.usage.total().errors == 0


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("401", "the API key was rejected"),
        ("404", "model or endpoint not found"),
        ("400_context", "longer than the model's context window"),
        ("quota", "no quota left"),
    ],
)
def test_a_permanent_fault_is_one_clear_line_without_retries(server, no_backoff, fault, words):
    assert fault in PERMANENT
    server.inject(fault)
    llm = engine_for(server)
    with pytest.raises(EngineError) as caught:
        ask(llm)
    message = str(caught.value)
    assert words in message and "\n" not in message and "openai:fault-model" in message
    assert len(server.requests) == 1  # not retried
    assert llm.usage.total().errors == 1 and llm.usage.total().retries == 0


def test_an_endpoint_that_stays_down_gives_up_with_one_line(server, no_backoff):
    server.always = "503"
    llm = engine_for(server, max_retries=3)
    with pytest.raises(EngineError) as caught:
        ask(llm)
    assert "server error 503 (gave up after 4 attempts" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert len(server.requests) == 4
    assert llm.usage.total().retries == 3 and llm.usage.total().errors == 1


def test_a_hanging_endpoint_times_out_and_is_retried(server, no_backoff):
    server.inject("hang", "hang")
    llm = engine_for(server, timeout=2.0, max_retries=2)
    assert ask(llm).endswith("Answer: 3")
    assert llm.usage.total().retries == 2


def test_retry_after_is_honoured(no_backoff):
    """A lower bound, not a speed measurement: the retry never comes sooner than asked."""
    with FaultServer(lambda m: "Answer: 3", retry_after=1.0) as server:
        server.inject("429")
        assert ask(engine_for(server)).endswith("3")
        first, second = server.requests
    assert second.time - first.time >= 1.0


def test_an_unreachable_endpoint_is_one_line(no_backoff):
    with FaultServer() as server:
        url = server.url
    llm = open_engine(
        "openai:m", LLMSettings(base_url=url, max_retries=1, timeout=1.0, cache=False)
    )
    with pytest.raises(EngineError, match=r"cannot reach .*gave up after 2 attempts"):
        ask(llm)


def test_the_cli_reports_an_engine_failure_in_one_line(server):
    server.always = "401"
    env = {**os.environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-cli-key-0000"}
    done = subprocess.run(
        [CLI, "ask", "hi", "--engine", "openai:m", "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 4  # an engine error
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the API key was rejected" in lines[0]
    assert "Traceback" not in done.stderr and "sk-cli-key-0000" not in done.stderr + done.stdout


def test_a_huge_retry_after_is_capped_at_a_minute():
    """A server asking for an hour must not stall a round silently for an hour."""
    from types import SimpleNamespace

    from fedtextgrad.llm import TransientEngineError
    from fedtextgrad.llm.engine import _wait

    error = TransientEngineError("rate limited (429)", retry_after=3600)
    state = SimpleNamespace(outcome=SimpleNamespace(exception=lambda: error), attempt_number=1)
    assert 60 <= _wait(state) <= 61  # the cap; the first backoff step is 1-2 s


@pytest.mark.parametrize("fault", ["content_parts", "null_usage"])
def test_an_odd_but_valid_reply_is_used_as_it_is(server, fault):
    server.inject(fault)
    llm = engine_for(server)
    assert ask(llm) == "Let me count.\nAnswer: 3"
    assert llm.usage.total().retries == 0 and llm.usage.total().errors == 0


def test_a_fan_out_as_wide_as_the_concurrency_reuses_its_connections():
    def slow(messages) -> str:  # every call of a fan-out in flight together
        time.sleep(0.3)
        return "Answer: 3"

    async def fan_out(llm) -> None:
        await asyncio.gather(
            *(llm.ask(f"q{i}", purpose="forward", max_tokens=4) for i in range(150))
        )

    async def main(llm) -> None:
        try:
            await fan_out(llm)
            await fan_out(llm)
        finally:
            await llm.aclose()

    with FaultServer(slow) as server:
        asyncio.run(main(engine_for(server, concurrency=150)))
        connections = {seen.connection for seen in server.requests}
    # The SDK's default pool keeps 100 alive: 50 would reconnect on the second fan-out.
    assert len(server.requests) == 300 and len(connections) == 150
