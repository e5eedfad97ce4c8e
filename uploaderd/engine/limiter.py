"""How many layers may be in flight: a fixed number, or one found by AIMD.

Adding a layer in flight helps while the link, not one layer's round trips,
is the bottleneck; past that point it only adds memory, connections and
requests that the registry may throttle.  Where that point lies depends on
the link's latency and bandwidth and on the registry's quotas, which no
default can know, so ``concurrency = "auto"`` finds it with AIMD (additive
increase, multiplicative decrease: Chiu and Jain 1989, TCP's congestion
avoidance in RFC 5681), driven by throughput instead of by a window of
packets:

* **Start** at ``INITIAL_LIMIT`` (8) layers, within the budget cap.  The
  peers default to 3-6 (containerd 3, buildkit and crane 4, dockerd 5), but
  a feedback loop learns nothing before a part's round trip, and on a far
  link a job of a few big layers is over in a few part times: measured on
  the "far" shape (75 ms, 8 MiB/s a connection), starting at 4 left auto at
  0.76 of fixed 8 for 8 x 32 MiB to ECR.  Where more layers only cost (a
  CPU-bound host), the step back below returns to 8 at worst, which
  measured no slower than 4 on this 2-core host's loopback.
* **Measure** the bytes the registry confirmed in a window that closes at
  the first confirmed part once ``WINDOW_SECONDS`` (1 s) have passed and at
  least ``PARTS_PER_SLOT`` (4) parts per slot were confirmed: a rate counted
  in whole parts is off by up to a part per layer, so a window holds several.
* **Only a full window counts**: one that closes with every slot taken
  (layers in flight == limit).  With fewer layers than slots the rate says
  nothing about the limit (a small job, an idle daemon: RFC 7661's
  "application-limited" rule, which keeps TCP from growing a window it does
  not use); with more, an earlier decrease has not taken effect yet.
* **Slow start, then increase by 1**, as TCP does (RFC 5681, sections 3.1
  and 3.2): while every full window's rate rises more than ``RISE`` (5 %)
  above the rate at the last increase, the limit *doubles*; from the first
  window that does not rise (or the first congestion signal) on, it grows by
  1 per rising window.  The first full window after the start or a decrease
  always probes up, and needs only a part per slot and a quarter of a
  window, so a job of a few big layers on a far link reaches its best level
  within a round of parts instead of one layer per second.  One more of L
  layers adds at most 1/L, so 5 % lets the limit climb to about 20 layers
  on a link that keeps scaling, while a plateau, where the rate stays within
  noise, holds it.
* **A doubling is paced** as TCP's is: one slot per part the registry
  confirms while every slot is taken (a segment per ACK), so it takes a
  round of parts instead of releasing a burst of new layers at once.
  Released at once, eight new layers' first parts met a registry already at
  its rate and drew seven throttles within 0.1 s, before the first of them
  could halve anything; paced, the first throttle ends the ramp.
* **Step back** when the window after an increase is more than ``RISE``
  slower than before it: more layers made the push slower (the CPU, not
  the link, is the bottleneck, as on loopback), so the limit returns to
  where it was and stays until the rate rises above the old reference.
* **Halve** (floor 1) on a congestion signal: every retry the engine reports
  (throttling, 5xx, timeouts, dropped connections, and the resyncs that
  follow a lost answer), and every attempt the registry's client saw refused
  and retries on its own (``Registry.client_retries``: botocore retries a
  throttle itself and answers as if nothing happened), heard as the refusal
  arrives.  As TCP reduces once per window of losses, a decrease waits
  until the last one has taken effect (no more layers in flight than the
  limit) and at least ``WINDOW_SECONDS`` have passed: the retries of layers
  started under the old limit are one event, not many.
* **Never above** ``max_concurrency`` nor what the byte budget holds
  (``budgetcap``, counted from the parts of the layers started lately): a
  layer beyond that would wait for budget and add nothing.

The limit gates layer *starts* through an ``anyio.CapacityLimiter`` whose
``total_tokens`` follows it: lowering it below the layers in flight stops new
grants until enough finish, and never cancels a layer.  Decisions are pure
(``AimdLimit``, with an injectable clock) and the gate applies them
(``LayerLimit``), so the rules are tested without a registry or a timer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

Clock = Callable[[], float]

INITIAL_LIMIT = 8
DEFAULT_MAX_CONCURRENCY = 16
"""The ``max_concurrency`` default: above what the default 256 MiB budget holds (9 layers of
ECR's 10 MiB parts), so a bigger budget lets the limit grow further; in reach of the
registry's connection pool (limit + 2) and of ECR's 500 UploadLayerPart/s quota."""
MAX_CONCURRENCY = 64
WINDOW_SECONDS = 1.0
PARTS_PER_SLOT = 4
RISE = 0.05


class AimdLimit:
    """The AIMD decisions, from confirmed bytes and congestion signals (see the module)."""

    def __init__(
        self,
        *,
        ceiling: int,
        budget_cap: int,
        clock: Clock = time.monotonic,
        initial: int = INITIAL_LIMIT,
    ) -> None:
        if ceiling < 1 or initial < 1:
            raise ValueError(f"limits must be at least 1, got {ceiling} and {initial}")
        self.ceiling = ceiling
        self.budget_cap = max(1, budget_cap)
        self._clock = clock
        self.limit = min(initial, self.top)
        self.reference: float | None = None
        """The rate at the last increase, bytes per second; None: probe at the next full window."""
        self.slow_start = True
        """Doubling while the rate rises; off from the first plateau or congestion on."""
        self.ramp_to: int | None = None
        """Where slow start's doubling is headed, one slot per confirmed part; None: not ramping."""
        self._before_increase: int | None = None
        """The limit the last increase started from, to step back to if it made things slower."""
        self.last_rate: float | None = None
        self._last_decrease: float | None = None
        self.restart_window()

    @property
    def top(self) -> int:
        """The highest the limit may go now."""
        return min(self.ceiling, self.budget_cap)

    def restart_window(self) -> None:
        """Measure afresh from now (after a decision, or work after an idle spell)."""
        self._window_start = self._clock()
        self._window_bytes = 0
        self._window_parts = 0

    def part_confirmed(self, nbytes: int, in_use: int) -> None:
        """The registry confirmed ``nbytes``; ``in_use`` layers hold a slot right now."""
        if self.ramp_to is not None and in_use >= self.limit:
            self._ramp_step()
        self._window_bytes += nbytes
        self._window_parts += 1
        elapsed = self._clock() - self._window_start
        # A probe compares with nothing: a part per slot and a quarter of a window will do.
        probing = self.reference is None
        per_slot, seconds = (1, WINDOW_SECONDS / 4) if probing else (PARTS_PER_SLOT, WINDOW_SECONDS)
        if elapsed < seconds or self._window_parts < per_slot * self.limit:
            return
        rate = self._window_bytes / elapsed
        full = in_use == self.limit
        self.restart_window()
        if full:
            self._decide(rate)

    def _decide(self, rate: float) -> None:
        """One full window's rate: grow, step back, or hold (see the module)."""
        self.last_rate = rate
        if self.reference is None or rate > self.reference * (1 + RISE):
            self.reference = rate
            self._before_increase = self.limit
            if self.slow_start:
                self.ramp_to = self.limit * 2
                self._ramp_step()
            else:
                self.limit = min(self.limit + 1, self.top)
            return
        self.slow_start = False
        if self._before_increase is not None and rate < self.reference * (1 - RISE):
            self.limit = min(self._before_increase, self.top)
        self._before_increase = None

    def _ramp_step(self) -> None:
        """One more slot on slow start's way to ``ramp_to``; the ramp ends there or at the top."""
        assert self.ramp_to is not None
        self.limit = min(self.limit + 1, self.top)
        if self.limit >= min(self.ramp_to, self.top):
            self.ramp_to = None

    def congested(self, in_use: int) -> bool:
        """A request failed transiently; True if the limit was halved."""
        now = self._clock()
        if in_use > self.limit:
            return False  # the last decrease has not taken effect yet
        if self._last_decrease is not None and now - self._last_decrease < WINDOW_SECONDS:
            return False
        self._last_decrease = now
        self.limit = max(1, self.limit // 2)
        self.reference = None
        self.slow_start = False
        self.ramp_to = None
        self._before_increase = None
        self.restart_window()
        return True

    def cap_by_budget(self, cap: int) -> None:
        """The budget holds ``cap`` layers (part sizes learned from the registry)."""
        self.budget_cap = max(1, cap)
        self.limit = min(self.limit, self.top)


@dataclass(frozen=True, slots=True)
class LimitStatistics:
    """The limit at one moment."""

    limit: int
    in_use: int
    """Layers holding a slot; above ``limit`` for a while after a decrease."""
    ceiling: int
    """``max_concurrency`` in auto mode; the fixed number otherwise."""
    budget_cap: int | None
    """What the byte budget holds; None when the limit is fixed."""
    adaptive: bool


class LayerLimit:
    """The gate every layer passes before it starts: a slot per layer in flight."""

    def __init__(self, ceiling: int, aimd: AimdLimit | None) -> None:
        """Use ``fixed`` or ``adaptive``."""
        self.ceiling = ceiling
        self.aimd = aimd
        self._slots = anyio.CapacityLimiter(self.current)
        self._in_use = 0

    @classmethod
    def fixed(cls, slots: int) -> LayerLimit:
        """``slots`` layers in flight, always (``concurrency = N``)."""
        if slots < 1:
            raise ValueError(f"a layer limit must be at least 1, got {slots}")
        return cls(slots, None)

    @classmethod
    def adaptive(cls, aimd: AimdLimit) -> LayerLimit:
        """As many layers as ``aimd`` decides (``concurrency = "auto"``)."""
        return cls(aimd.ceiling, aimd)

    @property
    def current(self) -> int:
        if self.aimd is not None:
            return self.aimd.limit
        return self.ceiling

    @property
    def in_use(self) -> int:
        return self._in_use

    def statistics(self) -> LimitStatistics:
        cap = self.aimd.budget_cap if self.aimd is not None else None
        return LimitStatistics(
            self.current, self._in_use, self.ceiling, cap, adaptive=self.aimd is not None
        )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the block: one layer in flight."""
        borrower = object()  # a slot per block, not per task: a task may push in turn
        await self._slots.acquire_on_behalf_of(borrower)
        if self._in_use == 0 and self.aimd is not None:
            self.aimd.restart_window()  # an idle spell is not a slow window
        self._in_use += 1
        try:
            yield
        finally:
            self._in_use -= 1
            self._slots.release_on_behalf_of(borrower)

    # --- what the engine reports (no-ops when the limit is fixed) -------------------------

    def part_confirmed(self, nbytes: int) -> None:
        if self.aimd is not None and nbytes:
            self.aimd.part_confirmed(nbytes, self._granted())
            self._apply()

    def _granted(self) -> int:
        """Slots taken, counting one handed to a waiting layer that has not resumed yet.

        With many small layers a slot changes hands many times a second; between
        the release and the waiter's resumption the block count is one short, and
        windows closing then would count as not full, holding the limit down.
        """
        return max(self._in_use, int(self._slots.borrowed_tokens))

    def congested(self) -> None:
        if self.aimd is not None:
            self.aimd.congested(self._in_use)
            self._apply()

    def cap_by_budget(self, cap: int) -> None:
        if self.aimd is not None:
            self.aimd.cap_by_budget(cap)
            self._apply()

    def _apply(self) -> None:
        if self._slots.total_tokens != self.current:
            self._slots.total_tokens = self.current
