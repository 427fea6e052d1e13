"""Paired comparison of two prompts scored on the same examples: the difference in accuracy with
a 95% bootstrap interval, and an exact McNemar test (both from scipy).

Pairing matters: the same test examples are hard or easy for both prompts, so the interval of
the per-example difference is far narrower than two independent intervals would suggest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 10_000


@dataclass(frozen=True)
class Paired:
    n: int  # examples (pairs)
    before: float
    after: float
    diff: float  # after - before, in accuracy (0..1)
    low: float  # the interval of diff
    high: float
    # Exact McNemar (a sign test of wins against losses); pooled runs: over the examples'
    # averaged differences.
    p_value: float
    wins: int  # examples only `after` got right
    losses: int  # examples only `before` got right
    runs: int = 1  # runs pooled (seeds)

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    def describe(self, label: str = "test") -> str:
        """`test 0.30 -> 0.36 (+6 pts, 95% CI -2..+14, n=100)`."""
        seeds = f", {self.runs} seeds" if self.runs > 1 else ""
        return (
            f"{label} {self.before:.2f} -> {self.after:.2f} ({points(self.diff)} pts, "
            f"95% CI {points(self.low)}..{points(self.high)}, n={self.n}{seeds})"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def paired(before: Sequence[float], after: Sequence[float], *, seed: int = 0) -> Paired:
    """Compare per-example scores (0/1, or fractions) of two prompts on the same examples."""
    a, b = np.asarray(before, float), np.asarray(after, float)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError("paired scores need two equally long, non-empty lists")
    return _compare(a, b, runs=1, seed=seed)


def pooled(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], *, seed: int = 0) -> Paired:
    """Pool runs (seeds) scored on the same test examples. The difference is averaged over runs
    and examples; the interval resamples both, runs and examples (a crossed bootstrap), so it
    holds the seed-to-seed variance too: which prompt a seed happened to find."""
    if not pairs:
        raise ValueError("nothing to pool")
    sizes = {len(x) for pair in pairs for x in pair}
    if len(sizes) != 1:
        raise ValueError("only runs scored on the same test examples can be pooled")
    a = np.array([x for x, _ in pairs], float)
    b = np.array([y for _, y in pairs], float)
    if len(pairs) == 1:
        return _compare(a[0], b[0], runs=1, seed=seed)
    interval = _crossed_interval(b - a, seed)
    return _compare(a.mean(axis=0), b.mean(axis=0), runs=len(pairs), seed=seed, interval=interval)


def _crossed_interval(diff: np.ndarray, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of a runs x examples matrix, resampling both axes."""
    rng = np.random.default_rng(seed)
    runs, n = diff.shape
    means = np.empty(RESAMPLES)
    for i in range(RESAMPLES):
        rows, cols = rng.integers(0, runs, runs), rng.integers(0, n, n)
        means[i] = diff[np.ix_(rows, cols)].mean()
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _compare(
    a: np.ndarray,
    b: np.ndarray,
    *,
    runs: int,
    seed: int,
    interval: tuple[float, float] | None = None,
) -> Paired:
    diff = b - a
    mean = float(diff.mean())
    if interval is not None:
        low, high = interval
    elif np.all(diff == diff[0]):  # no spread: the bootstrap has nothing to resample
        low = high = mean
    else:
        interval = stats.bootstrap(
            (diff,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
    wins, losses = int(np.sum(b > a)), int(np.sum(b < a))
    p = stats.binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    return Paired(
        len(diff), float(a.mean()), float(b.mean()), mean, low, high, float(p), wins, losses, runs
    )


def points(value: float) -> str:
    """An accuracy difference in signed percentage points: +6, -2, 0."""
    rounded = round(100 * value)
    return f"+{rounded}" if rounded > 0 else str(rounded)
