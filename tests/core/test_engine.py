"""The LLM wrapper's logic, with scripted backends: cache, dedup, retries, errors, usage."""

from __future__ import annotations

import asyncio
import sqlite3

import diskcache
import pytest

from fedtextgrad import FedTextGradError
from fedtextgrad.llm import (
    LLM,
    Completion,
    EngineError,
    LLMSettings,
    ResponseCache,
    ScriptedBackend,
    TransientEngineError,
    open_engine,
    scripted_engine,
)
from fedtextgrad.llm.usage import track_usage


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """Backoff waits are real sleeps: keep them short here."""
    monkeypatch.setattr("fedtextgrad.llm.engine._backoff", lambda state: 0.01)


def test_repeated_call_is_a_cache_hit_with_no_new_tokens(tmp_path):
    async def main():
        llm = scripted_engine(lambda m: "four", cache=ResponseCache(tmp_path))
        assert await llm.ask("2+2?", purpose="p") == "four"
        tokens = llm.usage.total().total_tokens
        assert await llm.ask("2+2?", purpose="p") == "four"
        total = llm.usage.total()
        assert (total.calls, total.cache_hits, total.total_tokens) == (2, 1, tokens)
        # ...but what it would have cost is kept, so runs sharing a cache compare fairly.
        assert tokens > 0 and (total.cached_tokens, total.tokens_used) == (tokens, 2 * tokens)
        assert len(llm.backend.requests) == 1

    asyncio.run(main())


def corrupt(path, monkeypatch):
    path.mkdir()
    (path / "cache.db").write_bytes(b"\x00not sqlite\xff" * 1000)
    return path


def full(path, monkeypatch):
    def no_room(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(diskcache.Cache, "set", no_room)
    return path


def a_file(path, monkeypatch):  # llm.cache_dir set to someone's file
    path.write_text("notes")
    return path


def under_a_file(path, monkeypatch):
    return a_file(path, monkeypatch) / "cache"


CACHE_DAMAGE = {"corrupt": corrupt, "full": full, "a file": a_file, "under a file": under_a_file}


@pytest.mark.parametrize("damage", CACHE_DAMAGE)
def test_a_cache_that_cannot_be_used_is_one_line(tmp_path, monkeypatch, damage):
    def ask():
        llm = scripted_engine(lambda m: "four", cache=ResponseCache(where))
        return asyncio.run(llm.ask("2+2?", purpose="p"))

    where = CACHE_DAMAGE[damage](tmp_path / "cache", monkeypatch)
    with pytest.raises(FedTextGradError, match="the response cache in .* cannot be used") as caught:
        ask()
    assert "llm.cache_dir" in str(caught.value) and "\n" not in str(caught.value)


def test_cache_persists_across_engines_and_keys_on_sampling_params(tmp_path):
    async def main():
        first = scripted_engine(lambda m: "a", cache=ResponseCache(tmp_path))
        await first.ask("q", purpose="p")
        second = scripted_engine(lambda m: "b", cache=ResponseCache(tmp_path))
        assert await second.ask("q", purpose="p") == "a"  # same request: served from disk
        assert await second.ask("q", purpose="p", max_tokens=7) == "b"  # different request
        assert await second.ask("q", purpose="p", temperature=0.7) == "b"  # unseeded sampling
        assert await second.ask("q", purpose="p", temperature=0.7) == "b"
        assert len(second.backend.requests) == 3  # sampled answers are never cached unseeded

    asyncio.run(main())


def test_identical_requests_in_flight_share_one_call(tmp_path):
    async def main():
        backend = ScriptedBackend(lambda m: "x", delay=0.05)
        llm = LLM("scripted:x", backend, cache=ResponseCache(tmp_path))
        replies = await asyncio.gather(*(llm.ask("same", purpose="p") for _ in range(5)))
        assert replies == ["x"] * 5
        assert len(backend.requests) == 1
        assert llm.usage.total().cache_hits == 4

    asyncio.run(main())


class FlakyBackend(ScriptedBackend):
    def __init__(self, failures: list[Exception]):
        super().__init__(lambda m: "ok")
        self.failures = failures

    async def chat(self, messages, **kw) -> Completion:
        if self.failures:
            raise self.failures.pop(0)
        return await super().chat(messages, **kw)


def test_transient_errors_are_retried_and_counted():
    async def main():
        backend = FlakyBackend([TransientEngineError("503", retry_after=0.01)] * 2)
        llm = LLM("scripted:flaky", backend, max_retries=3)
        assert await llm.ask("q", purpose="p") == "ok"
        assert llm.usage.by_purpose["p"].retries == 2

    asyncio.run(main())


def test_retries_give_up_with_one_clear_error():
    async def main():
        llm = LLM("scripted:down", FlakyBackend([TransientEngineError("503")] * 5), max_retries=1)
        with pytest.raises(EngineError, match=r"scripted:down: 503 \(gave up after 2 attempts"):
            await llm.ask("q", purpose="p")
        assert llm.usage.by_purpose["p"].errors == 1

    asyncio.run(main())


def test_permanent_errors_are_not_retried():
    async def main():
        backend = FlakyBackend([EngineError("bad key"), EngineError("bad key")])
        llm = LLM("scripted:x", backend, max_retries=3)
        with pytest.raises(EngineError, match="bad key"):
            await llm.ask("q", purpose="p")
        assert len(backend.failures) == 1

    asyncio.run(main())


def test_a_stalled_call_times_out_and_is_retried():
    async def main():
        backend = ScriptedBackend(lambda m: "late", delay=1.0)
        llm = LLM("scripted:slow", backend, timeout=0.05, max_retries=1)
        with pytest.raises(EngineError, match="no reply within 0.05 s"):
            await llm.ask("q", purpose="p")
        assert llm.usage.by_purpose["p"].retries == 1

    asyncio.run(main())


def test_empty_replies_are_treated_as_transient():
    async def main():
        replies = iter(["", "fine"])
        llm = LLM("scripted:e", ScriptedBackend(lambda m: next(replies)), max_retries=2)
        assert await llm.ask("q", purpose="p") == "fine"

    asyncio.run(main())


def test_concurrency_limit_is_respected():
    async def main():
        live = peak = 0

        class Counting(ScriptedBackend):
            async def chat(self, messages, **kw):
                nonlocal live, peak
                live += 1
                peak = max(peak, live)
                await asyncio.sleep(0.01)
                live -= 1
                return await super().chat(messages, **kw)

        llm = LLM("scripted:c", Counting(lambda m: "r"), concurrency=3)
        await asyncio.gather(*(llm.ask(f"q{i}", purpose="p") for i in range(10)))
        assert peak == 3

    asyncio.run(main())


def test_usage_scopes_separate_concurrent_work():
    async def main():
        llm = scripted_engine(lambda m: "one two three")

        async def worker(n: int):
            with track_usage() as usage:
                for i in range(n):
                    await llm.ask(f"{n}-{i}", purpose="forward")
            return usage

        a, b = await asyncio.gather(worker(2), worker(5))
        assert a.total().calls == 2 and b.total().calls == 5
        assert llm.usage.total().calls == 7
        assert a.total().completion_tokens == 6

    asyncio.run(main())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gpt-4", "invalid engine spec 'gpt-4'"),
        ("foo:bar", "unknown engine kind 'foo'"),
        ("local:no-such-model", "unknown local model 'no-such-model'"),
        ("local:/nowhere/model.gguf", "GGUF file not found: /nowhere/model.gguf"),
    ],
)
def test_bad_engine_specs_get_one_line(spec, message):
    with pytest.raises(EngineError, match=message) as info:
        open_engine(spec, LLMSettings(cache=False))
    assert "\n" not in str(info.value)


class PenaltyRecorder(ScriptedBackend):
    """Remembers the frequency penalty of each request it answers."""

    def __init__(self):
        super().__init__(lambda m: "Answer: 4", delay=0.3)
        self.penalties: list[float] = []

    async def chat(self, messages, **kw) -> Completion:
        self.penalties.append(kw.get("frequency_penalty", 0.0))
        return await super().chat(messages, **kw)


def test_a_request_asked_anew_after_its_twins_sender_is_cancelled_keeps_its_options(tmp_path):
    async def main():
        backend = PenaltyRecorder()
        llm = LLM("scripted:penalty", backend, cache=ResponseCache(tmp_path))
        ask = lambda: llm.chat(  # noqa: E731
            [{"role": "user", "content": "q"}], purpose="update", frequency_penalty=0.5
        )
        sender = asyncio.create_task(ask())
        await asyncio.sleep(0.05)
        sharer = asyncio.create_task(ask())
        await asyncio.sleep(0.05)
        sender.cancel()
        assert (await sharer).text == "Answer: 4"
        assert backend.penalties == [0.5, 0.5]  # the re-ask had dropped its penalty
        before = len(backend.penalties)
        await ask()  # cached under the penalty's key: no new call
        assert len(backend.penalties) == before

    asyncio.run(main())


class LogprobBackend(ScriptedBackend):
    def __init__(self, failures: int = 0):
        super().__init__(lambda m: "x", delay=0.05)
        self.failures, self.logprob_calls = failures, 0

    async def prompt_logprobs(self, text):
        from fedtextgrad.llm.base import TokenLogprob

        self.logprob_calls += 1
        await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise TransientEngineError("503")
        return [TokenLogprob(word, -1.0) for word in text.split()]


def test_log_probabilities_take_the_same_path_as_chats(tmp_path):
    """Retries, error counting, sharing of identical requests and the cache, as for chats."""

    async def main():
        flaky = LLM("scripted:lp", LogprobBackend(failures=2), max_retries=3)
        assert [p.token for p in await flaky.prompt_logprobs("a b")] == ["a", "b"]
        assert flaky.usage.total().retries == 2
        failing = LLM("scripted:lp", LogprobBackend(failures=9), max_retries=1)
        with pytest.raises(EngineError, match="gave up after 2 attempts"):
            await failing.prompt_logprobs("a b")
        assert failing.usage.total().errors == 1
        backend = LogprobBackend()
        shared = LLM("scripted:lp", backend, cache=ResponseCache(tmp_path))
        results = await asyncio.gather(*(shared.prompt_logprobs("a b c") for _ in range(4)))
        assert all(len(r) == 3 for r in results) and backend.logprob_calls == 1

    asyncio.run(main())
