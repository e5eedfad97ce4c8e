"""Pushing one layer: hash, skip if present, then parts strictly in order.

ECR wants ``partFirstByte`` to be exactly the byte after the previous part,
so a layer has at most one UploadLayerPart request outstanding.  The next
part is read while the current one is on the wire (read-ahead, charged to
the shared byte budget).  When the registry says it holds a different byte
count than we believed (a retried request whose first answer was lost), the
push continues from the registry's position rather than failing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from uploaderd.engine.alongside import HashAlongside
from uploaderd.engine.availability import AvailabilityChecks
from uploaderd.engine.buffers import PartBuffers
from uploaderd.engine.digests import StreamDigest
from uploaderd.engine.observer import EngineObserver
from uploaderd.engine.parts import choose_part_size, part_ranges
from uploaderd.engine.reader import LayerFile, Part, hash_layer, read_parts
from uploaderd.engine.retry import RetryPolicy
from uploaderd.errors import (
    ErrorCode,
    ImageError,
    LayerFileError,
    PartOutOfOrderError,
    TransientRegistryError,
    UploadNotFoundError,
    unwrap_group,
)
from uploaderd.model import BY_MANIFEST, LayerJob, Outcome, ResumePoint
from uploaderd.registry.base import Registry, UploadSession

T = TypeVar("T")

MAX_RESYNCS_PER_UPLOAD = 16
"""How often a registry may move our position before we call it broken."""


@dataclass(frozen=True, slots=True)
class PushContext:
    """What every layer push shares: the registry, the budget's part buffers and the rules."""

    registry: Registry
    buffers: PartBuffers
    observer: EngineObserver
    retry: RetryPolicy
    part_size: int | None
    read_ahead_parts: int
    availability: AvailabilityChecks
    """The registry's ``missing_layers``, one call for the checks in flight together."""


class LayerPush:
    """The push of one hashed layer file to one repository."""

    def __init__(
        self,
        context: PushContext,
        job: LayerJob,
        layer: LayerFile,
        digest: str | None,
        streamed: StreamDigest | None = None,
    ) -> None:
        """``streamed``: ``digest`` is only claimed; the parts are hashed as they are sent.

        ``digest`` None: the layer is big and loose, hashed beside its upload.
        """
        self.context = context
        self.job = job
        self.layer = layer
        self.digest = digest
        self.streamed = streamed
        self.alongside: HashAlongside | None = None
        if digest is None:
            self.alongside = HashAlongside(
                layer,
                context.buffers.budget,
                is_missing=self._is_missing,
                on_digest=partial(context.observer.layer_hashed, job, size=layer.size),
            )
        self.retries = 0

    async def run(self) -> Outcome:
        """Make the layer present in the repository; raise ``UploaderError`` if it cannot be."""
        # After a crash, a layer whose completion was answered but not recorded
        # is found already there: it was uploaded, by us.
        found = Outcome.UPLOADED if self.job.resume is not None else Outcome.EXISTS
        if self.alongside is not None:
            return await self._run_hashing_alongside(found)
        assert self.digest is not None
        if not await self._is_missing(self.digest):
            return found
        return await self._upload(self.job.resume)

    async def _run_hashing_alongside(self, found: Outcome) -> Outcome:
        assert self.alongside is not None
        outcome = found  # unless the upload finishes first, the check found the layer
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self.alongside.run, group.cancel_scope)
                outcome = await self._upload(self.job.resume)
        except BaseExceptionGroup as failed:
            raise unwrap_group(failed) from None
        self.digest = self.alongside.digest
        return found if self.alongside.present else outcome

    async def _digest_to_complete(self) -> str:
        if self.alongside is not None:
            return await self.alongside.cleared()
        assert self.digest is not None
        return self.digest

    async def _upload(self, resume: ResumePoint | None) -> Outcome:
        restarts = 0
        while True:
            if resume is not None:
                session = UploadSession(
                    self.job.repository, resume.upload_id, resume.part_size, self.layer.size
                )
                start, resume = resume.next_byte, None
            else:
                session, start = await self._start_upload(), 0
            try:
                await self._send_all_parts(session, start)
                self.layer.check_unchanged()
                await self._check_claimed_digest()
                digest = await self._digest_to_complete()
                await self._retrying(
                    partial(self.context.registry.complete_upload, session, digest)
                )
            except UploadNotFoundError as exc:
                # The registry forgot the upload.  If that happened on a
                # completion whose first answer was lost, the layer is there.
                if not await self._is_missing(await self._digest_to_complete()):
                    return Outcome.UPLOADED
                restarts += 1
                if restarts >= self.context.retry.max_attempts:
                    raise TransientRegistryError(
                        f"the registry forgot the upload {restarts} times in a row; "
                        f"last: {exc.message}",
                        code=ErrorCode.UPLOAD_NOT_FOUND,
                    ) from exc
                self._note_retry(exc.code, 0.0)
                continue
            return Outcome.UPLOADED

    async def _check_claimed_digest(self) -> None:
        """A claimed digest must be the bytes' own before the upload is completed under it.

        The registry would refuse a mismatch too (InvalidLayerException,
        DIGEST_INVALID), but as a registry error; this names the file and says
        what to do, and the upload is left to expire uncompleted.
        """
        if self.streamed is None:
            return
        if self.streamed.complete:
            actual = self.streamed.digest()
        else:  # the push skipped bytes it never read (a resumed upload): read them all
            actual = await hash_layer(self.layer, self.context.buffers.budget)
        if actual != self.digest:
            claim = self.job.claimed_by
            failure = ImageError if claim is BY_MANIFEST else LayerFileError
            raise failure(
                f"the file's bytes hash to {actual}, not {self.digest} as {claim.says} "
                f"says; {claim.remedy} (the upload was not completed, nothing is tagged)",
                path=self.layer.path,
                repository=self.job.repository,
                code=ErrorCode.DIGEST_MISMATCH,
            )

    async def _start_upload(self) -> UploadSession:
        offered = await self._retrying(
            partial(self.context.registry.start_upload, self.job.repository)
        )
        part_size = choose_part_size(
            self.layer.size,
            requested=self.context.part_size,
            registry_default=offered.part_size,
            limits=self.context.registry.limits,
        )
        session = UploadSession(offered.repository, offered.upload_id, part_size, self.layer.size)
        self.context.observer.upload_started(self.job, session.upload_id, part_size)
        return session

    async def _is_missing(self, digest: str) -> bool:
        # Each layer retries its own check: a failed batch fails every check in it.
        return await self._retrying(
            partial(self.context.availability.is_missing, self.job.repository, digest)
        )

    async def _send_all_parts(self, session: UploadSession, start: int) -> None:
        position = start
        for _ in range(MAX_RESYNCS_PER_UPLOAD):
            position = await self._send_from(session, position)
            if position >= self.layer.size:
                return
        raise TransientRegistryError(
            f"the registry moved the upload position {MAX_RESYNCS_PER_UPLOAD} times; "
            "it is losing parts",
            code=ErrorCode.UPLOAD_POSITION_UNSTABLE,
        )

    async def _send_from(self, session: UploadSession, start: int) -> int:
        """Send parts from byte ``start`` until done or the registry moves us elsewhere.

        Returns the byte the registry wants next: the layer size when done.
        """
        send, receive = anyio.create_memory_object_stream[Part](self.context.read_ahead_parts)
        ranges = part_ranges(self.layer.size, session.part_size, start)
        position = start
        try:
            async with anyio.create_task_group() as reading:
                registry = self.context.registry
                reading.start_soon(
                    partial(
                        read_parts,
                        self.layer,
                        ranges,
                        self.context.buffers,
                        send,
                        encode=partial(registry.encode_part, session),
                        memory_per_byte=registry.memory_per_part_byte,
                        streamed=self.streamed,
                    )
                )
                async for part in receive:
                    try:
                        if part.range.last < position:
                            continue  # the registry already holds this part
                        if part.range.first != position:
                            reading.cancel_scope.cancel()
                            break
                        position = await self._send_part(session, part)
                    finally:
                        part.charge.settle(part.payload.wire)
                        # Drop the buffer now, not when the next part arrives:
                        # the budget already counts it free, and it can be lent
                        # again only once nothing refers to it.
                        del part
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None
        finally:
            await _settle_unsent(receive)
        return position

    async def _send_part(self, session: UploadSession, part: Part) -> int:
        """Send one part, retrying; return the byte the registry wants next."""
        sent_at = time.monotonic()
        try:
            last = await self._retrying(
                partial(self.context.registry.upload_part, session, part.range.first, part.payload)
            )
        except PartOutOfOrderError as exc:
            # A retried request whose first answer was lost: the registry has
            # more (or fewer) bytes than we thought.  Go on from its position.
            self._note_retry(exc.code, 0.0)
            self.context.observer.part_confirmed(self.job, exc.next_byte, 0, 0.0)
            return exc.next_byte
        self.context.observer.part_confirmed(
            self.job, last + 1, part.range.length, time.monotonic() - sent_at
        )
        return last + 1

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        return await self.context.retry.call(operation, self._note_retry)

    def _note_retry(self, reason: str, delay: float) -> None:
        self.retries += 1
        self.context.observer.retrying(self.job, reason, delay)


async def _settle_unsent(receive: MemoryObjectReceiveStream[Part]) -> None:
    """Settle the parts read ahead but never sent (the push moved or failed)."""
    with anyio.CancelScope(shield=True):
        while True:
            try:
                part = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            part.charge.settle()
        await receive.aclose()
