"""Checking the queue ahead: a repository's next layers asked about in one request.

Every layer asks the registry whether it already has it, and with small
layers that check is a quarter of all requests.  The engine coalesces the
checks of layers in flight together, but a few layers in flight rarely ask
at the same moment; the queue, though, says which layers come next.  So a
worker that claims a layer nobody asked about yet first takes the next
queued layers of the same repository (up to 100 with its own), finds their
digests (recorded by an earlier run, claimed by the file name or its
sidecar, or hashed now if the file is small, all in one worker thread), and
asks about all of them in one BatchCheckLayerAvailability
(``AvailabilityChecks.check_ahead``).  When their turn comes, each layer's
own check is answered from that, without a request, and a hashed layer is
not hashed again.

Nothing here changes what a push does or what the journal means: a digest
goes to the journal only for the file identity it was computed from, exactly
as the hashing step would write it, and an answer asked ahead only stands in
for the check the layer would make (the engine keeps it briefly, for one
check).  A failed request ahead is forgotten: each layer then asks on its
own, with its own retries, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio

from uploaderd.daemon.journal import FileRecord, Journal
from uploaderd.daemon.spool import LAYER
from uploaderd.engine.availability import (
    ANSWER_KEPT_SECONDS,
    MAX_DIGESTS_PER_CHECK,
    AvailabilityChecks,
)
from uploaderd.engine.budget import ByteBudget
from uploaderd.engine.reader import HASH_CHUNK_SIZE, INLINE_BYTES, hash_if_unchanged
from uploaderd.errors import JournalError, LayerFileError, UploaderError
from uploaderd.sidecar import LayerClaim, layer_claim

QUIET_AFTER_FAILURE_SECONDS = 10.0
"""After a request ahead failed, the repository's layers ask only on their own for this
long: a throttled or failing registry must not get two requests for every layer."""


class CheckAhead:
    """Asks about the queue's next layers of a repository before their turn (see the module)."""

    def __init__(
        self,
        journal: Journal,
        availability: AvailabilityChecks,
        budget: ByteBudget,
        watch: Callable[[], Path],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.availability = availability
        self.budget = budget
        self.watch = watch
        self._clock = clock
        self._asked: dict[int, float] = {}
        """Record ids asked about ahead, and when: their answers wait in the engine."""
        self._asking: dict[int, anyio.Event] = {}
        """Record ids in a request ahead on its way now, and its end."""
        self._quiet_until: dict[str, float] = {}
        """Repositories whose last request ahead failed, and until when they ask on their own."""

    async def before_push(self, record: FileRecord) -> FileRecord:
        """Ask ahead for ``record``'s repository unless it was asked about; the record again,
        with the digest it was hashed to, if it was."""
        if record.kind != LAYER:
            return record
        pending = self._asking.get(record.id)
        if pending is not None:
            await pending.wait()  # its answer is on the way
        elif not self._was_asked(record.id) and not self._quiet(record.repository):
            await self._ask_ahead(record)
        self._asked.pop(record.id, None)  # its push takes the answer: a later try asks anew
        if record.digest is None:
            return self.journal.get(record.id) or record
        return record

    def _quiet(self, repository: str) -> bool:
        until = self._quiet_until.get(repository)
        if until is not None and until <= self._clock():
            del self._quiet_until[repository]
            return False
        return until is not None

    def _was_asked(self, record_id: int) -> bool:
        asked = self._asked.get(record_id)
        return asked is not None and asked >= self._clock() - ANSWER_KEPT_SECONDS

    async def _ask_ahead(self, record: FileRecord) -> None:
        queued = self.journal.queued_layers(
            record.repository, time.time(), limit=2 * MAX_DIGESTS_PER_CHECK
        )
        batch = [record]
        batch += [r for r in queued if r.id not in self._asking and not self._was_asked(r.id)]
        batch = batch[:MAX_DIGESTS_PER_CHECK]
        done = anyio.Event()
        for r in batch:
            self._asking[r.id] = done
        try:
            digests = await self._digests(batch)
            if digests:
                await self.availability.check_ahead(record.repository, list(digests.values()))
            asked = self._clock()
            self._forget_old(asked)
            for record_id in digests:
                self._asked[record_id] = asked
        except JournalError:
            raise
        except UploaderError:
            # Each layer asks on its own, with its own retries, as it always did.
            self._quiet_until[record.repository] = self._clock() + QUIET_AFTER_FAILURE_SECONDS
        finally:
            for r in batch:
                del self._asking[r.id]
            done.set()

    async def _digests(self, batch: list[FileRecord]) -> dict[int, str]:
        """The digest of every file of ``batch`` that has one now, by record id.

        A digest the journal holds or the name or sidecar claims is taken as
        the push would take it; a small file is hashed, the whole batch in one
        worker thread, and recorded in one transaction.  A file whose sidecar
        cannot be used is neither asked about nor hashed: its push fails it.
        """
        watch = self.watch()
        known: dict[int, str] = {}
        to_hash: list[FileRecord] = []
        for r in batch:
            if r.digest is not None:
                known[r.id] = r.digest
                continue
            try:
                claim: LayerClaim | None = layer_claim(watch / r.relpath)
            except LayerFileError:
                continue
            if claim is not None:
                known[r.id] = claim.digest
            elif 0 < r.identity.size <= INLINE_BYTES:
                to_hash.append(r)
        if to_hash:
            paths = [(watch / r.relpath, r) for r in to_hash]
            async with self.budget.reserve(min(HASH_CHUNK_SIZE, INLINE_BYTES)):
                hashed = await anyio.to_thread.run_sync(_hash_each, paths)
            self.journal.record_digests(hashed)
            known.update((r.id, digest) for r, digest in hashed)
        return {r.id: known[r.id] for r in batch if r.id in known}  # in queue order

    def _forget_old(self, now: float) -> None:
        oldest = now - ANSWER_KEPT_SECONDS
        for record_id in [i for i, asked in self._asked.items() if asked < oldest]:
            del self._asked[record_id]


def _hash_each(paths: list[tuple[Path, FileRecord]]) -> list[tuple[FileRecord, str]]:
    """Each file's digest, if it is still the file its record was queued with."""
    hashed = []
    for path, record in paths:
        digest = hash_if_unchanged(path, record.identity)
        if digest is not None:
            hashed.append((record, digest))
    return hashed
