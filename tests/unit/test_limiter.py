"""The layer limit: AIMD decisions with an injected clock, and the gate that applies them.

No timing: the clock is a number the test moves, and each window's rate is
exactly the bytes the test confirms in it.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.helpers import make_layer
from uploaderd.engine.budgetcap import RECENT_LAYERS, BudgetCap, layers_within_budget
from uploaderd.engine.limiter import INITIAL_LIMIT, PARTS_PER_SLOT, AimdLimit, LayerLimit
from uploaderd.engine.retry import RetryPolicy
from uploaderd.engine.scheduler import EngineSettings, UploadEngine
from uploaderd.model import LayerJob, LayerResult, Outcome
from uploaderd.sizes import MIB
from uploaderd.testing import MemoryRegistry


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def window(
    aimd: AimdLimit,
    clock: FakeClock,
    rate: float,
    *,
    in_use: int | None = None,
    settle: bool = True,
) -> None:
    """One full measuring window of one second at ``rate`` bytes per second.

    With ``settle``, then the round of parts a doubling takes, every slot
    taken, so the limit has reached the level the window decided.
    """
    parts = PARTS_PER_SLOT * aimd.limit
    busy = aimd.limit if in_use is None else in_use
    for _ in range(parts - 1):
        aimd.part_confirmed(0, busy)
    clock.now += 1.0
    aimd.part_confirmed(round(rate), busy)
    while settle and aimd.ramp_to is not None:
        aimd.part_confirmed(0, aimd.limit)


def limit_for(clock: FakeClock, *, ceiling: int = 16, budget_cap: int = 64) -> AimdLimit:
    """A limit starting at 4, so the rules' arithmetic reads plainly in each test."""
    return AimdLimit(ceiling=ceiling, budget_cap=budget_cap, clock=clock, initial=4)


def test_starts_at_the_initial_limit_within_the_caps() -> None:
    clock = FakeClock()
    assert AimdLimit(ceiling=16, budget_cap=64, clock=clock).limit == INITIAL_LIMIT
    assert limit_for(clock, ceiling=2).limit == 2
    assert limit_for(clock, budget_cap=3).limit == 3


def test_doubles_while_throughput_grows_then_grows_by_one() -> None:
    clock = FakeClock()
    aimd = limit_for(clock, ceiling=64, budget_cap=64)
    seen = [aimd.limit]
    for rate in (100, 180, 320, 330, 380, 440):  # MiB/s: scaling, a plateau, scaling again
        window(aimd, clock, rate * MIB)
        seen.append(aimd.limit)
    assert seen == [4, 8, 16, 32, 32, 33, 34]
    assert not aimd.slow_start


def test_a_doubling_is_paced_by_confirmed_parts_and_a_throttle_ends_it() -> None:
    clock = FakeClock()
    aimd = limit_for(clock)
    window(aimd, clock, 100 * MIB, settle=False)  # slow start: 4 on its way to 8
    assert (aimd.limit, aimd.ramp_to) == (5, 8)  # one new layer, not four at once
    aimd.part_confirmed(MIB, 4)  # a slot stands free: nothing to grow into
    assert aimd.limit == 5
    aimd.part_confirmed(MIB, 5)  # every slot taken: one more, as TCP per ACK
    assert aimd.limit == 6
    assert aimd.congested(in_use=6)  # the registry throttled: halve, and ramp no further
    assert (aimd.limit, aimd.ramp_to) == (3, None)
    aimd.part_confirmed(MIB, 3)
    assert aimd.limit == 3


def test_holds_at_a_plateau() -> None:
    clock = FakeClock()
    aimd = limit_for(clock)
    window(aimd, clock, 100 * MIB)  # the first window probes up: slow start doubles
    assert aimd.limit == 8
    for rate in (103, 101, 104, 99, 102):  # within 5 % of the rate at the last increase
        window(aimd, clock, rate * MIB)
    assert aimd.limit == 8
    window(aimd, clock, 110 * MIB)  # the link got faster: probe again, one at a time now
    assert aimd.limit == 9


def test_steps_back_when_more_layers_made_it_slower() -> None:
    clock = FakeClock()
    aimd = limit_for(clock)
    window(aimd, clock, 120 * MIB)  # probe: 4 -> 8
    window(aimd, clock, 85 * MIB)  # eight layers were slower than four (CPU-bound)
    assert aimd.limit == 4
    for _ in range(3):
        window(aimd, clock, 118 * MIB)  # back at the old rate: hold, do not probe again
    assert aimd.limit == 4


def test_a_window_grows_only_when_every_slot_was_taken() -> None:
    clock = FakeClock()
    aimd = limit_for(clock)
    window(aimd, clock, 100 * MIB, in_use=2)  # a small job: two layers, four slots
    window(aimd, clock, 200 * MIB, in_use=2)
    assert aimd.limit == 4
    assert aimd.reference is None


def test_a_window_needs_a_second_and_enough_parts() -> None:
    clock = FakeClock()
    aimd = limit_for(clock)
    for _ in range(100):  # many parts, no time
        aimd.part_confirmed(MIB, 4)
    assert aimd.limit == 4
    clock.now += 60.0  # much time, one part
    aimd.restart_window()
    clock.now += 60.0
    aimd.part_confirmed(MIB, 4)
    assert aimd.limit == 4


def test_halves_on_throttling_with_a_floor_of_one() -> None:
    clock = FakeClock()
    aimd = limit_for(clock)
    window(aimd, clock, 100 * MIB)  # slow start: 4 -> 8
    assert aimd.limit == 8
    assert aimd.congested(in_use=8)
    assert aimd.limit == 4
    assert not aimd.slow_start
    assert aimd.reference is None  # the next full window probes up from the new limit
    limits = []
    for _ in range(4):
        clock.now += 1.0
        aimd.congested(in_use=aimd.limit)
        limits.append(aimd.limit)
    assert limits == [2, 1, 1, 1]


def test_one_decrease_per_congestion_event() -> None:
    clock = FakeClock()
    aimd = limit_for(clock, ceiling=16)
    aimd.limit = 16
    assert aimd.congested(in_use=16)
    # Layers started under the old limit keep retrying: the same event.
    assert not aimd.congested(in_use=16)
    clock.now += 5.0
    assert not aimd.congested(in_use=12)  # still more in flight than the limit of 8
    assert aimd.congested(in_use=8)
    assert aimd.limit == 4
    assert not aimd.congested(in_use=4)  # within a second of the last decrease
    assert aimd.limit == 4


def test_after_a_decrease_it_grows_again_when_throughput_does() -> None:
    clock = FakeClock()
    aimd = limit_for(clock)
    aimd.congested(in_use=4)
    assert aimd.limit == 2
    window(aimd, clock, 50 * MIB)
    window(aimd, clock, 75 * MIB)
    assert aimd.limit == 4


def test_never_above_max_concurrency() -> None:
    clock, rate = FakeClock(), float(MIB)
    aimd = limit_for(clock, ceiling=6)
    for _ in range(10):
        window(aimd, clock, rate)
        rate *= 2
        assert aimd.limit <= 6
    assert aimd.limit == 6


def test_never_above_what_the_budget_holds() -> None:
    clock, rate = FakeClock(), float(MIB)
    aimd = limit_for(clock, budget_cap=5)
    for _ in range(10):
        window(aimd, clock, rate)
        rate *= 2
        assert aimd.limit <= 5
    aimd.cap_by_budget(3)  # bigger parts than assumed: the limit follows at once
    assert aimd.limit == 3
    window(aimd, clock, rate * 2)
    assert aimd.limit == 3


def test_the_budget_cap_counts_every_part_a_layer_holds() -> None:
    # ECR: 10 MiB parts held 1.4 times, three parts per layer (wire, read-ahead, encoding).
    assert layers_within_budget(256 * MIB, 10 * MIB, 1.4, 3) == 6
    assert layers_within_budget(256 * MIB, 20 * MIB, 1.4, 3) == 3
    assert layers_within_budget(21 * MIB, 20 * MIB, 1.4, 3) == 1  # never below one


async def test_a_fixed_limit_never_changes() -> None:
    limit = LayerLimit.fixed(3)
    for _ in range(50):
        limit.part_confirmed(100 * MIB)
        limit.congested()
    limit.cap_by_budget(1)
    assert limit.statistics().limit == 3
    assert not limit.statistics().adaptive
    inside = 0
    most = 0

    async def hold() -> None:
        nonlocal inside, most
        async with limit.slot():
            inside += 1
            most = max(most, inside)
            await anyio.sleep(0.01)
            inside -= 1

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(hold)
    assert most == 3


async def test_the_gate_follows_a_lowered_limit_without_stopping_layers() -> None:
    clock = FakeClock()
    limit = LayerLimit.adaptive(limit_for(clock))
    release = anyio.Event()
    entered: list[int] = []

    async def layer(number: int) -> None:
        async with limit.slot():
            entered.append(number)
            await release.wait()

    async with anyio.create_task_group() as group:
        for number in range(6):
            group.start_soon(layer, number)
        await anyio.wait_all_tasks_blocked()
        assert (len(entered), limit.in_use) == (4, 4)
        limit.congested()  # 4 -> 2: the four keep going, no new one starts
        assert limit.current == 2
        await anyio.wait_all_tasks_blocked()
        assert len(entered) == 4
        release.set()
    assert sorted(entered) == list(range(6))


# --- the engine ------------------------------------------------------------------------


class RecordsLimit:
    """An observer that writes down the engine's limit at every retry and layer end."""

    def __init__(self) -> None:
        self.engine: UploadEngine | None = None
        self.at_retry: list[int] = []

    def layer_started(self, job: LayerJob) -> None:
        pass

    def layer_hashed(self, job: LayerJob, digest: str, size: int) -> None:
        pass

    def upload_started(self, job: LayerJob, upload_id: str, part_size: int) -> None:
        pass

    def part_confirmed(self, job: LayerJob, next_byte: int, nbytes: int, seconds: float) -> None:
        assert self.engine is not None
        statistics = self.engine.limit.statistics()
        assert statistics.limit <= statistics.ceiling
        assert statistics.budget_cap is None or statistics.limit <= statistics.budget_cap

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None:
        assert self.engine is not None
        self.at_retry.append(self.engine.limit.current)

    def layer_finished(self, result: LayerResult) -> None:
        pass


def auto_engine(registry: MemoryRegistry, observer: RecordsLimit) -> UploadEngine:
    settings = EngineSettings(
        concurrency=None,
        max_concurrency=8,
        memory_budget=256 * MIB,
        part_size=None,
        retry=RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.002),
        overlap_threshold=1 << 62,
    )
    engine = UploadEngine(registry, settings, observer)
    observer.engine = engine
    return engine


async def test_throttling_lowers_the_limit_and_every_layer_still_arrives(tmp_path: Path) -> None:
    registry = MemoryRegistry(throttle_next=3)
    observer = RecordsLimit()
    engine = auto_engine(registry, observer)
    layers = [make_layer(tmp_path, f"l{i}", 6 * MIB) for i in range(10)]
    start = engine.limit.current
    assert start == INITIAL_LIMIT
    results = await engine.push_all(LayerJob(path, "team/app") for path, _ in layers)
    assert [r.outcome for r in results] == [Outcome.UPLOADED] * 10
    assert all(registry.layers[digest] == path.read_bytes() for path, digest in layers)
    assert observer.at_retry, "the registry throttled"
    assert observer.at_retry[0] == start // 2  # halved on the first signal
    assert engine.limit.current < start
    assert registry.max_uploads_in_flight <= start
    assert registry.max_same_upload_overlap == 1


async def test_the_budget_cap_follows_the_part_size_the_registry_offers(tmp_path: Path) -> None:
    registry = MemoryRegistry(part_size=5 * MIB)
    observer = RecordsLimit()
    engine = auto_engine(registry, observer)
    # two parts a layer (on the wire, read ahead) of the usual 10 MiB expected
    assert engine.limit.statistics().budget_cap == 256 // (10 * 2)
    path, _ = make_layer(tmp_path, "l", 6 * MIB)
    await engine.push_all([LayerJob(path, "team/app")])
    assert engine.limit.statistics().budget_cap == 256 // (5 * 2)


def test_engine_settings_refuse_a_limit_out_of_range() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        EngineSettings(
            concurrency=None,
            max_concurrency=0,
            memory_budget=256 * MIB,
            part_size=None,
            retry=RetryPolicy(max_attempts=1),
            overlap_threshold=1,
        )


def test_the_budget_cap_counts_parts_no_bigger_than_the_recent_layers() -> None:
    cap = BudgetCap(256 * MIB, 1.0, parts_per_layer=3, expected_part=10 * MIB)
    assert cap.layers == 256 // 30  # nothing started: the usual parts expected
    cap.part_size_offered(10 * MIB)
    for _ in range(RECENT_LAYERS):
        cap.layer_started(64 * 1024)
    assert cap.layers == 256 * MIB // (3 * 64 * 1024)  # 64 KiB layers, 64 KiB parts
    cap.layer_started(1024 * MIB)  # one big layer brings it down at once...
    assert cap.layers == 256 // 30
    for _ in range(RECENT_LAYERS - 1):
        cap.layer_started(64 * 1024)
    assert cap.layers == 256 // 30  # ...and keeps it down while it may be in flight
    cap.layer_started(64 * 1024)
    assert cap.layers == 256 * MIB // (3 * 64 * 1024)
    cap.part_size_offered(20 * MIB)  # a part grown for a huge layer counts at once
    cap.layer_started(30 * 1024 * MIB)
    assert cap.layers == 256 // 60


async def test_a_slot_handed_to_a_waiting_layer_counts_as_taken() -> None:
    """A window closing between a release and the next layer's start is still full."""
    clock = FakeClock()
    aimd = AimdLimit(ceiling=4, budget_cap=64, clock=clock, initial=1)
    limit = LayerLimit.adaptive(aimd)
    release = anyio.Event()

    async def first() -> None:
        async with limit.slot():
            for _ in range(PARTS_PER_SLOT - 1):
                limit.part_confirmed(1)
            await release.wait()
        # The slot went to the waiting layer, which has not run yet.
        clock.now += 1.0
        limit.part_confirmed(1_000_000)

    async def second() -> None:
        async with limit.slot():
            pass

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert aimd.limit == 2  # the first full window probes one up


def test_the_first_probe_needs_a_part_per_slot_and_a_quarter_window() -> None:
    clock = FakeClock()
    aimd = limit_for(clock)
    for _ in range(3):
        aimd.part_confirmed(MIB, 4)
    clock.now += 0.1
    aimd.part_confirmed(MIB, 4)
    assert aimd.limit == 4  # a part per slot, but too soon
    clock.now += 0.2
    aimd.part_confirmed(MIB, 4)
    assert (aimd.limit, aimd.ramp_to) == (5, 8)  # probed: nothing to compare with yet
    for _ in range(8):
        clock.now += 0.3
        aimd.part_confirmed(MIB, aimd.limit)
    assert aimd.limit == 8  # ramped there in 3 parts; later windows need 4 a slot and 1 s
