"""The daemon asks about its queue's next layers in one request (``daemon/ahead``).

A real journal and ``MemoryRegistry``; asserted on the calls the registry saw
and on what the journal holds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import make_layer
from uploaderd.daemon.ahead import CheckAhead
from uploaderd.daemon.journal import FileRecord, Journal
from uploaderd.daemon.spool import identity_of
from uploaderd.engine.availability import AvailabilityChecks
from uploaderd.engine.budget import ByteBudget
from uploaderd.errors import TransientRegistryError
from uploaderd.sizes import MIB
from uploaderd.testing import MemoryRegistry


class Queue:
    def __init__(self, tmp_path: Path, registry: MemoryRegistry) -> None:
        self.watch = tmp_path / "spool"
        self.journal = Journal.open(tmp_path / "journal.sqlite")
        self.availability = AvailabilityChecks(registry.missing_layers)
        self.ahead = CheckAhead(
            self.journal, self.availability, ByteBudget(64 * MIB), lambda: self.watch
        )
        self.digests: dict[str, str] = {}

    def add(self, repository: str, name: str, size: int = 1000) -> None:
        path, digest = make_layer(self.watch / repository, name, size)
        identity = identity_of(path)
        assert identity is not None
        relpath = f"{repository}/{name}"
        self.journal.enqueue(relpath, repository, identity)
        self.digests[relpath] = digest

    def claim(self) -> FileRecord:
        record = self.journal.claim_next(time.time())
        assert record is not None
        return record


async def test_the_next_100_layers_of_a_repository_are_asked_about_in_one_call(
    tmp_path: Path,
) -> None:
    registry = MemoryRegistry()
    queue = Queue(tmp_path, registry)
    for i in range(150):
        queue.add("team/app", f"l{i:03d}.tar")
    queue.add("team/other", "x.tar")
    present = queue.digests["team/app/l005.tar"]
    registry.layers[present] = b"..."

    first = await queue.ahead.before_push(queue.claim())
    assert first.digest == queue.digests[first.relpath]  # hashed, and recorded
    assert len(registry.availability_checks) == 1
    repository, asked = registry.availability_checks[0]
    assert repository == "team/app"
    assert asked == [queue.digests[f"team/app/l{i:03d}.tar"] for i in range(100)]

    for _ in range(99):  # their turns: no call, no hashing
        record = await queue.ahead.before_push(queue.claim())
        assert record.digest == queue.digests[record.relpath]
        missing = await queue.availability.is_missing("team/app", record.digest)
        assert missing is (record.digest != present)
    assert len(registry.availability_checks) == 1

    await queue.ahead.before_push(queue.claim())  # l100: the next batch, 50 left
    assert [len(d) for _, d in registry.availability_checks] == [100, 50]


async def test_a_file_rewritten_since_it_was_queued_keeps_no_digest(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    queue = Queue(tmp_path, registry)
    queue.add("team/app", "a.tar")
    queue.add("team/app", "b.tar")
    rewritten = queue.watch / "team/app/b.tar"
    rewritten.write_bytes(os.urandom(2000))  # the intake has not seen it yet

    await queue.ahead.before_push(queue.claim())
    assert registry.availability_checks == [("team/app", [queue.digests["team/app/a.tar"]])]
    b = queue.journal.active_record("team/app/b.tar")
    assert b is not None
    assert b.digest is None  # its push hashes the bytes it finds


async def test_a_claimed_digest_is_asked_about_without_hashing(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    queue = Queue(tmp_path, registry)
    queue.add("team/app", "a.tar")
    claimed = "sha256:" + "ab" * 32
    queue.add("team/app", f"sha256-{'ab' * 32}.tar")  # the bytes do not match: push's concern
    await queue.ahead.before_push(queue.claim())
    assert registry.availability_checks == [
        ("team/app", [queue.digests["team/app/a.tar"], claimed])
    ]
    row = queue.journal.active_record(f"team/app/sha256-{'ab' * 32}.tar")
    assert row is not None
    assert row.digest is None  # checked against the bytes as they are sent


async def test_a_sidecars_digest_is_asked_about_without_hashing(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    queue = Queue(tmp_path, registry)
    claimed = "sha256:" + "cd" * 32
    queue.add("team/app", "a.tar")
    (queue.watch / "team/app/a.tar.sha256").write_text(f"{'cd' * 32}  a.tar\n")
    queue.add("team/app", "b.tar")
    (queue.watch / "team/app/b.tar.sha256").write_text("not a digest")
    queue.add("team/app", "c.tar")
    await queue.ahead.before_push(queue.claim())
    # a: by its sidecar, unhashed; b: its push fails it, so neither asked nor hashed
    assert registry.availability_checks == [
        ("team/app", [claimed, queue.digests["team/app/c.tar"]])
    ]
    for name in ("a.tar", "b.tar"):
        row = queue.journal.active_record(f"team/app/{name}")
        assert row is not None
        assert row.digest is None


class FailingChecks(MemoryRegistry):
    async def missing_layers(self, repository: str, digests: Sequence[str]) -> set[str]:
        if not self.availability_checks:
            self.availability_checks.append((repository, list(digests)))
            raise TransientRegistryError("slow down", code="ThrottlingException")
        return await super().missing_layers(repository, digests)


async def test_a_failed_call_ahead_leaves_each_layer_to_ask_on_its_own(tmp_path: Path) -> None:
    registry = FailingChecks()
    queue = Queue(tmp_path, registry)
    queue.add("team/app", "a.tar")
    queue.add("team/app", "b.tar")
    record = await queue.ahead.before_push(queue.claim())  # does not raise
    assert record.digest is not None
    assert await queue.availability.is_missing("team/app", record.digest)
    assert [d for _, d in registry.availability_checks] == [
        [queue.digests["team/app/a.tar"], queue.digests["team/app/b.tar"]],
        [record.digest],  # its own check, as before
    ]
    queue.add("team/app", "c.tar")
    await queue.ahead.before_push(queue.claim())  # b: the registry just failed, so
    assert len(registry.availability_checks) == 2  # b and c are not asked about ahead
