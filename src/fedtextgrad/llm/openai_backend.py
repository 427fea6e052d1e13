"""Any OpenAI-compatible endpoint (vLLM, SGLang, Ollama, llama.cpp server, OpenAI, OpenRouter)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import openai

from fedtextgrad.llm.base import (
    Completion,
    EngineError,
    Message,
    TokenLogprob,
    TransientEngineError,
)
from fedtextgrad.redaction import redact, register


class OpenAIBackend:
    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float,
        connections: int = 100,
    ):
        self.model = model
        # A connection kept open for every call in flight: with the SDK's 100, a wider fan-out
        # opens and closes one per call (30% of a 1000-client round's time, BENCHMARKS.md).
        pool = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        # The SDK's own retries are off: the LLM wrapper retries, counts and reports them.
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=pool),
        )
        self.identity = f"openai:{model}@{self.client.base_url}"
        register(api_key)  # never echoed: replies and error messages are redacted of it

    async def chat(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None,
        frequency_penalty: float = 0.0,
    ) -> Completion:
        body: dict = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if seed is not None:
            body["seed"] = seed
        if frequency_penalty:
            body["frequency_penalty"] = frequency_penalty
        with _translated_errors(self.identity):
            # The SDK's documented `post` for a raw body: its errors, auth and pool, without the
            # typed request transform and response models (~2 ms of CPU a call, BENCHMARKS.md).
            reply = await self.client.post("/chat/completions", cast_to=dict, body=body)
        # A proxy's HTML page comes back from the SDK as a plain str: no choices either way.
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise TransientEngineError("the endpoint returned no completion choices")
        choice, usage = choices[0], reply.get("usage")
        return Completion(
            text=redact(_text((choice.get("message") or {}).get("content"))),
            prompt_tokens=_count(usage, "prompt_tokens"),
            completion_tokens=_count(usage, "completion_tokens"),
            finish_reason=choice.get("finish_reason") or "stop",
        )

    async def prompt_logprobs(self, text: str) -> list[TokenLogprob]:
        """vLLM-style prompt log-probs: a completion that echoes the prompt and generates nothing."""
        with _translated_errors(self.identity):
            try:
                reply = await self.client.completions.create(
                    model=self.model, prompt=text, echo=True, logprobs=1, max_tokens=0
                )
                logprobs = reply.choices[0].logprobs
                pairs = list(zip(logprobs.tokens, logprobs.token_logprobs, strict=True))
            except (openai.BadRequestError, openai.NotFoundError, AttributeError, TypeError):
                pairs = []
        scored = [TokenLogprob(token, lp) for token, lp in pairs if lp is not None]
        if not scored:
            raise EngineError(
                f"{self.identity}: prompt log-probabilities are not supported by this engine "
                "(use a vLLM endpoint or a local: engine)"
            )
        return scored

    async def count_tokens(self, text: str) -> int | None:
        return None  # the OpenAI API has no tokenizer endpoint

    async def aclose(self) -> None:
        await self.client.close()


def _text(content: object) -> str:
    """A message's content: a string, or (some servers) a list of parts with text in them."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (part.get("text") if isinstance(part, dict) else part for part in content)
        return "".join(part for part in parts if isinstance(part, str))
    return ""


def _count(usage: object, name: str) -> int:
    """A usage count; servers send null, negative or missing ones."""
    value = usage.get(name) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value > 0 else 0


@contextmanager
def _translated_errors(identity: str) -> Iterator[None]:
    """Map the SDK's exceptions to ours: transient ones are retried, the rest explain themselves.
    Some endpoints echo the key they rejected: messages are redacted of it."""
    try:
        yield
    except openai.OpenAIError as error:
        translated = translate(error, identity)
        translated.args = (redact(str(translated)),)
        raise translated from None
    except json.JSONDecodeError as error:  # a 200 whose body is cut short or not JSON at all
        raise TransientEngineError(f"the endpoint returned invalid JSON ({error.msg})") from None


# Request timeout, conflict, too early: the same request may well succeed when sent again.
_TRANSIENT_STATUS = {408, 409, 425}


def translate(error: openai.OpenAIError, identity: str) -> EngineError:
    if isinstance(error, openai.APITimeoutError):
        return TransientEngineError("the request timed out", overloaded=True)
    if isinstance(error, openai.APIConnectionError):
        return TransientEngineError(f"cannot reach {identity} ({error.__cause__ or error})")
    if isinstance(error, openai.RateLimitError) and _code(error) == "insufficient_quota":
        return EngineError(f"{identity}: the account has no quota left (429 insufficient_quota)")
    if isinstance(error, openai.RateLimitError):
        return TransientEngineError(
            "rate limited (429)", retry_after=_retry_after(error), overloaded=True
        )
    if isinstance(error, openai.InternalServerError):
        return TransientEngineError(f"server error {error.status_code}", _retry_after(error))
    if isinstance(error, openai.AuthenticationError):
        return EngineError(
            f"{identity}: the API key was rejected (set llm.api_key or OPENAI_API_KEY)"
        )
    if isinstance(error, openai.PermissionDeniedError):
        return EngineError(f"{identity}: permission denied for this model (check the API key)")
    if isinstance(error, openai.NotFoundError):
        return EngineError(
            f"{identity}: model or endpoint not found (check the model name and base URL)"
        )
    if isinstance(error, openai.BadRequestError):
        message = _message(error)
        if "context" in message.lower():
            return EngineError(
                f"{identity}: the prompt is longer than the model's context window ({message}); "
                "shorten it or raise llm.n_ctx"
            )
        return EngineError(f"{identity}: the request was rejected: {message}")
    if isinstance(error, openai.APIStatusError) and error.status_code in _TRANSIENT_STATUS:
        return TransientEngineError(f"HTTP {error.status_code}", _retry_after(error))
    if isinstance(error, openai.APIStatusError) and error.status_code >= 500:
        return TransientEngineError(f"server error {error.status_code}")
    if isinstance(error, openai.APIStatusError):
        return EngineError(f"{identity}: HTTP {error.status_code}: {_message(error)}")
    return TransientEngineError(f"{type(error).__name__}: {error}")


def _code(error: openai.APIStatusError) -> str | None:
    body = error.body.get("error", error.body) if isinstance(error.body, dict) else None
    return body.get("code") if isinstance(body, dict) else None


def _message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            return str(body.get("message", body))
    return str(error.message)


def _retry_after(error: openai.APIStatusError) -> float | None:
    value = error.response.headers.get("retry-after") if error.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
