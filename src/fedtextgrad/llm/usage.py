"""Usage accounting: calls, cache hits, tokens and latency, per purpose."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field


@dataclass
class Counts:
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0  # paid for: answered by the engine
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt + completion tokens of the replies served by the cache
    retries: int = 0
    errors: int = 0
    seconds: float = 0.0

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def tokens_used(self) -> int:
        """What the experiment needed, however it was served: the same in any order of runs."""
        return self.total_tokens + self.cached_tokens


@dataclass
class Usage:
    """Counts per purpose (forward, feedback, update, aggregation, evaluation, ...)."""

    by_purpose: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))

    def record(self, purpose: str, **counts: float) -> None:
        entry = self.by_purpose[purpose]
        for name, value in counts.items():
            setattr(entry, name, getattr(entry, name) + value)

    def merge(self, other: Usage) -> None:
        for purpose, counts in other.by_purpose.items():
            self.by_purpose[purpose].add(counts)

    def total(self) -> Counts:
        total = Counts()
        for counts in self.by_purpose.values():
            total.add(counts)
        return total

    def snapshot(self) -> Usage:
        copy = Usage()
        copy.merge(self)
        return copy

    def to_dict(self) -> dict:
        total = self.total()
        return {
            **asdict(total),
            "total_tokens": total.total_tokens,
            "tokens_used": total.tokens_used,
            "by_purpose": {p: asdict(c) for p, c in sorted(self.by_purpose.items())},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Usage:
        usage = cls()
        for purpose, counts in data.get("by_purpose", {}).items():
            usage.by_purpose[purpose] = Counts(**counts)
        return usage


# Scopes let a client (or a step) see only its own calls while many run concurrently: asyncio
# tasks inherit the context they were created in.
_scopes: ContextVar[tuple[Usage, ...]] = ContextVar("usage_scopes", default=())


@contextmanager
def track_usage() -> Iterator[Usage]:
    """Collect the usage of every LLM call made inside this block (and tasks it starts)."""
    usage = Usage()
    token = _scopes.set((*_scopes.get(), usage))
    try:
        yield usage
    finally:
        _scopes.reset(token)


def record(usage: Usage, purpose: str, **counts: float) -> None:
    usage.record(purpose, **counts)
    for scope in _scopes.get():
        scope.record(purpose, **counts)
