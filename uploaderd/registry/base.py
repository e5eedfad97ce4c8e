"""What the engine needs from a registry, and nothing more.

The interface follows ECR's layer-push API because it is the strictest of the
protocols we speak: one upload per layer, parts strictly in order, completion
with the digest.  Backends translate their own failures into the
``uploaderd.errors`` hierarchy so the engine can decide on retries by kind,
not by backend-specific names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from uploaderd.registry.limits import RegistryLimits

Allocate = Callable[[int], memoryview]
"""Gives a writable view of the asked number of bytes, for a part's body."""


class ClientRetries:
    """Retries a registry's own client made and hid, told to whoever adapts to them.

    botocore retries a throttled or failed call by itself (the AWS chain's
    retry mode and attempts; adaptive by default here) and returns the answer
    as if nothing had happened.  The engine's layer limit must still hear of
    each such retry, or it keeps as many layers in flight while the client's
    own rate limiter slows every one of them down; and an operator must see
    them counted.  A backend whose client retries nothing (OCI: every 429 or
    5xx reaches the engine) calls neither method.

    Two moments, for two listeners:

    * ``attempt_refused``, as a refused attempt's answer arrives, before the
      client sleeps its backoff: the limit's signal.  The final answer comes a
      backoff or more later (1.4 s after the first throttle in a traced push),
      and a limit that hears only then has grown meanwhile on a rate the
      throttles were already holding down.
    * ``retried(n)``, with the final answer, which says exactly how many retries
      it took (including a final refusal's): the metric's count, exact where
      ``attempt_refused`` may also hear the last refusal the engine then sees.
    """

    __slots__ = ("_listeners", "_refusal_listeners")

    def __init__(self) -> None:
        self._listeners: list[Callable[[int], None]] = []
        self._refusal_listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(retries)`` for every answer that took retries to get."""
        self._listeners.append(listener)

    def listen_refusals(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` for every attempt refused as the client would retry it."""
        self._refusal_listeners.append(listener)

    def retried(self, retries: int) -> None:
        for listener in self._listeners:
            listener(retries)

    def attempt_refused(self) -> None:
        for listener in self._refusal_listeners:
            listener()


def new_buffer(nbytes: int) -> memoryview:
    """A writable view of ``nbytes`` fresh bytes: encoders' default allocator."""
    return memoryview(bytearray(nbytes))


@dataclass(frozen=True, slots=True)
class UploadSession:
    """An upload the registry has opened for one layer.

    ``part_size`` is the registry's offer as ``start_upload`` returns it; the
    engine replaces it with the size it chose under ECR's rules, and adds
    ``layer_size``, so a backend that sends several parts in one request
    (OCI chunks) knows where the layer ends.
    """

    repository: str
    upload_id: str
    part_size: int
    layer_size: int | None = None


class PartSource(Protocol):
    """Where a part's bytes come from, read on demand by ``Registry.encode_part``.

    The encoder pulls the bytes itself so it can stream them through small
    reused buffers into its wire format, instead of first holding a raw copy
    of the whole part beside the encoded one.
    """

    @property
    def first_byte(self) -> int:
        """The offset of the part's first byte in the layer."""
        ...

    @property
    def length(self) -> int:
        """The part's size in bytes."""
        ...

    def read_into(self, buffer: memoryview, offset: int = 0) -> None:
        """Fill ``buffer`` with the part's bytes starting ``offset`` bytes into the part."""
        ...

    def chunks(self, chunk_size: int) -> Iterator[memoryview]:
        """The part in order, ``chunk_size`` bytes at a time (the last may be shorter).

        Each view is valid only until the next one is produced: the buffer is reused.
        """
        ...


@dataclass(frozen=True, slots=True)
class PartBytes:
    """A ``PartSource`` over bytes already in memory (tests, small blobs)."""

    data: bytes | bytearray
    first_byte: int = 0

    @property
    def length(self) -> int:
        return len(self.data)

    def read_into(self, buffer: memoryview, offset: int = 0) -> None:
        buffer[:] = memoryview(self.data)[offset : offset + len(buffer)]

    def chunks(self, chunk_size: int) -> Iterator[memoryview]:
        view = memoryview(self.data)
        for start in range(0, len(view), chunk_size):
            yield view[start : start + chunk_size]


@dataclass(slots=True)
class PartPayload:
    """A part's bytes as the registry's protocol carries them.

    Prepared in a worker thread by ``Registry.encode_part`` so the event loop
    only moves bytes it already has.  Backends whose protocol needs more than
    the bytes (ECR: the body's running hash for SigV4) subclass it.
    """

    length: int
    wire: bytes | bytearray | memoryview


class Registry(Protocol):
    """A place layers can be pushed to."""

    memory_per_part_byte: float
    """Bytes held in memory for each byte of a part in flight (encodings, request body)."""

    limits: RegistryLimits
    """Parts per layer, bytes per layer and per part this registry accepts: the engine
    cuts parts to fit and refuses a layer too big before sending anything."""

    client_retries: ClientRetries
    """The retries its client made on its own, for the layer limit and the metrics."""

    def encode_part(
        self, session: UploadSession, source: PartSource, allocate: Allocate = new_buffer
    ) -> PartPayload:
        """Read a part from ``source`` into what ``upload_part`` sends for ``session``.

        Runs in a worker thread, so it may do the per-byte work (encoding,
        hashing, building the request body) that would otherwise stall the loop.
        The body's buffer comes from ``allocate`` (the engine recycles them).
        """
        ...

    async def ping(self) -> None:
        """Raise ``TransientRegistryError`` unless the registry answers at all.

        Any answer counts, a refusal included: readiness is about reaching
        the registry, permissions show up on the layers themselves.
        """
        ...

    async def missing_layers(self, repository: str, digests: Sequence[str]) -> set[str]:
        """The subset of ``digests`` the repository does not have yet."""
        ...

    async def start_upload(self, repository: str) -> UploadSession:
        """Open an upload for one new layer."""
        ...

    async def upload_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        """Send bytes ``first_byte``.. of the layer; return the last byte the registry holds.

        Raises ``PartOutOfOrderError`` carrying the registry's next byte when
        it holds a different count (a retried part that had already arrived).
        """
        ...

    async def complete_upload(self, session: UploadSession, digest: str) -> None:
        """Finish the upload; a layer the registry already has counts as finished."""
        ...

    async def put_manifest(
        self, repository: str, manifest: bytes, media_type: str, tag: str | None = None
    ) -> None:
        """Publish a manifest (an image, an index or an artifact) by its digest, and under ``tag``.

        ``manifest`` is sent byte for byte, so its digest at the registry is
        the one its parent index names.  Called only after everything the
        manifest references was confirmed present (blobs, child manifests, a
        referrer's subject), so a tag never points at an image someone cannot
        pull.  Publishing the same manifest again counts as success.
        """
        ...
