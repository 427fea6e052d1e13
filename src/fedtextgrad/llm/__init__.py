"""The engine layer: every LLM call goes through an `LLM` opened from a spec string.

Specs: `local:<name or path.gguf>` (embedded llama.cpp) and `openai:<model>` (any
OpenAI-compatible endpoint)."""

from __future__ import annotations

import os

from fedtextgrad.llm.base import (
    Backend,
    Completion,
    EngineError,
    Message,
    TokenLogprob,
    TransientEngineError,
)
from fedtextgrad.llm.cache import ResponseCache
from fedtextgrad.llm.engine import LLM
from fedtextgrad.llm.scripted import ScriptedBackend
from fedtextgrad.llm.settings import LLMSettings, check_base_url
from fedtextgrad.llm.usage import Counts, Usage

__all__ = [
    "LLM",
    "Backend",
    "Completion",
    "Counts",
    "EngineError",
    "LLMSettings",
    "Message",
    "ResponseCache",
    "ScriptedBackend",
    "TokenLogprob",
    "TransientEngineError",
    "Usage",
    "open_engine",
    "scripted_engine",
]

SPEC_HELP = "use local:<model name or .gguf path> or openai:<model>"


def open_engine(
    spec: str, settings: LLMSettings | None = None, cache: ResponseCache | None = None
) -> LLM:
    """Open the engine a spec names. `cache` is shared by all engines of an experiment."""
    settings = settings or LLMSettings()
    kind, _, name = spec.partition(":")
    if not name:
        raise EngineError(f"invalid engine spec '{spec}': {SPEC_HELP}")
    if settings.cache and cache is None:
        cache = ResponseCache(settings.cache_dir)
    if kind == "local":
        from fedtextgrad.llm.local import LocalBackend

        backend: Backend = LocalBackend(
            name,
            n_parallel=settings.n_parallel,
            n_ctx=settings.n_ctx,
            threads=settings.threads,
            timeout=settings.timeout,
        )
        concurrency = settings.concurrency or settings.n_parallel
    elif kind == "openai":
        from fedtextgrad.llm.openai_backend import OpenAIBackend

        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        concurrency = settings.concurrency or 64  # remote servers batch; see BENCHMARKS.md
        backend = OpenAIBackend(
            name,
            base_url=settings.base_url or _env_base_url(),
            api_key=api_key or os.environ.get("OPENAI_API_KEY"),
            timeout=settings.timeout,
            connections=concurrency,
        )
    else:
        raise EngineError(f"unknown engine kind '{kind}' in '{spec}': {SPEC_HELP}")
    return LLM(
        spec,
        backend,
        cache=cache if settings.cache else None,
        concurrency=concurrency,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        temperature=settings.temperature,
    )


def _env_base_url() -> str | None:
    """OPENAI_BASE_URL, checked as llm.base_url is (a bad port would fail mid-run)."""
    url = os.environ.get("OPENAI_BASE_URL") or None
    if url:
        try:
            check_base_url(url)
        except ValueError as error:
            raise EngineError(f"OPENAI_BASE_URL: {error}") from None
    return url


def scripted_engine(
    responder, *, name: str = "scripted", cache: ResponseCache | None = None, **kw
) -> LLM:
    """An `LLM` whose replies come from `responder(messages) -> str` (tests, examples)."""
    return LLM(f"scripted:{name}", ScriptedBackend(responder, name=name), cache=cache, **kw)
