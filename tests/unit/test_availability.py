"""Availability checks coalesced per repository (``engine/availability``).

Asserted on the calls the registry saw, never on timing: how many, which
digests each carried, and whether a check went out before any other came.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from tests.helpers import make_layer
from uploaderd.engine.availability import MAX_DIGESTS_PER_CHECK, AvailabilityChecks
from uploaderd.engine.retry import RetryPolicy
from uploaderd.engine.scheduler import EngineSettings, UploadEngine
from uploaderd.errors import RegistryError, TransientRegistryError
from uploaderd.model import LayerJob, Outcome
from uploaderd.sizes import MIB
from uploaderd.testing import MemoryRegistry


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


class HeldRegistry(MemoryRegistry):
    """Holds each ``missing_layers`` call until the test lets it answer (or fail)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = anyio.Event()
        self.fail_with: list[Exception] = []

    async def missing_layers(self, repository: str, digests: Sequence[str]) -> set[str]:
        self.availability_checks.append((repository, list(digests)))
        await self.release.wait()
        if self.fail_with:
            raise self.fail_with.pop(0)
        return {d for d in digests if d not in self.layers}


async def check_all(checks: AvailabilityChecks, wanted: list[tuple[str, str]]) -> list[bool]:
    answers: dict[int, bool] = {}

    async def one(index: int, repository: str, layer: str) -> None:
        answers[index] = await checks.is_missing(repository, layer)

    async with anyio.create_task_group() as group:
        for index, (repository, layer) in enumerate(wanted):
            group.start_soon(one, index, repository, layer)
    return [answers[index] for index in range(len(wanted))]


async def test_concurrent_checks_of_one_repository_share_calls_of_up_to_100() -> None:
    registry = MemoryRegistry()
    present = {digest(n) for n in range(0, 250, 3)}
    registry.layers.update(dict.fromkeys(present, b"x"))
    wanted = [("team/app", digest(n)) for n in range(250)]
    answers = await check_all(AvailabilityChecks(registry.missing_layers), wanted)
    assert answers == [layer not in present for _, layer in wanted]
    sizes = [len(digests) for _, digests in registry.availability_checks]
    assert sizes == [MAX_DIGESTS_PER_CHECK, MAX_DIGESTS_PER_CHECK, 50]  # ceil(250 / 100) calls
    asked = [d for _, digests in registry.availability_checks for d in digests]
    assert sorted(asked) == sorted(layer for _, layer in wanted)


async def test_checks_of_two_repositories_never_share_a_call() -> None:
    registry = MemoryRegistry()
    wanted = [(repository, digest(n)) for n in range(30) for repository in ("team/a", "team/b")]
    answers = await check_all(AvailabilityChecks(registry.missing_layers), wanted)
    assert answers == [True] * len(wanted)
    calls = sorted(registry.availability_checks)
    assert [repository for repository, _ in calls] == ["team/a", "team/b"]
    assert [sorted(digests) for _, digests in calls] == [sorted(digest(n) for n in range(30))] * 2


async def test_the_same_digest_twice_is_asked_once() -> None:
    registry = MemoryRegistry()
    answers = await check_all(
        AvailabilityChecks(registry.missing_layers), [("team/app", digest(1))] * 3
    )
    assert answers == [True] * 3
    assert registry.availability_checks == [("team/app", [digest(1)])]


async def test_a_lone_check_goes_out_at_once() -> None:
    """No window waits for company: the call is made before the check's task ever blocks."""
    registry = HeldRegistry()
    checks = AvailabilityChecks(registry.missing_layers)
    async with anyio.create_task_group() as group:
        group.start_soon(checks.is_missing, "team/app", digest(1))
        await wait_all_tasks_blocked()
        assert registry.availability_checks == [("team/app", [digest(1)])]
        registry.release.set()


async def calls_while_the_first_is_held(
    registry: HeldRegistry, checks: AvailabilityChecks, later: int
) -> list[tuple[str, list[str]]]:
    """Check digest 0, then ``later`` more while its call is held: the calls made by then.

    Then every call is let answer, and all the checks return.
    """
    async with anyio.create_task_group() as group:
        group.start_soon(checks.is_missing, "team/app", digest(0))
        await wait_all_tasks_blocked()
        for n in range(1, 1 + later):
            group.start_soon(checks.is_missing, "team/app", digest(n))
        await wait_all_tasks_blocked()
        held = list(registry.availability_checks)
        registry.release.set()
    return held


async def test_checks_arriving_during_a_call_go_out_together_after_it() -> None:
    registry = HeldRegistry()
    held = await calls_while_the_first_is_held(
        registry, AvailabilityChecks(registry.missing_layers), 5
    )
    assert len(held) == 1  # the others wait for its answer
    assert registry.availability_checks == [
        ("team/app", [digest(0)]),
        ("team/app", [digest(n) for n in range(1, 6)]),
    ]


async def test_without_coalescing_no_check_waits_for_another() -> None:
    # An OCI registry asks one HEAD per layer: sharing a call would only add a wait.
    registry = HeldRegistry()
    checks = AvailabilityChecks(registry.missing_layers, coalesce=False)
    held = await calls_while_the_first_is_held(registry, checks, 5)
    assert held == [("team/app", [digest(n)]) for n in range(6)]


async def test_a_full_batch_does_not_wait_for_the_call_in_flight() -> None:
    registry = HeldRegistry()
    checks = AvailabilityChecks(registry.missing_layers)
    held = await calls_while_the_first_is_held(registry, checks, MAX_DIGESTS_PER_CHECK)
    assert [len(d) for _, d in held] == [1, MAX_DIGESTS_PER_CHECK]


async def test_a_failed_call_fails_each_check_with_its_own_error() -> None:
    registry = HeldRegistry()
    registry.fail_with.append(RegistryError("no such repository", code="RepositoryNotFound"))
    checks = AvailabilityChecks(registry.missing_layers)
    errors: list[BaseException] = []

    async def one(n: int) -> None:
        try:
            await checks.is_missing("team/app", digest(n))
        except RegistryError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for n in range(4):
            group.start_soon(one, n)
        await wait_all_tasks_blocked()
        registry.release.set()
    assert len(registry.availability_checks) == 1
    assert [type(e) for e in errors] == [RegistryError] * 4
    assert {e.code for e in errors if isinstance(e, RegistryError)} == {"RepositoryNotFound"}
    assert len({id(e) for e in errors}) == 4  # each layer names its own file on its error


async def test_a_cancelled_leader_leaves_the_others_to_ask_again() -> None:
    registry = HeldRegistry()
    checks = AvailabilityChecks(registry.missing_layers)
    answers: list[bool] = []
    leader = anyio.CancelScope()

    async def lead() -> None:
        with leader:
            await checks.is_missing("team/app", digest(0))

    async def follow(n: int) -> None:
        answers.append(await checks.is_missing("team/app", digest(n)))

    async with anyio.create_task_group() as group:
        group.start_soon(lead)
        group.start_soon(follow, 1)
        group.start_soon(follow, 2)
        await wait_all_tasks_blocked()
        leader.cancel()  # its call is cancelled with it: nobody got an answer
        await wait_all_tasks_blocked()
        registry.release.set()
    assert answers == [True, True]
    assert registry.availability_checks == [
        ("team/app", [digest(0), digest(1), digest(2)]),
        ("team/app", [digest(1), digest(2)]),
    ]


FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002)


def engine_for(registry: MemoryRegistry, concurrency: int) -> UploadEngine:
    settings = EngineSettings(
        concurrency=concurrency,
        memory_budget=32 * MIB,
        part_size=None,
        retry=FAST_RETRY,
        overlap_threshold=1 << 62,
    )
    return UploadEngine(registry, settings)


class ThrottledChecks(MemoryRegistry):
    """The first availability check is throttled; every later one answers."""

    throttled = False

    async def missing_layers(self, repository: str, digests: Sequence[str]) -> set[str]:
        if not self.throttled:
            self.throttled = True
            self.availability_checks.append((repository, list(digests)))
            raise TransientRegistryError("slow down", code="ThrottlingException")
        return await super().missing_layers(repository, digests)


async def test_layers_in_flight_together_share_checks_and_retry_each_on_their_own(
    tmp_path: Path,
) -> None:
    registry = ThrottledChecks()
    layers = [make_layer(tmp_path, f"l{i}", 64 * 1024) for i in range(8)]
    results = await engine_for(registry, 8).push_all(LayerJob(p, "team/app") for p, _ in layers)
    assert [r.outcome for r in results] == [Outcome.UPLOADED] * 8
    # Every layer was in the throttled call, and each retried it as its own.
    assert [r.attempts for r in results] == [2] * 8
    assert sorted(registry.availability_checks[0][1]) == sorted(d for _, d in layers)
    assert len(registry.availability_checks) < 8


@pytest.mark.parametrize("count", [1, 3])
async def test_push_all_asks_about_every_layer(tmp_path: Path, count: int) -> None:
    registry = MemoryRegistry()
    layers = [make_layer(tmp_path, f"l{i}", 1000 + i) for i in range(count)]
    registry.layers[layers[0][1]] = layers[0][0].read_bytes()
    results = await engine_for(registry, 4).push_all(LayerJob(p, "team/app") for p, _ in layers)
    assert results[0].outcome is Outcome.EXISTS
    assert [r.outcome for r in results[1:]] == [Outcome.UPLOADED] * (count - 1)
    asked = sorted(d for _, digests in registry.availability_checks for d in digests)
    assert asked == sorted(d for _, d in layers)
