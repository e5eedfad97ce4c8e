"""A claimed digest (an image's blob) is checked as the bytes are sent: one pass over the file.

The file is not hashed beforehand: ``hash_layer`` is made to fail if the
engine calls it, except where the test says a full pass is the right move.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import digest_of, make_layer
from tests.unit.test_engine import engine_for
from uploaderd.engine import scheduler
from uploaderd.errors import ErrorCode
from uploaderd.model import BY_MANIFEST, BY_NAME, ClaimSource, LayerJob, Outcome, ResumePoint
from uploaderd.registry.base import PartBytes
from uploaderd.sidecar import sidecar_source
from uploaderd.sizes import MIB
from uploaderd.testing import MemoryRegistry


@pytest.fixture
def no_hash_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("the layer was hashed in a pass of its own")

    monkeypatch.setattr(scheduler, "hash_layer", refuse)


@pytest.mark.parametrize(
    "faults",
    [
        {},
        {"lose_answer_of_parts": {1, 3}},  # parts resent after a lost answer
        {"silently_drop_parts": {2}},  # the registry moves us back: parts read again
        {"forget_upload_after_parts": 2},  # the upload starts over from byte 0
    ],
)
@pytest.mark.usefixtures("no_hash_pass")
async def test_a_claimed_digest_is_checked_while_sending(
    tmp_path: Path, faults: dict[str, object]
) -> None:
    registry = MemoryRegistry(**faults)  # type: ignore[arg-type]
    path, digest = make_layer(tmp_path, "blob", 16 * MIB + 3)
    results = await engine_for(registry).push_all([LayerJob(path, "r1", claimed_digest=digest)])
    assert results[0].outcome is Outcome.UPLOADED, results[0].error
    assert results[0].digest == digest
    assert registry.layers[digest] == path.read_bytes()


@pytest.mark.parametrize(
    ("source", "said"),
    [
        (BY_MANIFEST, "as its image's manifest says; the image is corrupt"),
        (BY_NAME, "as its sha256-<hex> name says; the file is misnamed or corrupt"),
        (
            sidecar_source(Path("blob.sha256")),
            "as its sidecar blob.sha256 says; the layer or its sidecar is wrong",
        ),
    ],
    ids=["manifest", "name", "sidecar"],
)
@pytest.mark.usefixtures("no_hash_pass")
async def test_a_wrong_claim_is_never_completed(
    tmp_path: Path, source: ClaimSource, said: str
) -> None:
    registry = MemoryRegistry()
    path, _ = make_layer(tmp_path, "blob", 11 * MIB)
    claimed = digest_of(b"what the manifest says")
    job = LayerJob(path, "r1", claimed_digest=claimed, claimed_by=source)
    results = await engine_for(registry).push_all([job])
    error = results[0].error
    assert results[0].outcome is Outcome.FAILED
    assert error is not None
    assert error.code == ErrorCode.DIGEST_MISMATCH
    assert f"not {claimed} {said}" in error.message
    assert error.path == path
    assert registry.completed == []
    assert not error.retry_later


@pytest.mark.usefixtures("no_hash_pass")
async def test_a_claimed_layer_already_present_is_not_read(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    path, digest = make_layer(tmp_path, "blob", 6 * MIB)
    registry.layers[digest] = path.read_bytes()
    path.write_bytes(b"unreadable now, and it does not matter")
    results = await engine_for(registry).push_all([LayerJob(path, "r1", claimed_digest=digest)])
    assert results[0].outcome is Outcome.EXISTS
    assert registry.parts_sent == 0


async def test_a_resumed_claim_reads_what_it_skipped(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    path, digest = make_layer(tmp_path, "blob", 12 * MIB)
    data = path.read_bytes()
    session = await registry.start_upload("r1")
    await registry.upload_part(
        session, 0, registry.encode_part(session, PartBytes(data[: 5 * MIB]))
    )
    job = LayerJob(
        path,
        "r1",
        claimed_digest=digest,
        resume=ResumePoint(session.upload_id, 5 * MIB, next_byte=5 * MIB),
    )
    results = await engine_for(registry).push_all([job])
    assert results[0].outcome is Outcome.UPLOADED, results[0].error
    assert registry.layers[digest] == data
