"""Recycled part buffers: reused only when free, always charged to the byte budget."""

import anyio

from uploaderd.engine.budget import ByteBudget
from uploaderd.engine.buffers import SMALLEST_KEPT, PartBuffers

MIB = 1024 * 1024
PART = 10 * MIB
CHARGE = PART * 14 // 10
BODY = PART * 4 // 3


async def _another_part_in_flight() -> tuple[ByteBudget, PartBuffers]:
    """A 256 MiB budget where another layer's part (1 MiB) is still in flight."""
    budget = ByteBudget(256 * MIB)
    buffers = PartBuffers(budget)
    await budget.acquire(MIB)
    return budget, buffers


async def _send_one(buffers: PartBuffers) -> int:
    """A part through its life: charged, its body written, settled.  Returns its buffer's id."""
    lease = await buffers.acquire(CHARGE)
    body = lease.allocate(BODY)
    body[:] = b"a" * BODY
    owner = id(body.obj)
    buffers.give_back(body, lease.charge)
    return owner


async def test_a_settled_buffer_is_reused_with_its_charge() -> None:
    budget, buffers = await _another_part_in_flight()
    first = await _send_one(buffers)
    assert buffers.kept_bytes == CHARGE
    assert budget.held == MIB + CHARGE  # kept, and still counted
    lease = await buffers.acquire(CHARGE - 1)  # a last, smaller part
    assert lease.spare is not None
    assert id(lease.spare) == first
    assert lease.charge == CHARGE  # the buffer is a full part's: so is its charge
    assert budget.held == MIB + CHARGE
    assert buffers.kept_bytes == 0
    assert len(lease.allocate(BODY - 100)) == BODY - 100
    assert buffers.reused == 1


async def test_a_buffer_someone_still_views_is_not_reused() -> None:
    _, buffers = await _another_part_in_flight()
    lease = await buffers.acquire(CHARGE)
    sending = lease.allocate(BODY)
    sending[:] = b"s" * BODY
    buffers.give_back(sending, CHARGE)  # settled, but aiohttp (say) still holds the view
    other = (await buffers.acquire(CHARGE)).allocate(BODY)
    other[:] = b"o" * BODY
    assert other.obj is not sending.obj
    assert bytes(sending[:4]) == b"ssss"  # the view in use was never overwritten
    assert buffers.reused == 0


async def test_a_larger_part_reclaims_kept_buffers_instead_of_waiting() -> None:
    budget = ByteBudget(2 * MIB + CHARGE + MIB)
    buffers = PartBuffers(budget)
    await budget.acquire(2 * MIB)
    await _send_one(buffers)
    assert buffers.kept_bytes == CHARGE
    with anyio.fail_after(2):
        lease = await buffers.acquire(CHARGE + MIB)  # fits only once the kept bytes return
    assert lease.spare is None
    assert buffers.kept_bytes == 0
    assert budget.held == 2 * MIB + CHARGE + MIB


async def test_any_waiter_gets_the_kept_bytes_back() -> None:
    budget = ByteBudget(2 * MIB + CHARGE)
    buffers = PartBuffers(budget)
    await budget.acquire(2 * MIB)
    await _send_one(buffers)
    with anyio.fail_after(2):
        async with budget.reserve(CHARGE):  # the hashing pass asks the budget directly
            assert buffers.kept_bytes == 0


async def test_a_part_settled_while_someone_waits_returns_its_charge() -> None:
    budget = ByteBudget(CHARGE + MIB)
    buffers = PartBuffers(budget)
    await budget.acquire(MIB)
    lease = await buffers.acquire(CHARGE)
    body = lease.allocate(BODY)
    granted = anyio.Event()

    async def next_layer_hash() -> None:
        async with budget.reserve(2 * MIB):
            granted.set()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(next_layer_hash)
            await anyio.wait_all_tasks_blocked()
            assert budget.waiting
            buffers.give_back(body, CHARGE)
            await granted.wait()
    assert buffers.kept_bytes == 0


async def test_nothing_is_kept_when_nothing_else_is_in_flight() -> None:
    budget = ByteBudget(256 * MIB)
    buffers = PartBuffers(budget)
    await _send_one(buffers)  # the last part of the run: the daemon goes idle
    assert buffers.kept_bytes == 0
    assert budget.held == 0


async def test_small_parts_are_not_kept() -> None:
    budget, buffers = await _another_part_in_flight()
    lease = await buffers.acquire(SMALLEST_KEPT)
    body = lease.allocate(SMALLEST_KEPT - 1)
    buffers.give_back(body, lease.charge)
    assert buffers.kept_bytes == 0
    assert budget.held == MIB
