"""Any OCI Distribution registry (distribution, Harbor, Quay, GHCR, ...) over aiohttp.

Blobs go up by the distribution spec's chunked upload, which fits the
engine's model exactly: ``POST`` opens an upload, each part is a ``PATCH``
with ``Content-Range`` sent strictly in order (``ocichunks``: the chain of
``Location``s, chunks of several parts, resuming from the registry's
``Range``), and ``PUT ?digest=`` closes it.
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
from yarl import URL

from uploaderd.errors import (
    ConfigurationError,
    ErrorCode,
    RegistryError,
    unwrap_group,
)
from uploaderd.registry.base import (
    Allocate,
    ClientRetries,
    PartPayload,
    PartSource,
    UploadSession,
    new_buffer,
)
from uploaderd.registry.limits import OCI_LIMITS, RegistryLimits
from uploaderd.registry.ociauth import Authenticator, Credentials, credentials_for
from uploaderd.registry.ocichunks import BlobUploads
from uploaderd.registry.ocireferrers import (
    OCI_INDEX,
    SUBJECT_HEADER,
    Referrer,
    referrer_of,
    with_referrer,
)
from uploaderd.registry.ocitransport import Answer, OciTransport, next_location, raise_refusal
from uploaderd.sizes import MIB

DEFAULT_PART_SIZE = 10 * MIB
CHECKS_AT_ONCE = 8
"""HEADs of one batch on the wire together: a round trip for the batch, not for each
blob, without opening a connection per digest of a batch of 100."""


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
    uploads: BlobUploads
    """The open uploads: where each stands, and the PATCHes that carry its parts."""
    part_size: int = DEFAULT_PART_SIZE
    memory_per_part_byte: float = 1.2
    """The raw part is the request body; aiohttp sends it without copying."""
    limits: RegistryLimits = OCI_LIMITS
    client_retries: ClientRetries = field(default_factory=ClientRetries)
    """Never called: the OCI transport retries nothing on its own."""
    _known_in: dict[str, str] = field(default_factory=dict)
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

        OCI has no batch check: one HEAD per blob.  The engine batches the
        checks of layers starting together, so they go out side by side; one
        after another they would cost a round trip each before any upload starts.
        """
        missing: set[str] = set()
        limiter = anyio.CapacityLimiter(CHECKS_AT_ONCE)
        try:
            async with anyio.create_task_group() as checks:
                for digest in dict.fromkeys(digests):
                    checks.start_soon(self._check_blob, repository, digest, missing, limiter)
        except BaseExceptionGroup as failed:
            raise unwrap_group(failed) from None
        return missing

    async def _check_blob(
        self, repository: str, digest: str, missing: set[str], limiter: anyio.CapacityLimiter
    ) -> None:
        async with limiter:
            url = self._repo_url(repository, f"blobs/{digest}")
            answer = await self.transport.send("HEAD", url, repository)
            if answer.status == 200:
                self._known_in.setdefault(digest, repository)
            elif answer.status == 404:
                if not await self._mount(repository, digest):
                    missing.add(digest)
            else:
                raise_refusal(answer, self.name, repository, "checking a blob")

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
            await self.transport.send("DELETE", self._next(answer, url), repository)
            return False
        return raise_refusal(answer, self.name, repository, "mounting a blob")

    async def start_upload(self, repository: str) -> UploadSession:
        url = self._repo_url(repository, "blobs/uploads/")
        answer = await self.transport.send("POST", url, repository, headers={"Content-Length": "0"})
        if answer.status != 202:
            raise_refusal(answer, self.name, repository, "opening an upload")
        upload_id = self.uploads.opened(self._next(answer, url))
        return UploadSession(repository, upload_id, self.part_size)

    async def upload_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        return await self.uploads.upload_part(session, first_byte, part)

    async def complete_upload(self, session: UploadSession, digest: str) -> None:
        url = self.uploads.location(session.upload_id).update_query(digest=digest)
        answer = await self.transport.send(
            "PUT", url, session.repository, headers={"Content-Length": "0"}
        )
        if answer.status not in (201, 204):
            raise_refusal(
                answer, self.name, session.repository, "completing an upload", upload=True
            )
        self.uploads.closed(session.upload_id)
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

    def _next(self, answer: Answer, request_url: URL) -> URL:
        return next_location(answer, request_url, self.name)


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
            uploads = BlobUploads(transport, tasks=chunks)
            yield OciRegistry(transport, base, uploads, settings.part_size)
        finally:
            chunks.cancel_scope.cancel()  # a chunk nobody feeds any more
