import anyio
import pytest

from uploaderd.budget import ByteBudget


async def test_concurrent_holders_never_exceed_capacity() -> None:
    budget = ByteBudget(100)
    held_now = 0
    worst = 0

    async def holder(nbytes: int) -> None:
        nonlocal held_now, worst
        async with budget.reserve(nbytes):
            held_now += nbytes
            worst = max(worst, held_now)
            await anyio.sleep(0.001)
            held_now -= nbytes

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(holder, 10 + (i * 37) % 60)
    assert worst <= 100
    assert budget.peak <= 100
    assert budget.held == 0
    assert worst > 60  # several holders really did overlap


async def test_waiter_proceeds_when_room_is_released() -> None:
    budget = ByteBudget(10)
    await budget.acquire(8)
    granted = anyio.Event()

    async def second() -> None:
        await budget.acquire(5)
        granted.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.sleep(0.01)
        assert not granted.is_set()
        await budget.release(8)
        with anyio.fail_after(1):
            await granted.wait()
    assert budget.held == 5


async def test_request_larger_than_budget_is_refused_not_deadlocked() -> None:
    budget = ByteBudget(10)
    with pytest.raises(ValueError, match="memory-budget"):
        await budget.acquire(11)


async def test_cancelled_holder_returns_its_bytes() -> None:
    budget = ByteBudget(10)
    with anyio.move_on_after(0.01):
        async with budget.reserve(10):
            await anyio.sleep(1)
    assert budget.held == 0
