"""What you need to test your own code against uploaderd, as ``structlog.testing`` does.

Two registries, for two kinds of test:

* :class:`MemoryRegistry` implements the engine's ``Registry`` protocol in memory.
  Give it to an ``UploadEngine`` to test code that drives the engine (ordering,
  retries, resume, memory) with exact control over faults and no server at all.
* :func:`running_local_registry` runs the embedded ECR-compatible server on a free
  loopback port for a block.  Point ``uploaderd push``, ``uploaderd run`` or your
  own boto client at its ``url`` to test a whole set-up over the real wire protocol;
  :func:`ecr_client` opens an aiobotocore client on it to look at what arrived.

uploaderd's own tests and ``uploaderd demo`` use these same ones.  Beside the demo
and ``uploaderd local-registry``, this is the only module of the product that
imports ``uploaderd.localregistry``, and nothing but the demo imports this one:
the registry stays a fair judge of the client.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from uploaderd.errors import (
    PartOutOfOrderError,
    RegistryError,
    TransientRegistryError,
    UploadNotFoundError,
)
from uploaderd.localregistry import LocalRegistry, LocalRegistryConfig
from uploaderd.registry.base import (
    Allocate,
    ClientRetries,
    PartPayload,
    PartSource,
    UploadSession,
    new_buffer,
)
from uploaderd.registry.limits import ECR_LIMITS, RegistryLimits
from uploaderd.sizes import MIB

if TYPE_CHECKING:
    from aiobotocore.client import AioBaseClient
    from types_aiobotocore_ecr import ECRClient

__all__ = ["MemoryRegistry", "ecr_client", "free_port", "running_local_registry"]


@dataclass
class MemoryRegistry:
    """A ``Registry`` in memory that enforces ECR's rule partFirstByte == bytes received.

    The knobs inject the faults a real registry has, each at an exact point, so a
    test can show its code survives them:

    * ``throttle_next``: that many ``start_upload`` calls are throttled first.
    * ``lose_answer_of_parts``: these parts (numbered from 1 across the registry)
      are applied, then the answer is lost as a reset connection.
    * ``silently_drop_parts``: these parts are acknowledged, then thrown away, so
      the next part is out of order and the client must follow the registry back.
    * ``forget_upload_after_parts``: after that many parts the upload is forgotten
      (expired), so the layer must start over.

    The counters say what the client did: ``parts_sent``, ``uploads_started``,
    ``completed`` (digests, in order), ``max_same_upload_overlap`` (more than 1
    means two parts of one upload were in flight at once, which ECR refuses) and
    ``max_uploads_in_flight`` (how many layers were uploading in parallel);
    ``availability_checks`` holds each ``missing_layers`` call's repository and digests.
    Finished layers are in ``layers`` by digest, published manifests in
    ``manifests`` by repository and digest, and by repository and tag.
    """

    part_size: int = 5 * MIB
    layers: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)
    parts_sent: int = 0
    uploads_started: int = 0
    in_flight: dict[str, int] = field(default_factory=dict)
    max_same_upload_overlap: int = 0
    max_uploads_in_flight: int = 0
    throttle_next: int = 0
    lose_answer_of_parts: set[int] = field(default_factory=set)
    forget_upload_after_parts: int | None = None
    silently_drop_parts: set[int] = field(default_factory=set)
    completed: list[str] = field(default_factory=list)
    availability_checks: list[tuple[str, list[str]]] = field(default_factory=list)
    limits: RegistryLimits = ECR_LIMITS
    """ECR's by default; give ``ECR_PUBLIC_LIMITS`` to test a push to ECR Public."""
    client_retries: ClientRetries = field(default_factory=ClientRetries)
    """Told nothing: the memory registry's faults all reach the engine."""

    memory_per_part_byte = 1.0

    def encode_part(
        self, session: UploadSession, source: PartSource, allocate: Allocate = new_buffer
    ) -> PartPayload:
        data = allocate(source.length)  # the engine's recycled buffers, as real backends use
        source.read_into(data)
        return PartPayload(len(data), data)

    async def ping(self) -> None:
        pass

    async def missing_layers(self, repository: str, digests: Sequence[str]) -> set[str]:
        self.availability_checks.append((repository, list(digests)))
        return {d for d in digests if d not in self.layers}

    async def start_upload(self, repository: str) -> UploadSession:
        if self.throttle_next:
            self.throttle_next -= 1
            raise TransientRegistryError("slow down", code="ThrottlingException")
        self.uploads_started += 1
        upload_id = f"upload-{self.uploads_started}"
        self.uploads[upload_id] = bytearray()
        return UploadSession(repository, upload_id, self.part_size)

    async def upload_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        data = part.wire
        uid = session.upload_id
        self.in_flight[uid] = self.in_flight.get(uid, 0) + 1
        self.max_same_upload_overlap = max(self.max_same_upload_overlap, self.in_flight[uid])
        busy = sum(1 for n in self.in_flight.values() if n)
        self.max_uploads_in_flight = max(self.max_uploads_in_flight, busy)
        try:
            # A pause, so that parts sent concurrently really overlap and the counters see it.
            await anyio.sleep(0.005)
            if uid not in self.uploads:
                raise UploadNotFoundError("gone", code="UploadNotFoundException")
            received = self.uploads[uid]
            if first_byte != len(received):
                raise PartOutOfOrderError("out of order", next_byte=len(received))
            received.extend(data)
            self.parts_sent += 1
            if self.parts_sent in self.silently_drop_parts:
                del received[first_byte:]  # acknowledged, then lost: the client must go back
                return first_byte + len(data) - 1
            if self.parts_sent in self.lose_answer_of_parts:
                raise TransientRegistryError("connection reset", code="ConnectionClosedError")
            if self.forget_upload_after_parts == self.parts_sent:
                del self.uploads[uid]
            return len(received) - 1
        finally:
            self.in_flight[uid] -= 1

    async def complete_upload(self, session: UploadSession, digest: str) -> None:
        if session.upload_id not in self.uploads:
            raise UploadNotFoundError("gone", code="UploadNotFoundException")
        data = bytes(self.uploads.pop(session.upload_id))
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RegistryError("digest mismatch", code="InvalidLayerException")
        self.layers[digest] = data
        self.completed.append(digest)

    async def put_manifest(
        self, repository: str, manifest: bytes, media_type: str, tag: str | None = None
    ) -> None:
        """Records the manifest by digest and by tag; it does not check what it references."""
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.manifests[(repository, digest)] = manifest
        if tag is not None:
            self.manifests[(repository, tag)] = manifest


@asynccontextmanager
async def running_local_registry(storage: Path, **options: Any) -> AsyncIterator[LocalRegistry]:
    """The ECR-compatible local registry on a free loopback port, for the block.

    ``storage`` is where it keeps layers (a later registry on the same directory
    finds them again); ``options`` are the other fields of ``LocalRegistryConfig``,
    such as ``auto_create_repositories=True``, ``faults=("throttle-every=3",)``,
    ``registry_ids=("111122223333",)`` or ``public=True`` (ECR Public's protocol; talk to
    it with ``ecr_client(url, service="ecr-public")``).  ``registry.request_log`` counts
    each operation's calls by the registryId they carried.
    The registry binds port 0 itself, so no other process can take its port first.
    """
    config = LocalRegistryConfig(storage=storage, **options)
    async with LocalRegistry(config) as registry:
        yield registry


@overload
def ecr_client(
    endpoint_url: str, config: AioConfig | None = None, *, service: Literal["ecr"] = "ecr"
) -> AbstractAsyncContextManager[ECRClient]: ...


@overload
def ecr_client(
    endpoint_url: str, config: AioConfig | None = None, *, service: Literal["ecr-public"]
) -> AbstractAsyncContextManager[AioBaseClient]: ...


def ecr_client(
    endpoint_url: str, config: AioConfig | None = None, *, service: str = "ecr"
) -> AbstractAsyncContextManager[Any]:
    """An aiobotocore ECR client for the local registry at ``endpoint_url``.

    ``service="ecr-public"`` gives an ECR Public client (signing name ecr-public,
    region us-east-1, ``SpencerFrontendService.`` targets), for a registry run with
    ``public=True``.  The local registry checks no secret, so the credentials are fixed
    ones: a test never needs, and never picks up, real AWS credentials for it.
    """
    return _aws_client(service, endpoint_url, config)


@asynccontextmanager
async def _aws_client(
    service: str, endpoint_url: str, config: AioConfig | None
) -> AsyncIterator[Any]:
    async with get_session().create_client(  # type: ignore[call-overload]
        service,
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106  # the local registry checks no secret
        config=config,
    ) as client:
        yield client


def free_port() -> int:
    """A loopback port nothing listens on right now, for a child process to be told.

    Another process may take it before the child binds it; where a server can bind
    port 0 and report its port (the local registry does), let it do that instead.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
