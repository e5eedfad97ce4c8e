"""The engine against ``uploaderd.testing.MemoryRegistry``, which applies ECR's part rules.

These check the engine's own logic (ordering, resume, restart, budget) with
exact control over faults; the end-to-end tests check the same behaviour
through the real process and the real wire protocol.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_layer
from uploaderd.engine.retry import RetryPolicy
from uploaderd.engine.scheduler import EngineSettings, UploadEngine
from uploaderd.model import FileIdentity, LayerJob, Outcome, ResumePoint
from uploaderd.registry.base import PartBytes
from uploaderd.sizes import MIB
from uploaderd.testing import MemoryRegistry

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.002)


def engine_for(registry: MemoryRegistry, **overrides: object) -> UploadEngine:
    options: dict[str, object] = {
        "concurrency": 4,
        "memory_budget": 32 * MIB,
        "part_size": None,
        "retry": FAST_RETRY,
        "overlap_threshold": 1 << 62,
        **overrides,
    }
    settings = EngineSettings(**options)  # type: ignore[arg-type]
    return UploadEngine(registry, settings)


async def test_layers_arrive_whole_with_parts_strictly_in_order(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    sizes = [1, 11 * MIB, 16 * MIB, 16 * MIB]
    layers = [make_layer(tmp_path, f"l{i}", size) for i, size in enumerate(sizes)]
    engine = engine_for(registry, concurrency=4)
    results = await engine.push_all(LayerJob(path, "team/app") for path, _ in layers)
    assert [r.outcome for r in results] == [Outcome.UPLOADED] * 4
    for (path, digest), result in zip(layers, results, strict=True):
        assert result.digest == digest
        assert registry.layers[digest] == path.read_bytes()
    assert registry.max_same_upload_overlap == 1
    assert registry.max_uploads_in_flight >= 2
    assert engine.budget.held == 0
    assert engine.budget.statistics().peak <= 32 * MIB


async def test_layer_already_present_sends_no_part(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    path, digest = make_layer(tmp_path, "l", 6 * MIB)
    registry.layers[digest] = path.read_bytes()
    result = await engine_for(registry).push_layer(LayerJob(path, "team/app"))
    assert result.outcome is Outcome.EXISTS
    assert registry.parts_sent == 0


async def test_lost_answer_continues_from_the_registrys_byte(tmp_path: Path) -> None:
    registry = MemoryRegistry(lose_answer_of_parts={1, 3})
    path, digest = make_layer(tmp_path, "l", 16 * MIB + 3)
    result = await engine_for(registry).push_layer(LayerJob(path, "team/app"))
    assert result.outcome is Outcome.UPLOADED, result.error
    assert registry.layers[digest] == path.read_bytes()
    assert registry.parts_sent == 4  # no part applied twice
    assert result.attempts > 1


async def test_forgotten_upload_restarts_the_layer(tmp_path: Path) -> None:
    registry = MemoryRegistry(forget_upload_after_parts=1)
    path, digest = make_layer(tmp_path, "l", 11 * MIB)
    result = await engine_for(registry).push_layer(LayerJob(path, "team/app"))
    assert result.outcome is Outcome.UPLOADED, result.error
    assert registry.completed == [digest]


async def test_throttling_is_retried(tmp_path: Path) -> None:
    registry = MemoryRegistry(throttle_next=3)
    path, _ = make_layer(tmp_path, "l", 100)
    result = await engine_for(registry).push_layer(LayerJob(path, "team/app"))
    assert result.outcome is Outcome.UPLOADED
    assert result.attempts == 4


async def test_endless_throttling_fails_the_layer_in_bounded_attempts(tmp_path: Path) -> None:
    registry = MemoryRegistry(throttle_next=100)
    path, _ = make_layer(tmp_path, "l", 100)
    result = await engine_for(registry).push_layer(LayerJob(path, "team/app"))
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert "gave up after 4 attempts" in result.error.message
    assert registry.throttle_next == 96


async def test_bad_file_fails_alone_and_others_go_on(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    good, digest = make_layer(tmp_path, "good", 1000)
    empty = tmp_path / "empty"
    empty.touch()
    results = await engine_for(registry).push_all(
        [LayerJob(tmp_path / "missing", "r1"), LayerJob(empty, "r1"), LayerJob(good, "r1")]
    )
    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED, Outcome.UPLOADED]
    assert results[0].error is not None
    assert "no such file" in str(results[0].error)
    assert results[1].error is not None
    assert "empty" in str(results[1].error)
    assert digest in registry.layers


@pytest.mark.parametrize("concurrency", [1, 4, 8])
async def test_budget_bounds_read_ahead_of_many_layers(tmp_path: Path, concurrency: int) -> None:
    registry = MemoryRegistry()
    layers = [make_layer(tmp_path, f"l{i}", 12 * MIB) for i in range(8)]
    engine = engine_for(registry, concurrency=concurrency, memory_budget=21 * MIB)
    results = await engine.push_all(LayerJob(path, "r1") for path, _ in layers)
    assert all(r.outcome is Outcome.UPLOADED for r in results)
    assert engine.budget.statistics().peak <= 21 * MIB
    assert engine.budget.held == 0


async def test_registry_moving_the_position_back_is_followed_without_leaking_budget(
    tmp_path: Path,
) -> None:
    registry = MemoryRegistry(silently_drop_parts={2, 5})
    layers = [make_layer(tmp_path, f"l{i}", 23 * MIB) for i in range(2)]
    engine = engine_for(registry, concurrency=2, read_ahead_parts=2)
    results = await engine.push_all(LayerJob(path, "r1") for path, _ in layers)
    assert [r.outcome for r in results] == [Outcome.UPLOADED] * 2, [r.error for r in results]
    for path, digest in layers:
        assert registry.layers[digest] == path.read_bytes()
    assert engine.budget.held == 0


async def test_resume_continues_an_earlier_upload_without_resending(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    path, digest = make_layer(tmp_path, "l", 16 * MIB)
    data = path.read_bytes()
    session = await registry.start_upload("r1")
    await registry.upload_part(
        session, 0, registry.encode_part(session, PartBytes(data[: 5 * MIB]))
    )
    lost_answer = registry.encode_part(session, PartBytes(data[5 * MIB : 10 * MIB], 5 * MIB))
    await registry.upload_part(session, 5 * MIB, lost_answer)
    st = path.stat()
    job = LayerJob(
        path,
        "r1",
        known_digest=digest,
        known_identity=FileIdentity(st.st_size, st.st_mtime_ns, st.st_ino),
        resume=ResumePoint(session.upload_id, 5 * MIB, next_byte=5 * MIB),
    )
    result = await engine_for(registry).push_layer(job)
    assert result.outcome is Outcome.UPLOADED, result.error
    assert registry.layers[digest] == data
    assert registry.parts_sent == 2 + 2  # the registry's position was followed, not resent
    assert registry.uploads_started == 1


async def test_resume_of_a_forgotten_upload_starts_over(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    path, digest = make_layer(tmp_path, "l", 6 * MIB)
    st = path.stat()
    job = LayerJob(
        path,
        "r1",
        known_digest=digest,
        known_identity=FileIdentity(st.st_size, st.st_mtime_ns, st.st_ino),
        resume=ResumePoint("upload-expired", 5 * MIB, next_byte=5 * MIB),
    )
    result = await engine_for(registry).push_layer(job)
    assert result.outcome is Outcome.UPLOADED, result.error
    assert registry.layers[digest] == path.read_bytes()


async def test_changed_file_is_rehashed_not_resumed(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    path, old_digest = make_layer(tmp_path, "l", 6 * MIB)
    job = LayerJob(
        path,
        "r1",
        known_digest=old_digest,
        known_identity=FileIdentity(6 * MIB, 1, 1),  # not the file on disk any more
        resume=ResumePoint("upload-old", 5 * MIB, next_byte=5 * MIB),
    )
    result = await engine_for(registry).push_layer(job)
    assert result.outcome is Outcome.UPLOADED
    assert result.digest == old_digest  # same bytes, but recomputed rather than trusted
    assert registry.uploads_started == 1
