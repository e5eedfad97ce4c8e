"""Schedules layer pushes: up to ``concurrency`` layers in flight at once.

Parallelism comes from layers, never from parts of one layer (ECR accepts a
layer's parts only in order), and every layer in flight draws its read-ahead
from one ``ByteBudget``, so memory is bounded by the budget, not by the
number or size of the layers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import anyio
from anyio.abc import ObjectReceiveStream

from uploaderd.engine.buffers import PartBuffers
from uploaderd.engine.digests import StreamDigest
from uploaderd.engine.layerpush import LayerPush, PushContext
from uploaderd.engine.observer import EngineObserver, SilentObserver
from uploaderd.engine.parts import MAX_PART_SIZE
from uploaderd.engine.reader import LayerFile, hash_layer
from uploaderd.engine.retry import RetryPolicy
from uploaderd.errors import UploaderError
from uploaderd.model import LayerJob, LayerResult, Outcome
from uploaderd.registry.base import Registry


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Knobs of the engine; ``part_size`` None means 'what the registry says'.

    No defaults here: ``uploaderd.settings`` declares them, once, for every program.
    """

    concurrency: int
    memory_budget: int
    part_size: int | None
    retry: RetryPolicy
    overlap_threshold: int
    """A loose layer at least this big is hashed beside its upload (see ``alongside``)."""
    read_ahead_parts: int = 1
    """Parts read ahead of the one on the wire, per layer: an engine constant, not a setting."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.memory_budget < MAX_PART_SIZE:
            raise ValueError(
                f"memory budget must hold at least one maximal part ({MAX_PART_SIZE} bytes), "
                f"got {self.memory_budget}"
            )
        if self.read_ahead_parts < 0:
            raise ValueError(f"read-ahead must not be negative, got {self.read_ahead_parts}")


class UploadEngine:
    """Pushes layers through a ``Registry`` within one shared byte budget."""

    def __init__(
        self,
        registry: Registry,
        settings: EngineSettings,
        observer: EngineObserver | None = None,
    ) -> None:
        self.settings = settings
        self.buffers = PartBuffers(settings.memory_budget)
        self.budget = self.buffers.budget
        self.observer: EngineObserver = observer or SilentObserver()
        self.context = PushContext(
            registry=registry,
            buffers=self.buffers,
            observer=self.observer,
            retry=settings.retry,
            part_size=settings.part_size,
            read_ahead_parts=settings.read_ahead_parts,
        )

    def retune(self, *, part_size: int | None, retry: RetryPolicy) -> None:
        """New part size and retry policy for the layers that start from now on (SIGHUP).

        A layer already in flight keeps what it started with: its parts are
        cut and its attempts counted under one set of rules.
        """
        self.settings = replace(self.settings, part_size=part_size, retry=retry)
        self.context = replace(self.context, part_size=part_size, retry=retry)

    async def push_all(self, jobs: Iterable[LayerJob]) -> list[LayerResult]:
        """Push every job, ``concurrency`` at a time; results in the jobs' order."""
        ordered = list(jobs)
        results: dict[int, LayerResult] = {}
        send, receive = anyio.create_memory_object_stream[tuple[int, LayerJob]](len(ordered))
        async with send:
            for item in enumerate(ordered):
                send.send_nowait(item)

        async def worker(queue: ObjectReceiveStream[tuple[int, LayerJob]]) -> None:
            async with queue:
                async for index, job in queue:
                    results[index] = await self.push_layer(job)

        async with receive, anyio.create_task_group() as workers:
            for _ in range(min(self.settings.concurrency, len(ordered))):
                workers.start_soon(worker, receive.clone())
        return [results[index] for index in range(len(ordered))]

    async def push_layer(self, job: LayerJob) -> LayerResult:
        """Push one layer; a failure is returned as a result, never raised."""
        started = time.monotonic()
        size, digest, push = 0, None, None
        self.observer.layer_started(job)
        try:
            layer = LayerFile.open(job.path)
            size = layer.size
            streamed = None
            if job.known_digest is not None and job.known_identity == layer.identity:
                digest = job.known_digest  # hashed by an earlier run; the file is unchanged
            elif job.claimed_digest is not None:
                digest, streamed = job.claimed_digest, StreamDigest(layer.size)
            elif layer.size >= self.settings.overlap_threshold:
                digest = None  # hashed beside the upload; an upload of this very file resumes
                if job.known_identity != layer.identity:
                    job = replace(job, known_digest=None, resume=None)
            else:
                digest = await hash_layer(layer, self.budget)
                job = replace(job, known_digest=None, resume=None)  # never mix old and new
            if digest is not None:
                self.observer.layer_hashed(job, digest, size)
            push = LayerPush(self.context, job, layer, digest, streamed)
            outcome, error = await push.run(), None
            digest = push.digest
        except UploaderError as exc:
            exc.path = exc.path or job.path
            exc.repository = exc.repository or job.repository
            outcome, error = Outcome.FAILED, exc
        retries = push.retries if push is not None else 0
        result = LayerResult(
            job, outcome, size, digest, time.monotonic() - started, retries + 1, error
        )
        self.observer.layer_finished(result)
        return result


def all_succeeded(results: Sequence[LayerResult]) -> bool:
    """True when every layer is now in the registry (uploaded or already there)."""
    return all(result.outcome is not Outcome.FAILED for result in results)
