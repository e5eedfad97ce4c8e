"""A byte-counting semaphore shared by every layer in flight.

Read-ahead is what makes the upload fast (the next part is read while the
current one is on the wire) and what could make memory unbounded (N layers x
M parts ahead).  Every buffer the engine holds is charged here first, so the
process holds at most ``capacity`` bytes of layer data whatever the number
and size of layers.

Releasing is synchronous on purpose: it must work inside a cancelled scope
(a layer whose reader was just cancelled still returns its bytes), where any
``await`` would raise instead of releasing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel


@dataclass(frozen=True, slots=True)
class BudgetStatistics:
    """The budget at one moment."""

    capacity: int
    held: int
    peak: int
    """The most bytes ever reserved at once; never above ``capacity``."""
    waiters: int


@dataclass(slots=True)
class _Waiter:
    nbytes: int
    granted: anyio.Event = field(default_factory=anyio.Event)


class ByteBudget:
    """Grants byte reservations in arrival order up to ``capacity``.

    Strict arrival order means a large request is never starved by a stream
    of small ones.
    """

    def __init__(self, capacity: int, *, reclaim: Callable[[], None] | None = None) -> None:
        """``reclaim`` is called before anyone waits: it returns bytes held only for reuse."""
        if capacity <= 0:
            raise ValueError(f"a byte budget must be positive, got {capacity}")
        self.capacity = capacity
        self._held = 0
        self._peak = 0
        self._waiters: deque[_Waiter] = deque()
        self._reclaim = reclaim

    @property
    def held(self) -> int:
        """Bytes reserved right now."""
        return self._held

    @property
    def waiting(self) -> bool:
        """True while some acquire waits for room."""
        return bool(self._waiters)

    def statistics(self) -> BudgetStatistics:
        return BudgetStatistics(self.capacity, self._held, self._peak, len(self._waiters))

    async def acquire(self, nbytes: int) -> None:
        """Wait until ``nbytes`` fit, then reserve them.

        A request larger than the whole budget could never be granted; it is
        refused at once instead of waiting forever.
        """
        if nbytes > self.capacity:
            raise ValueError(
                f"cannot reserve {nbytes} bytes from a budget of {self.capacity}: "
                "raise --memory-budget or lower --part-size"
            )
        await anyio.lowlevel.checkpoint_if_cancelled()
        if not self._waiters and self._held + nbytes > self.capacity and self._reclaim:
            self._reclaim()
        if not self._waiters and self._held + nbytes <= self.capacity:
            self._take(nbytes)
            return
        waiter = _Waiter(nbytes)
        self._waiters.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():
                self.release(nbytes)  # granted, but the caller will never use it
            else:
                self._waiters.remove(waiter)
                self._grant_waiters()  # a large request leaving may let others in
            raise

    def release(self, nbytes: int) -> None:
        """Return ``nbytes`` and grant whoever waits and now fits."""
        if nbytes > self._held:
            raise RuntimeError(f"released {nbytes} bytes while only {self._held} are held")
        self._held -= nbytes
        self._grant_waiters()

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` for the duration of the block, even if it is cancelled."""
        await self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(nbytes)

    def _take(self, nbytes: int) -> None:
        self._held += nbytes
        self._peak = max(self._peak, self._held)

    def _grant_waiters(self) -> None:
        while self._waiters and self._held + self._waiters[0].nbytes <= self.capacity:
            waiter = self._waiters.popleft()
            self._take(waiter.nbytes)
            waiter.granted.set()
