"""How many layers the byte budget holds: the AIMD limit never goes above it.

Each layer in flight keeps the part on the wire and the parts read ahead
(``layers_within_budget``; the next part is read while the queued one is
sent, so it may wait for budget without stalling the layer); a layer beyond
that would wait for budget and add nothing.  A part is never bigger than
its layer, so the parts counted are those of the layers started lately
(``BudgetCap``): 64 KiB layers charge 64 KiB a part whatever the registry's
part size, and the budget that holds 9 layers of 10 MiB parts holds
hundreds of them.
"""

from __future__ import annotations

import math
from collections import deque

from uploaderd.engine.limiter import MAX_CONCURRENCY


def layers_within_budget(
    budget: int, part_size: int, memory_per_byte: float, parts_per_layer: int
) -> int:
    """How many layers the byte budget holds at full read-ahead (at least 1).

    A part's charge is computed as the reader charges it (its bytes times
    the registry's memory per byte, never more than the whole budget).
    """
    charge = min(math.ceil(part_size * memory_per_byte), budget)
    return max(1, budget // (charge * parts_per_layer))


RECENT_LAYERS = MAX_CONCURRENCY
"""How many of the latest layer starts the budget cap looks at: as many as can be in
flight at most, so a big layer keeps the cap down while layers of its size keep coming."""


class BudgetCap:
    """How many layers the byte budget holds, from the parts of the layers started lately.

    Until a layer starts, parts of ``expected_part`` are assumed; the part size
    is the largest an upload got since (the registry's, or one grown for a
    huge layer), and a layer's parts are never bigger than the layer itself.
    """

    def __init__(
        self, budget: int, memory_per_byte: float, parts_per_layer: int, expected_part: int
    ) -> None:
        self._budget = budget
        self._memory_per_byte = memory_per_byte
        self._parts_per_layer = parts_per_layer
        self._part_size = expected_part
        self._learned = False
        self._recent_sizes: deque[int] = deque(maxlen=RECENT_LAYERS)

    @property
    def layers(self) -> int:
        """The cap now: layers the budget holds at full read-ahead."""
        part = self._part_size
        if self._recent_sizes:
            part = min(part, max(self._recent_sizes))
        return layers_within_budget(
            self._budget, part, self._memory_per_byte, self._parts_per_layer
        )

    def layer_started(self, size: int) -> None:
        self._recent_sizes.append(size)

    def part_size_offered(self, part_size: int) -> None:
        """An upload got ``part_size`` (the first one tells the registry's own)."""
        if not self._learned or part_size > self._part_size:
            self._part_size, self._learned = part_size, True
