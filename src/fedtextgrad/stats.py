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
    """Pool runs (seeds) over the same test examples: each example's difference is averaged
    over the runs, and the interval resamples examples. Runs scored on other examples (another
    size) are pooled as more examples."""
    if not pairs:
        raise ValueError("nothing to pool")
    before = [np.asarray(x, float) for x, _ in pairs]
    after = [np.asarray(y, float) for _, y in pairs]
    same = len({len(x) for x in before + after}) == 1
    combine = (lambda runs: np.mean(runs, axis=0)) if same else np.concatenate
    return _compare(combine(before), combine(after), runs=len(pairs), seed=seed)


def _compare(a: np.ndarray, b: np.ndarray, *, runs: int, seed: int) -> Paired:
    diff = b - a
    mean = float(diff.mean())
    if np.all(diff == diff[0]):  # no spread: the bootstrap has nothing to resample
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
