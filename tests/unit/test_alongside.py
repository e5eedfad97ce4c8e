"""A big loose layer is hashed beside its upload: never completed before the registry is asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import make_layer
from tests.unit.test_engine import engine_for
from uploaderd.engine.observer import SilentObserver
from uploaderd.engine.scheduler import UploadEngine
from uploaderd.errors import ErrorCode
from uploaderd.model import FileIdentity, LayerJob, Outcome, ResumePoint
from uploaderd.registry.base import PartBytes
from uploaderd.sizes import MIB
from uploaderd.testing import MemoryRegistry

ALWAYS = {"overlap_threshold": 1}


@pytest.mark.parametrize(
    "faults",
    [
        {},
        {"lose_answer_of_parts": {1, 3}},
        {"silently_drop_parts": {2}},
        {"forget_upload_after_parts": 2},
        {"throttle_next": 2},
    ],
)
async def test_hashed_beside_the_upload_the_layer_arrives_whole(
    tmp_path: Path, faults: dict[str, object]
) -> None:
    registry = MemoryRegistry(**faults)  # type: ignore[arg-type]
    path, digest = make_layer(tmp_path, "big", 21 * MIB + 5)
    results = await engine_for(registry, **ALWAYS).push_all([LayerJob(path, "r1")])
    assert results[0].outcome is Outcome.UPLOADED, results[0].error
    assert results[0].digest == digest
    assert registry.layers[digest] == path.read_bytes()
    assert registry.completed == [digest]


async def test_a_layer_the_registry_has_is_abandoned_not_completed(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    path, digest = make_layer(tmp_path, "big", 40 * MIB)
    registry.layers[digest] = path.read_bytes()
    results = await engine_for(registry, **ALWAYS).push_all([LayerJob(path, "r1")])
    assert results[0].outcome is Outcome.EXISTS
    assert results[0].digest == digest
    assert registry.completed == []
    assert registry.uploads_started <= 1


async def test_a_file_changed_while_hashed_is_never_completed(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    path, _ = make_layer(tmp_path, "big", 30 * MIB)

    class Changer(SilentObserver):
        """Rewrites the file as its upload starts, while it is still being hashed."""

        def upload_started(self, job: LayerJob, upload_id: str, part_size: int) -> None:
            with path.open("r+b") as layer:
                layer.write(b"rewritten")
            os.utime(path, ns=(1, 1))

    engine = UploadEngine(registry, engine_for(registry, **ALWAYS).settings, Changer())
    results = await engine.push_all([LayerJob(path, "r1")])
    assert results[0].outcome is Outcome.FAILED
    assert results[0].error is not None
    assert results[0].error.code == ErrorCode.FILE_CHANGED
    assert results[0].error.retry_later
    assert registry.completed == []


async def test_an_upload_of_the_same_file_resumes_while_it_is_hashed(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    path, digest = make_layer(tmp_path, "big", 16 * MIB)
    data = path.read_bytes()
    session = await registry.start_upload("r1")
    await registry.upload_part(
        session, 0, registry.encode_part(session, PartBytes(data[: 5 * MIB]))
    )
    st = path.stat()
    job = LayerJob(
        path,
        "r1",
        known_identity=FileIdentity(st.st_size, st.st_mtime_ns, st.st_ino),
        resume=ResumePoint(session.upload_id, 5 * MIB, next_byte=5 * MIB),
    )
    sent_before = registry.parts_sent
    results = await engine_for(registry, **ALWAYS).push_all([job])
    assert results[0].outcome is Outcome.UPLOADED, results[0].error
    assert registry.layers[digest] == data
    assert registry.parts_sent - sent_before == 3  # 5-10, 10-15, 15-16 MiB: nothing resent
