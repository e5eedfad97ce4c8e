"""Part buffers recycled from one part to the next, inside the byte budget.

A part's request body is a 5-28 MB buffer.  Allocating a fresh one for each
part costs its zero-filling and a page fault per 4 KiB page (the allocator
maps part-sized blocks afresh so that RSS follows the budget, see
memory.py): measured at ~0.7 CPU-second per GiB pushed, as much as the
base64 and the SigV4 hash of the body together.  Recycling the buffer of a
part just sent for the next part of the same size removes both.

A part's charge is a ``PartCharge``: it owns its budget bytes and its
buffer, and is settled exactly once (``settle``), which either keeps the
buffer for reuse or returns the bytes; settling again does nothing, so a
part cannot be returned twice, or lost by a path that forgot it.

Three rules keep recycling honest:

* **Kept buffers stay charged.**  A settled part's buffer is kept with its
  part's budget charge, which is handed on to the next part that reuses it.
  Kept or in flight, every buffer is counted, so the budget still bounds
  memory exactly as it did without recycling.
* **Nobody waits on a kept buffer.**  When an acquire must wait, the budget
  first asks for the kept bytes back (``reclaim``); and a part settled
  while someone waits returns its charge instead of keeping it.  When no
  other part is in flight (the daemon went idle), nothing is kept.
* **Only when nobody else holds it.**  botocore, aiohttp or a retry's
  traceback may still hold a view of the body after the part is settled.
  A kept buffer is reused only when its reference count shows no view of
  it is alive; otherwise it is left to the garbage collector.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from uploaderd.engine.budget import ByteBudget
from uploaderd.registry.base import new_buffer

SMALLEST_KEPT = 1024 * 1024
"""Smaller buffers come from the allocator's heap, which reuses them without faults."""
HEADROOM = 4096
"""Bytes allocated beyond the asked size, so bodies a few bytes apart can share a buffer.

Parts of one size differ in their bodies only by the digits of their byte
offsets.  Kept small on purpose: a new buffer is zero-filled, so all of it
is resident.
"""


class PartCharge:
    """One part's budget charge, and the body buffer that comes with it.

    Whoever holds it owns the bytes: the reader until the part is sent on,
    then the sender.  ``settle`` ends it once, whichever path gets there first.
    """

    __slots__ = ("_pool", "_spare", "nbytes", "settled")

    def __init__(self, pool: PartBuffers, nbytes: int, spare: bytearray | None = None) -> None:
        self._pool = pool
        self._spare = spare
        self.nbytes = nbytes
        self.settled = False

    @property
    def recycled(self) -> bool:
        """Whether this charge came with a kept buffer."""
        return self._spare is not None

    def allocate(self, nbytes: int) -> memoryview:
        """The body buffer: the kept one if it is large enough, else a new one.

        Runs in the encoder's worker thread; touches nothing shared.
        """
        spare, self._spare = self._spare, None
        if spare is not None and len(spare) >= nbytes:
            return memoryview(spare)[:nbytes]
        if nbytes < SMALLEST_KEPT:
            return new_buffer(nbytes)
        return memoryview(bytearray(nbytes + HEADROOM))[:nbytes]

    def settle(self, body: object = None) -> None:
        """End the charge: keep ``body`` (the part's wire buffer) for reuse, or return the bytes.

        Idempotent, and synchronous so it works inside a cancelled scope.
        """
        if self.settled:
            return
        self.settled = True
        self._spare = None
        self._pool.settle(self.nbytes, body)


@dataclass(frozen=True, slots=True)
class BufferStatistics:
    """What the recycling is doing, for tests and curious operators."""

    kept_buffers: int
    kept_bytes: int
    reused: int
    """Parts that got a recycled buffer."""


@dataclass(slots=True)
class _Kept:
    buffer: bytearray
    charge: int


_PROBE = _Kept(bytearray(1), 0)
_KEPT_ONLY = sys.getrefcount(_PROBE.buffer)
"""What ``sys.getrefcount(entry.buffer)`` reports when only its ``_Kept`` holds it.

Measured, not assumed: the count an interpreter reports for the same
expression differs between Python versions.  Any view alive adds one.
"""


class PartBuffers:
    """The byte budget, and the part buffers kept inside it for reuse.

    It creates the budget it wraps and hands the budget its ``reclaim`` hook,
    so the budget asks for kept bytes back before anyone waits.  Lives on
    the event loop, like the budget.
    """

    def __init__(self, capacity: int) -> None:
        self._kept: list[_Kept] = []
        self._reused = 0
        self.budget = ByteBudget(capacity, reclaim=self._drop_all)

    def statistics(self) -> BufferStatistics:
        return BufferStatistics(len(self._kept), self._kept_bytes(), self._reused)

    async def acquire(self, charge: int) -> PartCharge:
        """At least ``charge`` bytes for a part: a kept buffer's, if one fits, else new ones.

        A kept buffer brings its own charge, which may be larger (a layer's
        last, smaller part reusing a full part's buffer): the charge is that
        whole amount, because the buffer is that large.
        """
        kept = self._take_fitting(charge)
        if kept is None:
            await self.budget.acquire(charge)
            return PartCharge(self, charge)
        self._reused += 1
        return PartCharge(self, kept.charge, kept.buffer)

    def settle(self, charge: int, body: object) -> None:
        """Keep ``body``'s buffer with its ``charge``, or return the charge (see ``PartCharge``)."""
        buffer = body.obj if isinstance(body, memoryview) else body
        others_in_flight = self.budget.held > charge + self._kept_bytes()
        if (
            isinstance(buffer, bytearray)
            and len(buffer) >= SMALLEST_KEPT
            and others_in_flight
            and not self.budget.waiting
        ):
            self._kept.append(_Kept(buffer, charge))
            return
        self.budget.release(charge)
        if not others_in_flight:
            self._drop_all()

    def _kept_bytes(self) -> int:
        return sum(kept.charge for kept in self._kept)

    def _drop_all(self) -> None:
        """Forget every kept buffer and return their charges to the budget."""
        kept, self._kept = self._kept, []
        self.budget.release(sum(entry.charge for entry in kept))

    def _take_fitting(self, charge: int) -> _Kept | None:
        """The kept buffer with the smallest charge of at least ``charge``, if nobody holds it.

        A part's buffer size grows with its charge, so a buffer kept with a
        charge at least as large holds the new part's body.
        """
        best: int | None = None
        for index in range(len(self._kept)):
            entry = self._kept[index]
            if entry.charge < charge or sys.getrefcount(entry.buffer) > _KEPT_ONLY:
                continue
            if best is None or entry.charge < self._kept[best].charge:
                best = index
        return None if best is None else self._kept.pop(best)
