"""Schedules layer pushes: as many layers in flight as the ``LayerLimit`` allows.

Parallelism comes from layers, never from parts of one layer (ECR accepts a
layer's parts only in order), and every layer in flight draws its read-ahead
from one ``ByteBudget``, so memory is bounded by the budget, not by the
number or size of the layers.  The limit is fixed (``concurrency = N``) or
adapted by AIMD to the throughput and the registry's congestion signals
(``concurrency = "auto"``, see ``limiter``); every layer start passes it,
whether it comes from ``push_all`` or from a caller holding ``limit.slot()``
(the daemon's workers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import anyio

from uploaderd.engine.availability import AvailabilityChecks
from uploaderd.engine.budgetcap import BudgetCap
from uploaderd.engine.buffers import PartBuffers
from uploaderd.engine.digests import StreamDigest
from uploaderd.engine.layerpush import LayerPush, PushContext
from uploaderd.engine.limiter import DEFAULT_MAX_CONCURRENCY, MAX_CONCURRENCY, AimdLimit, LayerLimit
from uploaderd.engine.observer import EngineObserver, SilentObserver
from uploaderd.engine.parts import MAX_PART_SIZE
from uploaderd.engine.reader import LayerFile, hash_layer
from uploaderd.engine.retry import RetryPolicy
from uploaderd.errors import UploaderError
from uploaderd.model import LayerJob, LayerResult, Outcome
from uploaderd.registry.base import Registry
from uploaderd.sizes import MIB

EXPECTED_PART_SIZE = 10 * MIB
"""The part size the budget cap assumes until an upload shows the real one: ECR's
``partSize`` in practice (see PROTOCOL.md) and the OCI backend's chunk."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Knobs of the engine; ``part_size`` None means 'what the registry says'.

    No defaults here: ``uploaderd.settings`` declares them, once, for every program.
    """

    concurrency: int | None
    """Layers in flight; None: adapted between 1 and ``max_concurrency`` (AIMD)."""
    memory_budget: int
    part_size: int | None
    retry: RetryPolicy
    overlap_threshold: int
    """A loose layer at least this big is hashed beside its upload (see ``alongside``)."""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """The adaptive limit's ceiling; unused when ``concurrency`` is a number."""
    read_ahead_parts: int = 1
    """Parts read ahead of the one on the wire, per layer: an engine constant, not a setting."""

    def __post_init__(self) -> None:
        for name in ("concurrency", "max_concurrency"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= MAX_CONCURRENCY:
                raise ValueError(f"{name} must be from 1 to {MAX_CONCURRENCY}, got {value}")
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
        self.registry = registry
        self._budget_cap = BudgetCap(
            settings.memory_budget,
            registry.memory_per_part_byte,
            # the part on the wire, those read ahead, and one being read and encoded
            # the part on the wire and those read ahead: the next is read while
            # the queued one is sent, so it waits for budget without stalling
            parts_per_layer=settings.read_ahead_parts + 1,
            # until a layer's upload shows the part size, expect the usual one
            expected_part=min(settings.part_size or EXPECTED_PART_SIZE, MAX_PART_SIZE),
        )
        self.limit = self._layer_limit()
        # An attempt botocore retries on its own is congestion the engine never sees fail;
        # heard as its answer arrives, not after botocore's backoff.
        registry.client_retries.listen_refusals(self.limit.congested)
        self.availability = AvailabilityChecks(
            registry.missing_layers, coalesce=registry.limits.digests_per_check > 1
        )
        self.context = PushContext(
            registry=registry,
            buffers=self.buffers,
            observer=_FeedsLimit(self.observer, self.limit, self._learned_part_size),
            retry=settings.retry,
            part_size=settings.part_size,
            read_ahead_parts=settings.read_ahead_parts,
            availability=self.availability,
        )

    def _layer_limit(self) -> LayerLimit:
        settings = self.settings
        if settings.concurrency is not None:
            return LayerLimit.fixed(settings.concurrency)
        aimd = AimdLimit(ceiling=settings.max_concurrency, budget_cap=self._budget_cap.layers)
        return LayerLimit.adaptive(aimd)

    def _layer_starting(self, size: int) -> None:
        """The budget cap follows the parts of the layers started lately (see ``BudgetCap``)."""
        self._budget_cap.layer_started(size)
        self._recap()

    def _learned_part_size(self, part_size: int) -> None:
        """A layer's upload got ``part_size``: the budget cap follows the largest seen."""
        self._budget_cap.part_size_offered(part_size)
        self._recap()

    def _recap(self) -> None:
        cap = self._budget_cap.layers
        if self.limit.aimd is not None and cap != self.limit.aimd.budget_cap:
            self.limit.cap_by_budget(cap)

    def retune(self, *, part_size: int | None, retry: RetryPolicy) -> None:
        """New part size and retry policy for the layers that start from now on (SIGHUP).

        A layer already in flight keeps what it started with: its parts are
        cut and its attempts counted under one set of rules.
        """
        self.settings = replace(self.settings, part_size=part_size, retry=retry)
        self.context = replace(self.context, part_size=part_size, retry=retry)

    async def push_all(self, jobs: Iterable[LayerJob]) -> list[LayerResult]:
        """Push every job, as many at a time as the limit allows; results in the jobs' order.

        One worker per slot the limit could ever grant; each takes the next job
        only once it holds a slot, so the jobs start in order as slots free up.
        """
        ordered = list(jobs)
        results: dict[int, LayerResult] = {}
        pending = iter(enumerate(ordered))

        async def worker() -> None:
            while True:
                async with self.limit.slot():
                    item = next(pending, None)
                    if item is None:
                        return
                    index, job = item
                    results[index] = await self.push_layer(job)

        async with anyio.create_task_group() as workers:
            for _ in range(min(self.limit.ceiling, len(ordered))):
                workers.start_soon(worker)
        return [results[index] for index in range(len(ordered))]

    async def push_layer(self, job: LayerJob) -> LayerResult:
        """Push one layer; a failure is returned as a result, never raised.

        The caller holds a ``limit.slot()`` for it (``push_all`` does).
        """
        started = time.monotonic()
        size, digest, push = 0, None, None
        self.observer.layer_started(job)
        try:
            layer = LayerFile.open(job.path, self.context.registry.limits)
            size = layer.size
            self._layer_starting(size)
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


class _FeedsLimit:
    """The engine's observer, with the events the layer limit adapts to fed to it on the way."""

    def __init__(
        self, observer: EngineObserver, limit: LayerLimit, part_size: Callable[[int], None]
    ) -> None:
        self._observer = observer
        self._limit = limit
        self._part_size = part_size

    def layer_started(self, job: LayerJob) -> None:
        self._observer.layer_started(job)

    def layer_hashed(self, job: LayerJob, digest: str, size: int) -> None:
        self._observer.layer_hashed(job, digest, size)

    def upload_started(self, job: LayerJob, upload_id: str, part_size: int) -> None:
        self._part_size(part_size)
        self._observer.upload_started(job, upload_id, part_size)

    def part_confirmed(self, job: LayerJob, next_byte: int, nbytes: int, seconds: float) -> None:
        self._limit.part_confirmed(nbytes)
        self._observer.part_confirmed(job, next_byte, nbytes, seconds)

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None:
        # The engine reports a retry only after a transient failure (the
        # retry policy retries nothing else) or a resync after a lost answer.
        self._limit.congested()
        self._observer.retrying(job, reason, delay)

    def layer_finished(self, result: LayerResult) -> None:
        self._observer.layer_finished(result)


def all_succeeded(results: Sequence[LayerResult]) -> bool:
    """True when every layer is now in the registry (uploaded or already there)."""
    return all(result.outcome is not Outcome.FAILED for result in results)
