import anyio
import anyio.lowlevel
import pytest

from uploaderd.engine.budget import ByteBudget


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
    assert budget.statistics().peak <= 100
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
        budget.release(8)
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


async def test_release_works_inside_a_cancelled_scope() -> None:
    budget = ByteBudget(10)
    await budget.acquire(10)
    with anyio.CancelScope() as scope:
        scope.cancel()
        budget.release(10)
        await anyio.lowlevel.checkpoint()  # the scope really is cancelled: this checkpoint raises
        raise AssertionError("not reached")
    assert budget.held == 0


async def test_large_request_is_not_starved_by_small_ones() -> None:
    budget = ByteBudget(10)
    await budget.acquire(6)
    order: list[str] = []

    async def take(name: str, nbytes: int) -> None:
        async with budget.reserve(nbytes):
            order.append(name)
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "large", 10)
        await anyio.sleep(0.001)
        tg.start_soon(take, "small", 2)  # would fit now, but arrived after "large"
        await anyio.sleep(0.001)
        assert order == []
        budget.release(6)
    assert order == ["large", "small"]


async def test_cancelled_waiter_lets_the_next_one_in() -> None:
    budget = ByteBudget(10)
    await budget.acquire(5)
    granted: list[int] = []
    big_scope = anyio.CancelScope()

    async def take(nbytes: int, scope: anyio.CancelScope) -> None:
        with scope:
            await budget.acquire(nbytes)
            granted.append(nbytes)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, 8, big_scope)
        await anyio.sleep(0.001)
        tg.start_soon(take, 4, anyio.CancelScope())
        await anyio.sleep(0.001)
        assert granted == []  # 4 would fit, but waits behind 8
        big_scope.cancel()
    assert granted == [4]
    assert budget.held == 9
