"""An open OCI upload's bytes: PATCHes, one per part or one per chunk of several parts.

Every answer names the ``Location`` the next request must use (distribution
signs the offset into it): the latest is kept per upload, with the byte the
registry is known to expect; the engine sees only the first, as the upload
id.  After a 416 or a dropped connection the registry is asked where the
upload stands (``GET``, ``Range: 0-<last>``) and the engine goes on from
there, as after ECR's InvalidLayerPartException.  Where the layer's end is
unknown, each part is its own PATCH; otherwise a chunk takes several.

A chunked OCI upload pays a round trip per PATCH: the next one may start
only once the registry has answered the last (its ``Location`` changes).
With 10 MiB parts that is one idle round trip per 10 MiB on every
connection, 8% of a 16 MiB/s link at 50 ms and 11% at 150 ms.  Memory,
though, wants small parts: each is a buffer charged to the byte budget.

So a chunk is one PATCH whose body is fed by the engine part by part as it
reads them (``ocipatch``): the request stays open across several
``upload_part`` calls, and only the call that feeds a chunk's last part waits
for the registry's answer.  The parts before it are confirmed when their
bytes are written, which is optimistic: if the chunk then fails, the registry
is asked where the upload stands and the engine continues from there, as
after any lost answer.  Each chunk declares its ``Content-Range`` and
``Content-Length``, so a registry checks it as it checks any chunk.  After a
kill -9 the restarted engine asks the same way; distribution signs the offset
into each ``Location`` and refuses the stale one the journal holds, so there
the layer is sent again in a new upload (tests/oci/test_daemon_resume.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anyio.abc import TaskGroup
from yarl import URL

from uploaderd.errors import ErrorCode, PartOutOfOrderError, TransientRegistryError
from uploaderd.registry.base import PartPayload, UploadSession
from uploaderd.registry.ocipatch import ChunkFailedError, OpenChunk
from uploaderd.registry.ocitransport import (
    Answer,
    ConnectionLostError,
    OciTransport,
    check_held,
    next_location,
    raise_refusal,
    range_end,
)
from uploaderd.sizes import MIB

CHUNK_BYTES = 64 * MIB
"""Bytes per PATCH, give or take a part (``chunk_end``): a round trip per 64 MiB is
under 1% of a 16 MiB/s, 50 ms link and 2% at 8 MiB/s and 150 ms; the parts in it stay
the engine's size."""


def chunk_end(first_byte: int, part_size: int, layer_size: int, chunk_bytes: int) -> int:
    """The last byte of the chunk that starts at ``first_byte``.

    The rest of the layer goes in as few chunks as ``chunk_bytes`` allows, each of
    whole parts and as equal as they can be.  Filling each chunk to the brim
    instead would send a 64 MiB layer of 10 MiB parts as 60 MiB and then 4 MiB,
    the second PATCH costing a round trip with the link idle, to save nothing.
    """
    rest = layer_size - first_byte
    chunks = -(-rest // chunk_bytes)
    parts = -(-rest // part_size)
    parts_per_chunk = -(-parts // chunks)
    return min(first_byte + parts_per_chunk * part_size, layer_size) - 1


@dataclass(slots=True)
class BlobUploads:
    """Where each open upload of one registry stands, and the PATCHes that carry its parts."""

    transport: OciTransport
    tasks: TaskGroup | None = None
    """Where a chunk's request runs while the engine feeds it; None: a PATCH per part."""
    chunk_bytes: int = CHUNK_BYTES
    _locations: dict[str, URL] = field(default_factory=dict)
    _synced: dict[str, int] = field(default_factory=dict)
    """upload id -> the byte the registry is known to expect next (it answered so)."""
    _chunks: dict[str, OpenChunk] = field(default_factory=dict)

    def opened(self, location: URL) -> str:
        """A new upload, empty at ``location``; its id."""
        self._locations[str(location)] = location
        self._synced[str(location)] = 0
        return str(location)

    def location(self, upload_id: str) -> URL:
        return self._locations.get(upload_id, URL(upload_id))

    def closed(self, upload_id: str) -> None:
        self._locations.pop(upload_id, None)
        self._synced.pop(upload_id, None)

    async def upload_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        """Send a part; the last byte the registry holds (for now, inside a chunk)."""
        if session.layer_size is None or self.tasks is None:
            return await self._patch_part(session, first_byte, part)
        return await self._patch_in_chunk(session, first_byte, part, self.tasks)

    async def _patch_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        location = self.location(session.upload_id)
        last_byte = first_byte + part.length - 1
        headers = {
            "Content-Range": f"{first_byte}-{last_byte}",
            "Content-Type": "application/octet-stream",
        }
        try:
            answer = await self.transport.send(
                "PATCH", location, session.repository, headers=headers, data=part.wire
            )
        except ConnectionLostError:
            await self._resynchronise(session, location, first_byte)
            raise
        if answer.status == 416:
            await self._resynchronise(session, location, first_byte)
            raise TransientRegistryError(
                "the registry refused the part's range but holds the bytes before it",
                repository=session.repository,
                code=ErrorCode.RANGE_NOT_SATISFIABLE,
            )
        return self._check_answer(session, location, last_byte, answer, "sending a part")

    async def _patch_in_chunk(
        self, session: UploadSession, first_byte: int, part: PartPayload, tasks: TaskGroup
    ) -> int:
        """Feed the part to its chunk's PATCH; wait for the answer only at the chunk's end."""
        upload_id = session.upload_id
        chunk = self._chunks.get(upload_id)
        if chunk is not None and chunk.next_byte != first_byte:
            self._drop_chunk(upload_id)  # the engine moved: that chunk's answer is not wanted
            chunk = None
        location = self.location(upload_id)
        if chunk is None:
            if self._synced.get(upload_id) != first_byte:
                await self._resynchronise(session, location, first_byte)
                location = self.location(upload_id)
            chunk = self._open_chunk(session, location, first_byte, tasks)
        try:
            await chunk.feed(part.wire)
            if not chunk.complete:
                return first_byte + part.length - 1  # confirmed for now: see the module
            answer = await chunk.wait_answer()
        except ChunkFailedError as exc:
            self._drop_chunk(upload_id)
            if isinstance(chunk.answer, Answer):
                self._check_chunk_answer(session, location, chunk, chunk.answer)
            await self._resynchronise(session, location, first_byte)
            raise ConnectionLostError(
                f"registry {self.transport.name}: {exc}",
                repository=session.repository,
                code=ErrorCode.CHUNK_LOST,
            ) from None
        self._chunks.pop(upload_id, None)
        assert isinstance(answer, Answer)
        return self._check_chunk_answer(session, location, chunk, answer)

    def _open_chunk(
        self, session: UploadSession, location: URL, first_byte: int, tasks: TaskGroup
    ) -> OpenChunk:
        assert session.layer_size is not None
        last = chunk_end(first_byte, session.part_size, session.layer_size, self.chunk_bytes)
        chunk = OpenChunk(first_byte, last)
        self._chunks[session.upload_id] = chunk
        headers = {
            "Content-Range": f"{first_byte}-{last}",
            "Content-Length": str(chunk.length),
            "Content-Type": "application/octet-stream",
        }
        authorization = self.transport.auth.header(f"repository:{session.repository}:pull,push")
        if authorization is not None:
            headers["Authorization"] = authorization
        tasks.start_soon(self._send_chunk, chunk, location, headers)
        return chunk

    async def _send_chunk(self, chunk: OpenChunk, location: URL, headers: dict[str, str]) -> None:
        """The chunk's request, in the registry's task group; its outcome goes to ``chunk``."""
        answer: Answer | None = None
        error: BaseException | None = None
        try:
            answer = await self.transport.exchange("PATCH", location, headers, chunk.body())
        except Exception as exc:  # told to the feeder, never lost
            error = exc
        finally:  # cancelled too (the registry closing): no feeder waits forever
            chunk.ended(answer, error)

    def _check_chunk_answer(
        self, session: UploadSession, location: URL, chunk: OpenChunk, answer: Answer
    ) -> int:
        self._synced.pop(session.upload_id, None)
        if answer.status == 401:  # the chunk's request answers no challenge itself
            self.transport.auth.forget(f"repository:{session.repository}:pull,push")
        last = self._check_answer(session, location, chunk.last_byte, answer, "sending a chunk")
        self._synced[session.upload_id] = last + 1
        return last

    def _check_answer(
        self, session: UploadSession, location: URL, last_byte: int, answer: Answer, doing: str
    ) -> int:
        """What the registry said to a PATCH ending at ``last_byte``; the last byte it holds."""
        if answer.status != 202:
            raise_refusal(answer, self.transport.name, session.repository, doing, upload=True)
        self._locations[session.upload_id] = next_location(answer, location, self.transport.name)
        check_held(answer, last_byte, self.transport.name, session.repository)
        return last_byte

    def _drop_chunk(self, upload_id: str) -> None:
        chunk = self._chunks.pop(upload_id, None)
        if chunk is not None:
            chunk.abandon()

    async def _resynchronise(self, session: UploadSession, location: URL, first_byte: int) -> None:
        """Raise ``PartOutOfOrderError`` if the registry holds another count than ``first_byte``.

        Returns when it holds exactly the bytes before this part: sending the
        same part again is then the right move, left to the caller's retry.
        """
        answer = await self.transport.send("GET", location, session.repository)
        if answer.status not in (200, 204):
            raise_refusal(
                answer,
                self.transport.name,
                session.repository,
                "asking for an upload's status",
                upload=True,
            )
        self._locations[session.upload_id] = next_location(answer, location, self.transport.name)
        held = range_end(answer.headers.get("Range"))
        next_byte = 0 if held is None else held + 1
        if next_byte != first_byte:
            raise PartOutOfOrderError(
                f"registry holds bytes up to {next_byte - 1}",
                next_byte=next_byte,
                repository=session.repository,
            )
        self._synced[session.upload_id] = first_byte
