"""Part buffers recycled from one part to the next, inside the byte budget.

A part's request body is a 5-28 MB buffer.  Allocating a fresh one for each
part costs its zero-filling and a page fault per 4 KiB page (the allocator
maps part-sized blocks afresh so that RSS follows the budget, see
memory.py): measured at ~0.7 CPU-second per GiB pushed, as much as the
base64 and the SigV4 hash of the body together.  Recycling the buffer of a
part just sent for the next part of the same size removes both.

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


@dataclass(slots=True)
class Lease:
    """A part's budget charge, and the kept buffer that came with it, if any."""

    charge: int
    spare: bytearray | None = None

    def allocate(self, nbytes: int) -> memoryview:
        """The body buffer: the spare if it is large enough, else a new one.

        Runs in the encoder's worker thread; touches nothing shared.
        """
        spare, self.spare = self.spare, None
        if spare is not None and len(spare) >= nbytes:
            return memoryview(spare)[:nbytes]
        if nbytes < SMALLEST_KEPT:
            return new_buffer(nbytes)
        return memoryview(bytearray(nbytes + HEADROOM))[:nbytes]


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
    """Grants parts their budget charge, with a recycled buffer when one is free.

    Lives on the event loop, like the budget it wraps.
    """

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self._kept: list[_Kept] = []
        budget.reclaim = self.drop_all
        self.reused = 0
        """Parts that got a recycled buffer (for tests and curious operators)."""

    @property
    def kept_bytes(self) -> int:
        """Budget bytes that kept buffers hold right now."""
        return sum(kept.charge for kept in self._kept)

    async def acquire(self, charge: int) -> Lease:
        """Reserve at least ``charge`` bytes for a part: a kept buffer's, if one fits, else new.

        A kept buffer brings its own charge, which may be larger (a layer's
        last, smaller part reusing a full part's buffer): the lease carries
        that whole charge, because the buffer is that large.
        """
        kept = self._take_fitting(charge)
        if kept is None:
            await self.budget.acquire(charge)
            return Lease(charge)
        self.reused += 1
        return Lease(kept.charge, kept.buffer)

    def give_back(self, wire: object, charge: int) -> None:
        """Settle a part: keep its buffer with its ``charge``, or return the charge.

        ``wire`` is the part's body as its payload carried it.  Call it instead
        of ``ByteBudget.release``.
        """
        buffer = wire.obj if isinstance(wire, memoryview) else wire
        others_in_flight = self.budget.held > charge + self.kept_bytes
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
            self.drop_all()

    def drop_all(self) -> None:
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
