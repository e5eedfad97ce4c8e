"""Availability checks of many layers answered by one ``missing_layers`` call.

ECR's BatchCheckLayerAvailability takes up to 100 digests, and every layer
asks it once before its upload: with many small layers in flight that is a
quarter of all requests, each one a round trip and a signature.  So checks
for the same repository are coalesced: while a check of that repository is
on the wire, the checks that arrive join the next batch, which goes out as
one call the moment the first returns (or at once, when it holds 100
digests).  A lone check waits for nothing: it goes out at the next turn of
the event loop, together with any check that is ready in that same turn.
Where the registry asks about one layer per request (an OCI registry's
``HEAD``; ``coalesce=False``) nothing is coalesced: a check joining a batch
would only wait for the call in flight, a round trip, to share nothing.

A caller that knows which layers come next (the daemon, its queue) may ask
about them ahead (``check_ahead``): one call for up to 100 of them, and each
answer serves that layer's own check once, within ``ANSWER_KEPT_SECONDS``,
so the check makes no request.  An answer kept that long can only be stale
the harmless way: a layer reported missing that arrived since is uploaded
again, and its completion finds it there (``LayerAlreadyExistsException``).

No task runs a batch: the first check of a batch (its leader) makes the call
for all of them, so every call lives in the task of a layer that waits for
it, inside whatever task group owns that layer.  A failed call fails every
check of its batch, each with its own copy of the error, so each layer's
retry policy retries (or gives up) exactly as its own call would have; a
leader cancelled before the answer abandons its batch, and the others ask
again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

MAX_DIGESTS_PER_CHECK = 100
"""BatchCheckLayerAvailability's limit per call (PROTOCOL.md)."""

ANSWER_KEPT_SECONDS = 30.0
"""How long an answer asked ahead waits for its layer's check before it is dropped."""
MAX_ANSWERS_KEPT = 10_000
"""Answers waiting at most: the oldest go first (a layer whose file vanished never asks)."""

MissingLayers = Callable[[str, Sequence[str]], Awaitable[set[str]]]
"""``Registry.missing_layers``: the digests of ``digests`` the repository lacks."""


@dataclass(eq=False, slots=True)
class _Batch:
    digests: dict[str, None] = field(default_factory=dict)
    """Unique, in arrival order: two files of the same bytes share one entry."""
    may_start: anyio.Event = field(default_factory=anyio.Event)
    """Set when the leader need not wait for the call in flight: the batch is full,
    or that call returned."""
    answered: anyio.Event = field(default_factory=anyio.Event)
    """Set when the call returned or failed, or when the leader left without one."""
    missing: set[str] | None = None
    error: Exception | None = None

    @property
    def full(self) -> bool:
        return len(self.digests) >= MAX_DIGESTS_PER_CHECK


@dataclass(eq=False, slots=True)
class _Repository:
    joining: _Batch | None = None
    """The batch later checks join; None once it started (or none was opened)."""
    calls_in_flight: int = 0


class AvailabilityChecks:
    """One engine's availability checks, coalesced per repository (see the module)."""

    def __init__(
        self,
        missing_layers: MissingLayers,
        *,
        coalesce: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._missing_layers = missing_layers
        self._coalesce = coalesce
        self._clock = clock
        self._repositories: dict[str, _Repository] = {}
        self._ahead: dict[tuple[str, str], tuple[bool, float]] = {}
        """(repository, digest) -> (missing, when asked): answers asked ahead, oldest first."""

    async def check_ahead(self, repository: str, digests: Sequence[str]) -> None:
        """Ask about layers about to be pushed, 100 a call; raises what a call raised.

        Each answer is kept for the first check of its layer (see the module).
        """
        unique = list(dict.fromkeys(digests))
        for start in range(0, len(unique), MAX_DIGESTS_PER_CHECK):
            batch = unique[start : start + MAX_DIGESTS_PER_CHECK]
            missing = await self._missing_layers(repository, batch)
            asked = self._clock()
            for digest in batch:
                self._ahead.pop((repository, digest), None)  # re-inserted as the newest
                self._ahead[(repository, digest)] = (digest in missing, asked)
        self._drop_old_answers()

    def _drop_old_answers(self) -> None:
        oldest = self._clock() - ANSWER_KEPT_SECONDS
        while self._ahead:
            key, (_, asked) = next(iter(self._ahead.items()))
            if asked >= oldest and len(self._ahead) <= MAX_ANSWERS_KEPT:
                return
            del self._ahead[key]

    def _answered_ahead(self, repository: str, digest: str) -> bool | None:
        answer = self._ahead.pop((repository, digest), None)
        if answer is None or answer[1] < self._clock() - ANSWER_KEPT_SECONDS:
            return None
        return answer[0]

    async def is_missing(self, repository: str, digest: str) -> bool:
        """Whether ``repository`` lacks the layer ``digest``; raises what the call raised."""
        ahead = self._answered_ahead(repository, digest)
        if ahead is not None:
            return ahead
        if not self._coalesce:
            return digest in await self._missing_layers(repository, [digest])
        while True:
            queue, batch, leading = self._join(repository, digest)
            if leading:
                await self._lead(repository, queue, batch)
            else:
                await batch.answered.wait()
            if batch.error is not None:
                raise _own_copy(batch.error) from batch.error
            if batch.missing is not None:
                return digest in batch.missing
            # Abandoned: its leader was cancelled before the answer came.

    def _join(self, repository: str, digest: str) -> tuple[_Repository, _Batch, bool]:
        """The batch that will answer ``digest`` (and its queue); whether this check leads it."""
        queue = self._repositories.setdefault(repository, _Repository())
        batch, leading = queue.joining, False
        if batch is None:
            batch, leading = _Batch(), True
            queue.joining = batch
        batch.digests[digest] = None
        if batch.full:
            queue.joining = None  # the next check opens the next batch
            batch.may_start.set()
        return queue, batch, leading

    async def _lead(self, repository: str, queue: _Repository, batch: _Batch) -> None:
        """Make the call for ``batch``, once its turn came; its checks are told the answer."""
        try:
            # The checks that are ready in this same turn of the loop join first.
            await anyio.lowlevel.checkpoint()
            if queue.calls_in_flight and not batch.full:
                await batch.may_start.wait()
            if queue.joining is batch:
                queue.joining = None
            queue.calls_in_flight += 1
            try:
                batch.missing = await self._missing_layers(repository, list(batch.digests))
            except Exception as exc:  # cancellation is not an answer: abandon instead
                batch.error = exc
            finally:
                queue.calls_in_flight -= 1
                if queue.calls_in_flight == 0 and queue.joining is not None:
                    queue.joining.may_start.set()
        finally:
            if queue.joining is batch:
                queue.joining = None  # left before starting: nobody would lead it
            idle = not queue.calls_in_flight and queue.joining is None
            if idle and self._repositories.get(repository) is queue:
                del self._repositories[repository]
            batch.answered.set()


def _own_copy(error: Exception) -> Exception:
    """``error`` for one check: the engine adds the layer's file to the error it fails with."""
    clone = type(error).__new__(type(error), *error.args)
    clone.__dict__.update(error.__dict__)
    return clone
