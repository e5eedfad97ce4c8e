"""Recycled part buffers: reused only when free, always charged to the byte budget."""

import anyio

from uploaderd.engine.budget import ByteBudget
from uploaderd.engine.buffers import SMALLEST_KEPT, PartBuffers
from uploaderd.sizes import MIB

PART = 10 * MIB
CHARGE = PART * 14 // 10
BODY = PART * 4 // 3


async def _another_part_in_flight() -> tuple[ByteBudget, PartBuffers]:
    """A 256 MiB budget where another layer's part (1 MiB) is still in flight."""
    buffers = PartBuffers(256 * MIB)
    await buffers.budget.acquire(MIB)
    return buffers.budget, buffers


async def _send_one(buffers: PartBuffers) -> int:
    """A part through its life: charged, its body written, settled.  Returns its buffer's id."""
    charge = await buffers.acquire(CHARGE)
    body = charge.allocate(BODY)
    body[:] = b"a" * BODY
    owner = id(body.obj)
    charge.settle(body)
    return owner


async def test_a_settled_buffer_is_reused_with_its_charge() -> None:
    budget, buffers = await _another_part_in_flight()
    first = await _send_one(buffers)
    assert buffers.statistics().kept_bytes == CHARGE
    assert budget.held == MIB + CHARGE  # kept, and still counted
    charge = await buffers.acquire(CHARGE - 1)  # a last, smaller part
    assert charge.recycled
    assert charge.nbytes == CHARGE  # the buffer is a full part's: so is its charge
    assert budget.held == MIB + CHARGE
    assert buffers.statistics().kept_bytes == 0
    body = charge.allocate(BODY - 100)
    assert id(body.obj) == first
    assert len(body) == BODY - 100
    assert buffers.statistics().reused == 1


async def test_a_buffer_someone_still_views_is_not_reused() -> None:
    _, buffers = await _another_part_in_flight()
    charge = await buffers.acquire(CHARGE)
    sending = charge.allocate(BODY)
    sending[:] = b"s" * BODY
    charge.settle(sending)  # settled, but aiohttp (say) still holds the view
    other = (await buffers.acquire(CHARGE)).allocate(BODY)
    other[:] = b"o" * BODY
    assert other.obj is not sending.obj
    assert bytes(sending[:4]) == b"ssss"  # the view in use was never overwritten
    assert buffers.statistics().reused == 0


async def test_a_larger_part_reclaims_kept_buffers_instead_of_waiting() -> None:
    buffers = PartBuffers(2 * MIB + CHARGE + MIB)
    budget = buffers.budget
    await budget.acquire(2 * MIB)
    await _send_one(buffers)
    assert buffers.statistics().kept_bytes == CHARGE
    with anyio.fail_after(2):
        charge = await buffers.acquire(CHARGE + MIB)  # fits only once the kept bytes return
    assert not charge.recycled
    assert buffers.statistics().kept_bytes == 0
    assert budget.held == 2 * MIB + CHARGE + MIB


async def test_any_waiter_gets_the_kept_bytes_back() -> None:
    buffers = PartBuffers(2 * MIB + CHARGE)
    budget = buffers.budget
    await budget.acquire(2 * MIB)
    await _send_one(buffers)
    with anyio.fail_after(2):
        async with budget.reserve(CHARGE):  # the hashing pass asks the budget directly
            assert buffers.statistics().kept_bytes == 0


async def test_a_part_settled_while_someone_waits_returns_its_charge() -> None:
    buffers = PartBuffers(CHARGE + MIB)
    budget = buffers.budget
    await budget.acquire(MIB)
    charge = await buffers.acquire(CHARGE)
    body = charge.allocate(BODY)
    granted = anyio.Event()

    async def next_layer_hash() -> None:
        async with budget.reserve(2 * MIB):
            granted.set()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(next_layer_hash)
            await anyio.wait_all_tasks_blocked()
            assert budget.waiting
            charge.settle(body)
            await granted.wait()
    assert buffers.statistics().kept_bytes == 0


async def test_nothing_is_kept_when_nothing_else_is_in_flight() -> None:
    buffers = PartBuffers(256 * MIB)
    budget = buffers.budget
    await _send_one(buffers)  # the last part of the run: the daemon goes idle
    assert buffers.statistics().kept_bytes == 0
    assert budget.held == 0


async def test_small_parts_are_not_kept() -> None:
    budget, buffers = await _another_part_in_flight()
    charge = await buffers.acquire(SMALLEST_KEPT)
    body = charge.allocate(SMALLEST_KEPT - 1)
    charge.settle(body)
    assert buffers.statistics().kept_bytes == 0
    assert budget.held == MIB


async def test_a_charge_settles_once_whichever_path_gets_there() -> None:
    budget, buffers = await _another_part_in_flight()
    charge = await buffers.acquire(CHARGE)
    body = charge.allocate(BODY)
    charge.settle(body)  # the sender settles it, kept for reuse
    charge.settle()  # the reader's failure path, after it had sent the part on
    assert budget.held == MIB + CHARGE  # counted once: kept, not also released
    assert buffers.statistics().kept_buffers == 1
    other = await buffers.acquire(PART)
    other.settle()
    other.settle()
    assert budget.held == MIB + CHARGE  # released once
