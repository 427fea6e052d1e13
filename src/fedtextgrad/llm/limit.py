"""How many calls an engine keeps in flight, adapted to what the endpoint can take.

Additive increase, multiplicative decrease, as TCP does: the limit starts at its ceiling
(`llm.concurrency`), halves when the endpoint signals overload (a 429, a timeout) and grows back
by one per window of successful calls. A burst of failures from one overload halves it once:
only calls sent after the last decrease can decrease it again."""

from __future__ import annotations

import asyncio


class AdaptiveLimit:
    def __init__(self, ceiling: int):
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self._active = 0
        self._epoch = 0  # bumped at each decrease
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self) -> int:
        """Wait for a free slot; returns the epoch to pass to `overloaded`."""
        while self._active >= int(self.limit):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken but cancelled: pass the wake-up on
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._active += 1
        return self._epoch

    def release(self) -> None:
        self._active -= 1
        self._wake()

    def succeeded(self) -> None:
        self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
        self._wake()

    def overloaded(self, epoch: int) -> None:
        if epoch == self._epoch:
            self.limit = max(1.0, self.limit / 2)
            self._epoch += 1

    def _wake(self) -> None:
        free = int(self.limit) - self._active
        for waiter in [w for w in self._waiters if not w.done()][: max(free, 0)]:
            waiter.set_result(None)
