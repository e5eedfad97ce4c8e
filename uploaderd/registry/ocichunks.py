"""OCI chunks of several engine parts: one PATCH per ``CHUNK_BYTES``, not per part.

A chunked OCI upload pays a round trip per PATCH: the next one may start
only once the registry has answered the last (its ``Location`` changes).
With 10 MiB parts that is one idle round trip per 10 MiB on every
connection, 8% of a 16 MiB/s link at 50 ms and 11% at 150 ms.  Memory,
though, wants small parts: each is a buffer charged to the byte budget.

So a chunk is one PATCH whose body is fed by the engine part by part as it
reads them: the request stays open across several ``upload_part`` calls, and
only the call that feeds a chunk's last part waits for the registry's answer.
The parts before it are confirmed when their bytes are written, which is
optimistic: if the chunk then fails, the registry is asked where the upload
stands and the engine continues from there, as after any lost answer.  Each
chunk declares its ``Content-Range`` and ``Content-Length``, so a registry
checks it as it checks any chunk, and a kill -9 resumes from the registry's
own position.

A part's buffer goes back to the engine (to be refilled) as soon as the call
that fed it returns, so its bytes must have left every user-space buffer by
then.  aiohttp writes a body piece and drains the transport below its high
water mark before asking for the next one, but the transport may still refer
to the last few KiB of that piece.  So the last ``TAIL_COPY`` bytes of each
part are sent as a copy, and the call returns only once that copy has been
written and drained: everything before it has then left, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp.abc
import aiohttp.payload
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from uploaderd.sizes import KIB, MIB

CHUNK_BYTES = 64 * MIB
"""Bytes per PATCH: a round trip per 64 MiB is under 1% of a 16 MiB/s, 50 ms link
and 2% at 8 MiB/s and 150 ms; the parts in it stay the engine's size."""
TAIL_COPY = 256 * KIB
"""Copied at the end of each part: more than asyncio's and uvloop's 64 KiB high water
mark, so after it drains nothing refers to the part's buffer (see the docstring)."""


class ChunkFailedError(Exception):
    """The chunk's request ended before it took every part fed to it."""


@dataclass(eq=False)
class _Piece:
    data: bytes | memoryview
    written: anyio.Event | None = None
    """Set once aiohttp has written (and drained) this piece and asks for the next."""


class _FedBody(aiohttp.payload.Payload):
    """A request body of the pieces fed to ``receive``, written as they come."""

    def __init__(self, receive: MemoryObjectReceiveStream[_Piece], length: int) -> None:
        super().__init__(b"", size=length, content_type="application/octet-stream")
        self._receive = receive

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streamed chunk has no text")

    async def write(self, writer: aiohttp.abc.AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: aiohttp.abc.AbstractStreamWriter, content_length: int | None
    ) -> None:
        async with self._receive:
            async for piece in self._receive:
                await writer.write(piece.data)
                if piece.written is not None:
                    piece.written.set()


@dataclass(eq=False)
class OpenChunk:
    """A PATCH in flight for bytes ``first_byte``..``last_byte`` of one upload."""

    first_byte: int
    last_byte: int
    next_byte: int = field(init=False)
    _send: MemoryObjectSendStream[_Piece] = field(init=False)
    _receive: MemoryObjectReceiveStream[_Piece] = field(init=False)
    _ended: anyio.Event = field(default_factory=anyio.Event)
    answer: object | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.next_byte = self.first_byte
        self._send, self._receive = anyio.create_memory_object_stream[_Piece](0)

    @property
    def length(self) -> int:
        return self.last_byte - self.first_byte + 1

    @property
    def complete(self) -> bool:
        return self.next_byte > self.last_byte

    def body(self) -> aiohttp.payload.Payload:
        return _FedBody(self._receive, self.length)

    def ended(self, answer: object | None, error: BaseException | None) -> None:
        """The request is over: its answer, or why there is none."""
        self.answer, self.error = answer, error
        self._ended.set()
        self._send.close()

    async def feed(self, wire: bytes | bytearray | memoryview) -> None:
        """Send ``wire`` as the chunk's next bytes; return once nothing refers to it."""
        view = memoryview(wire).cast("B")
        head, tail = view[: len(view) - TAIL_COPY], bytes(view[len(view) - TAIL_COPY :])
        written = anyio.Event()
        try:
            if head:
                await self._send.send(_Piece(head))
            await self._send.send(_Piece(tail, written))
            await _first_of(written, self._ended)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        if not written.is_set():
            raise ChunkFailedError(f"the chunk's request ended early: {self.error!r}")
        self.next_byte += len(view)
        if self.complete:
            self._send.close()

    async def wait_answer(self) -> object:
        """The registry's answer to the whole chunk (after its last part was fed)."""
        await self._ended.wait()
        if self.answer is None:
            raise ChunkFailedError(f"the chunk's request got no answer: {self.error!r}")
        return self.answer

    def abandon(self) -> None:
        """Stop feeding: the request ends with a short body and its answer is not wanted."""
        self._send.close()


async def _first_of(*events: anyio.Event) -> None:
    async with anyio.create_task_group() as group:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            group.cancel_scope.cancel()

        for event in events:
            group.start_soon(wait, event)
