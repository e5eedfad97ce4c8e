"""A byte-counting semaphore shared by every layer in flight.

Read-ahead is what makes the upload fast (the next part is read and hashed
while the current one is on the wire) and what could make memory unbounded
(N layers x M parts ahead).  Every buffer the engine holds is charged here
first, so the process holds at most ``capacity`` bytes of layer data whatever
the number and size of layers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


class ByteBudget:
    """Grants byte reservations first-come first-served up to ``capacity``."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"a byte budget must be positive, got {capacity}")
        self.capacity = capacity
        self._held = 0
        self._peak = 0
        self._changed = anyio.Condition()

    @property
    def held(self) -> int:
        """Bytes reserved right now."""
        return self._held

    @property
    def peak(self) -> int:
        """The most bytes ever reserved at once; never above ``capacity``."""
        return self._peak

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
        async with self._changed:
            while self._held + nbytes > self.capacity:
                await self._changed.wait()
            self._held += nbytes
            self._peak = max(self._peak, self._held)

    async def release(self, nbytes: int) -> None:
        """Return ``nbytes`` and wake whoever waits for room."""
        async with self._changed:
            self._held -= nbytes
            if self._held < 0:
                raise RuntimeError("released more bytes than were reserved")
            self._changed.notify_all()

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` for the duration of the block, even if it is cancelled."""
        await self.acquire(nbytes)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await self.release(nbytes)
