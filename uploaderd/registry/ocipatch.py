"""One chunk's PATCH in flight, its body fed by the engine part by part.

The request (sent by ``ocichunks`` with the chunk's ``Content-Range`` and
``Content-Length``, which also decides where chunks end and what a lost one
means) stays open across several ``upload_part`` calls: its body
(``FedBody``) takes each part as the engine reads it, and only the call that
feeds the chunk's last part waits for the registry's answer.

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

import aiohttp.payload
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from uploaderd.registry.ocitransport import BodyPiece, FedBody
from uploaderd.sizes import KIB

TAIL_COPY = 256 * KIB
"""Copied at the end of each part: more than asyncio's and uvloop's 64 KiB high water
mark, so after it drains nothing refers to the part's buffer (see the docstring)."""


class ChunkFailedError(Exception):
    """The chunk's request ended before it took every part fed to it."""


@dataclass(eq=False)
class OpenChunk:
    """A PATCH in flight for bytes ``first_byte``..``last_byte`` of one upload."""

    first_byte: int
    last_byte: int
    next_byte: int = field(init=False)
    _send: MemoryObjectSendStream[BodyPiece] = field(init=False)
    _receive: MemoryObjectReceiveStream[BodyPiece] = field(init=False)
    _ended: anyio.Event = field(default_factory=anyio.Event)
    answer: object | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.next_byte = self.first_byte
        self._send, self._receive = anyio.create_memory_object_stream[BodyPiece](0)

    @property
    def length(self) -> int:
        return self.last_byte - self.first_byte + 1

    @property
    def complete(self) -> bool:
        return self.next_byte > self.last_byte

    def body(self) -> aiohttp.payload.Payload:
        return FedBody(self._receive, self.length)

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
                await self._send.send(BodyPiece(head))
            await self._send.send(BodyPiece(tail, written))
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
