"""Settings shared by every engine of an experiment (`[llm]` in a config)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from fedtextgrad.redaction import register


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint; else OPENAI_BASE_URL"
    )
    api_key: SecretStr | None = Field(None, description="API key; else OPENAI_API_KEY")
    concurrency: int | None = Field(
        None,
        ge=1,
        description="the most requests in flight per engine (halved on 429s and timeouts, "
        "grown back as calls succeed)",
    )
    timeout: float = Field(600.0, gt=0, description="seconds per call")
    max_retries: int = Field(4, ge=0)
    cache: bool = Field(True, description="reuse answers of identical temperature-0 requests")
    cache_dir: str | None = Field(None, description="default: $FEDTEXTGRAD_CACHE or ~/.cache")
    n_parallel: int = Field(4, ge=1, description="local engine: sequences decoded together")
    n_ctx: int = Field(4096, ge=256, description="local engine: context tokens per sequence")
    threads: int | None = Field(None, ge=1, description="local engine: CPU threads")
    temperature: float = Field(0.0, ge=0)
    budget_tokens: int | None = Field(
        None,
        ge=1,
        description="stop after the round that brings the run's paid tokens (cache hits are "
        "free) to this; --resume with a larger budget continues",
    )
    price_per_mtok: float | None = Field(
        None, ge=0, description="USD per million tokens of openai: engines, for cost estimates"
    )

    @field_validator("base_url")
    @classmethod
    def _usable_url(cls, value: str | None) -> str | None:
        if value:
            check_base_url(value)
        return value

    @model_validator(mode="after")
    def _register_secrets(self) -> LLMSettings:
        """The key, and a password written into the URL (https://user:key@host), are redacted
        from everything written (fedtextgrad.redaction)."""
        if self.api_key is not None:
            register(self.api_key.get_secret_value())
        if self.base_url:
            register(urlsplit(self.base_url).password, always=True)
        return self


def check_base_url(url: str) -> None:
    """An endpoint URL the HTTP client can use, or ValueError (found here, not mid-run). The
    message never quotes the URL: it may hold a password."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number in 0-65535)
    except ValueError:
        raise ValueError("the URL's port is not a number in 0-65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("give an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")
