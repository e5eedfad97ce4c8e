"""Any OCI Distribution registry (distribution, Harbor, Quay, GHCR, ...) over aiohttp.

Blobs go up by the distribution spec's chunked upload, which fits the
engine's model exactly: ``POST`` opens an upload, each part is a ``PATCH``
with ``Content-Range`` sent strictly in order, and ``PUT ?digest=`` closes
it.  Every answer carries a new ``Location`` that must be used for the next
request (distribution signs the upload's offset into it), so the latest one
is kept per upload here; the engine only ever sees the first, as the upload id.

When a ``PATCH`` is refused with 416 or its connection drops, the registry
is asked where the upload stands (``GET`` on the upload, ``Range: 0-<last>``)
and the engine goes on from there, as it does after ECR's
InvalidLayerPartException.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import anyio
from anyio.abc import TaskGroup
from yarl import URL

from uploaderd.errors import (
    ConfigurationError,
    ErrorCode,
    PartOutOfOrderError,
    RegistryError,
    TransientRegistryError,
    UploadNotFoundError,
)
from uploaderd.registry.base import Allocate, PartPayload, PartSource, UploadSession, new_buffer
from uploaderd.registry.limits import OCI_LIMITS, RegistryLimits
from uploaderd.registry.ociauth import Authenticator, Credentials, credentials_for
from uploaderd.registry.ocichunks import CHUNK_BYTES, ChunkFailedError, OpenChunk
from uploaderd.registry.ocireferrers import (
    OCI_INDEX,
    SUBJECT_HEADER,
    Referrer,
    referrer_of,
    with_referrer,
)
from uploaderd.registry.ocitransport import (
    Answer,
    ConnectionLostError,
    OciTransport,
    raise_refusal,
    range_end,
)
from uploaderd.sizes import MIB

DEFAULT_PART_SIZE = 10 * MIB


@dataclass(frozen=True, slots=True)
class OciSettings:
    """How to reach one OCI registry."""

    url: str
    insecure: bool = False
    username: str | None = None
    docker_config: Path | None = None
    max_connections: int = 10
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    part_size: int = DEFAULT_PART_SIZE


def registry_base_url(text: str, *, insecure: bool) -> URL:
    """``host[:port]`` or ``http(s)://host[:port]`` -> the registry's base URL.

    Plain http sends credentials and layers in clear, so it needs
    ``--insecure-registry``, as docker's ``insecure-registries`` does.
    """
    url = URL(text if "://" in text else f"https://{text}")
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"--registry {text!r} is not a registry address; give https://host[:port]",
            code=ErrorCode.INVALID_REGISTRY_URL,
        )
    if url.scheme == "http" and not insecure:
        raise ConfigurationError(
            f"--registry {text!r} is plain http; pass --insecure-registry to allow it",
            code=ErrorCode.INSECURE_REGISTRY,
        )
    return url.with_path("/").with_query(None)


@dataclass(slots=True)
class OciRegistry:
    """The ``Registry`` interface over one OCI registry: the blob-upload protocol's steps."""

    transport: OciTransport
    base: URL
    part_size: int = DEFAULT_PART_SIZE
    memory_per_part_byte: float = 1.2
    """The raw part is the request body; aiohttp sends it without copying."""
    limits: RegistryLimits = OCI_LIMITS
    chunk_bytes: int = CHUNK_BYTES
    """Bytes per PATCH when a layer's parts go in chunks (see ``ocichunks``)."""
    tasks: TaskGroup | None = None
    """Where a chunk's request runs while the engine feeds it (``ocichunks``); None:
    one request per part."""
    _locations: dict[str, URL] = field(default_factory=dict)
    _known_in: dict[str, str] = field(default_factory=dict)
    _chunks: dict[str, OpenChunk] = field(default_factory=dict)
    _synced: dict[str, int] = field(default_factory=dict)
    """upload id -> the byte the registry is known to expect next (it answered so)."""
    """digest -> a repository of this registry that has it, for cross-repository mounts."""

    @property
    def name(self) -> str:
        return str(self.base.authority)

    def encode_part(
        self, session: UploadSession, source: PartSource, allocate: Allocate = new_buffer
    ) -> PartPayload:
        data = allocate(source.length)
        source.read_into(data)
        return PartPayload(len(data), data)

    async def ping(self) -> None:
        await self.transport.exchange("GET", self.base / "v2/", {}, None)

    async def missing_layers(self, repository: str, digests: Sequence[str]) -> set[str]:
        """The digests the repository lacks, after mounting those another repository has.

        A blob pushed to another repository of this registry in this process
        is mounted instead of sent again: the registry links it without a byte
        crossing the network, and the layer is then present.
        """
        missing: set[str] = set()
        for digest in digests:
            url = self._repo_url(repository, f"blobs/{digest}")
            answer = await self.transport.send("HEAD", url, repository)
            if answer.status == 200:
                self._known_in.setdefault(digest, repository)
            elif answer.status == 404:
                if not await self._mount(repository, digest):
                    missing.add(digest)
            else:
                raise_refusal(answer, self.name, repository, "checking a blob")
        return missing

    async def _mount(self, repository: str, digest: str) -> bool:
        source = self._known_in.get(digest)
        if source is None or source == repository:
            return False
        url = self._repo_url(repository, "blobs/uploads/").with_query(
            mount=digest, **{"from": source}
        )
        answer = await self.transport.send("POST", url, repository, also_pull=source)
        if answer.status == 201:
            return True
        if answer.status == 202:  # mount refused, an ordinary upload was opened instead
            await self.transport.send("DELETE", self._location(answer, url), repository)
            return False
        return raise_refusal(answer, self.name, repository, "mounting a blob")

    async def start_upload(self, repository: str) -> UploadSession:
        url = self._repo_url(repository, "blobs/uploads/")
        answer = await self.transport.send("POST", url, repository, headers={"Content-Length": "0"})
        if answer.status != 202:
            raise_refusal(answer, self.name, repository, "opening an upload")
        location = self._location(answer, url)
        self._locations[str(location)] = location
        self._synced[str(location)] = 0
        return UploadSession(repository, str(location), self.part_size)

    async def upload_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        if session.layer_size is None or self.tasks is None:
            return await self._patch_part(session, first_byte, part)
        return await self._patch_in_chunk(session, first_byte, part, self.tasks)

    async def _patch_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        """One PATCH for one part: where the layer's end is not known."""
        location = self._locations.get(session.upload_id, URL(session.upload_id))
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
        if answer.status != 202:
            raise_refusal(answer, self.name, session.repository, "sending a part", upload=True)
        self._locations[session.upload_id] = self._location(answer, location)
        held = range_end(answer.headers.get("Range"))
        if held is not None and held != last_byte:
            # A registry that ignores Content-Range (distribution 2.x) appends a
            # resent part instead of answering 416: the upload now holds bytes
            # in the wrong place, and only a new upload can fix that.
            raise UploadNotFoundError(
                f"registry {self.name} holds bytes 0-{held} after a part ending at {last_byte}; "
                "starting the layer's upload again",
                repository=session.repository,
                code=ErrorCode.UPLOAD_DIVERGED,
            )
        return last_byte

    async def _patch_in_chunk(
        self, session: UploadSession, first_byte: int, part: PartPayload, tasks: TaskGroup
    ) -> int:
        """Feed the part to its chunk's PATCH; wait for the answer only at the chunk's end."""
        upload_id = session.upload_id
        chunk = self._chunks.get(upload_id)
        if chunk is not None and chunk.next_byte != first_byte:
            self._drop_chunk(upload_id)  # the engine moved: that chunk's answer is not wanted
            chunk = None
        location = self._locations.get(upload_id, URL(upload_id))
        if chunk is None:
            if self._synced.get(upload_id) != first_byte:
                await self._resynchronise(session, location, first_byte)
                location = self._locations.get(upload_id, location)
            chunk = self._open_chunk(session, location, first_byte, tasks)
        try:
            await chunk.feed(part.wire)
            if not chunk.complete:
                return first_byte + part.length - 1  # confirmed for now: see ocichunks
            answer = await chunk.wait_answer()
        except ChunkFailedError as exc:
            self._drop_chunk(upload_id)
            if isinstance(chunk.answer, Answer):
                self._check_chunk_answer(session, location, chunk, chunk.answer)
            await self._resynchronise(session, location, first_byte)
            raise ConnectionLostError(
                f"registry {self.name}: {exc}",
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
        parts = max(1, self.chunk_bytes // session.part_size)
        last = min(first_byte + parts * session.part_size, session.layer_size) - 1
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
        """What the registry said to a whole chunk; the last byte it now holds."""
        self._synced.pop(session.upload_id, None)
        if answer.status == 401:
            self.transport.auth.forget(f"repository:{session.repository}:pull,push")
        if answer.status != 202:
            raise_refusal(answer, self.name, session.repository, "sending a chunk", upload=True)
        self._locations[session.upload_id] = self._location(answer, location)
        held = range_end(answer.headers.get("Range"))
        if held is not None and held != chunk.last_byte:
            raise UploadNotFoundError(
                f"registry {self.name} holds bytes 0-{held} after a chunk ending at "
                f"{chunk.last_byte}; starting the layer's upload again",
                repository=session.repository,
                code=ErrorCode.UPLOAD_DIVERGED,
            )
        self._synced[session.upload_id] = chunk.last_byte + 1
        return chunk.last_byte

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
                answer, self.name, session.repository, "asking for an upload's status", upload=True
            )
        self._locations[session.upload_id] = self._location(answer, location)
        held = range_end(answer.headers.get("Range"))
        next_byte = 0 if held is None else held + 1
        if next_byte != first_byte:
            raise PartOutOfOrderError(
                f"registry holds bytes up to {next_byte - 1}",
                next_byte=next_byte,
                repository=session.repository,
            )
        self._synced[session.upload_id] = first_byte

    async def complete_upload(self, session: UploadSession, digest: str) -> None:
        location = self._locations.get(session.upload_id, URL(session.upload_id))
        url = location.update_query(digest=digest)
        answer = await self.transport.send(
            "PUT", url, session.repository, headers={"Content-Length": "0"}
        )
        if answer.status not in (201, 204):
            raise_refusal(
                answer, self.name, session.repository, "completing an upload", upload=True
            )
        self._locations.pop(session.upload_id, None)
        self._synced.pop(session.upload_id, None)
        self._known_in.setdefault(digest, session.repository)

    async def put_manifest(
        self, repository: str, manifest: bytes, media_type: str, tag: str | None = None
    ) -> None:
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        answer = await self._put_manifest(repository, tag or digest, manifest, media_type)
        referrer = referrer_of(manifest, media_type, digest) if tag is None else None
        if referrer is not None and SUBJECT_HEADER not in answer.headers:
            await self._list_referrer(repository, referrer)

    async def _put_manifest(
        self, repository: str, reference: str, manifest: bytes, media_type: str
    ) -> Answer:
        url = self._repo_url(repository, f"manifests/{quote(reference, safe=':')}")
        answer = await self.transport.send(
            "PUT", url, repository, headers={"Content-Type": media_type}, data=manifest
        )
        if answer.status not in (200, 201, 202):
            raise_refusal(answer, self.name, repository, f"publishing manifest {reference!r}")
        return answer

    async def _list_referrer(self, repository: str, referrer: Referrer) -> None:
        """No referrers API here: keep the subject's list under its fallback tag."""
        url = self._repo_url(repository, f"manifests/{referrer.fallback_tag}")
        answer = await self.transport.send("GET", url, repository, headers={"Accept": OCI_INDEX})
        if answer.status not in (200, 404):
            raise_refusal(answer, self.name, repository, f"reading {referrer.fallback_tag!r}")
        try:
            updated = with_referrer(answer.body if answer.status == 200 else None, referrer)
        except ValueError as exc:
            raise RegistryError(
                f"cannot list the referrer under {referrer.fallback_tag!r}: {exc}",
                repository=repository,
                code=ErrorCode.MALFORMED_RESPONSE,
            ) from None
        if updated is not None:
            await self._put_manifest(repository, referrer.fallback_tag, updated, OCI_INDEX)

    def _repo_url(self, repository: str, rest: str) -> URL:
        return URL(f"{str(self.base).rstrip('/')}/v2/{repository}/{rest}", encoded=False)

    def _location(self, answer: Answer, request_url: URL) -> URL:
        location = answer.headers.get("Location")
        if not location:
            raise TransientRegistryError(
                f"registry {self.name} answered an upload request without a Location",
                code=ErrorCode.MALFORMED_RESPONSE,
            )
        return request_url.join(URL(location, encoded=True))


@asynccontextmanager
async def open_oci_registry(settings: OciSettings) -> AsyncIterator[OciRegistry]:
    """An ``OciRegistry`` whose connection pool is sized to the layers in flight."""
    base = registry_base_url(settings.url, insecure=settings.insecure)
    host = str(base.authority)
    credentials: Credentials | None = await credentials_for(
        host, settings.username, settings.docker_config
    )
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
    )
    # --insecure-registry means what it means to docker: http allowed, TLS not verified.
    connector = aiohttp.TCPConnector(limit=settings.max_connections, ssl=not settings.insecure)
    async with (
        aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session,
        anyio.create_task_group() as chunks,
    ):
        transport = OciTransport(session, Authenticator(session, host, credentials), host)
        try:
            yield OciRegistry(transport, base, settings.part_size, tasks=chunks)
        finally:
            chunks.cancel_scope.cancel()  # a chunk nobody feeds any more
