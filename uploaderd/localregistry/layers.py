"""The layer push operations, with the rules ECR enforces on them.

The rules are the point: a client that passes here must pass against ECR, so each
check answers with the error code and modeled fields ECR uses for that failure.
"""

from __future__ import annotations

import binascii
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
import pybase64

from . import params
from .catalog import Catalog, Repository, StoredLayer, is_digest
from .config import PRIVATE_LIMITS, LayerLimits
from .protocol import ApiCall, EcrError, JsonObject
from .stats import RegistryStats
from .store import THREAD_THRESHOLD, BlobStore, UploadSession

Buffer = bytes | bytearray | memoryview
"""A lifted base64 text: a view of the request body, never copied."""

#: ECR refuses parts above 20 MiB and, on completion, any part but the last below 5 MiB.
MAX_PART_BYTES = 20 * 1024 * 1024
MIN_PART_BYTES = 5 * 1024 * 1024


class LayerOperations:
    def __init__(
        self,
        catalog: Catalog,
        store: BlobStore,
        stats: RegistryStats,
        *,
        part_size: int,
        missing_as_unavailable: bool,
        limits: LayerLimits = PRIVATE_LIMITS,
    ) -> None:
        self._catalog = catalog
        self._store = store
        self._stats = stats
        self._part_size = part_size
        self._missing_as_unavailable = missing_as_unavailable
        self._limits = limits

    def _repository(self, call: ApiCall) -> Repository:
        return self._catalog.get(call.body.get("repositoryName"), call.body.get("registryId"))

    async def batch_check_layer_availability(self, call: ApiCall) -> JsonObject:
        """Reports each digest; a missing one is a failure, or UNAVAILABLE if configured.

        Real ECR answers both ways, so the server can be told which to use.
        """
        repository = self._repository(call)
        layers: list[JsonObject] = []
        failures: list[JsonObject] = []
        for digest in params.string_list(call.body, "layerDigests", low=1, high=100):
            stored = repository.layers.get(digest)
            if stored is not None:
                layers.append(_layer(digest, "AVAILABLE", stored))
            elif not is_digest(digest):
                failures.append(_failure(digest, "InvalidLayerDigest", "Invalid layer digest"))
            elif self._missing_as_unavailable:
                layers.append({"layerDigest": digest, "layerAvailability": "UNAVAILABLE"})
            else:
                failures.append(_failure(digest, "MissingLayerDigest", "Requested layer not found"))
        return {"layers": layers, "failures": failures}

    async def initiate_layer_upload(self, call: ApiCall) -> JsonObject:
        repository = self._repository(call)
        session = self._store.start_upload(_upload_scope(repository))
        return {"uploadId": session.upload_id, "partSize": self._part_size}

    async def upload_layer_part(self, call: ApiCall) -> JsonObject:
        repository = self._repository(call)
        upload_id = params.string(call.body, "uploadId")
        first = params.integer(call.body, "partFirstByte")
        last = params.integer(call.body, "partLastByte")
        data = await _decode_blob(_part_blob(call.body))
        async with self._locked_upload(repository, upload_id) as session:
            _check_part(repository, session, first, last, len(data))
            _check_limits(session, len(data), self._limits)
            await self._store.append(session, data)
            last_byte = session.received - 1
        self._stats.part_received(len(data))
        return {
            "registryId": repository.registry_id,
            "repositoryName": repository.name,
            "uploadId": upload_id,
            "lastByteReceived": last_byte,
        }

    async def complete_layer_upload(self, call: ApiCall) -> JsonObject:
        repository = self._repository(call)
        upload_id = params.string(call.body, "uploadId")
        digests = params.string_list(call.body, "layerDigests", low=1, high=1)
        digest = digests[0]
        if not is_digest(digest):
            raise params.invalid("layerDigests", "must be sha256:<64 hex digits>")
        async with self._locked_upload(repository, upload_id) as session:
            _check_complete(repository, session, digest)
            if digest in repository.layers:
                # The upload can never complete now, so its bytes go at once.
                self._store.forget(upload_id)
                raise EcrError(
                    "LayerAlreadyExistsException",
                    f"The layer '{digest}' already exists in the repository with name "
                    f"'{repository.name}' in registry with id '{repository.registry_id}'",
                )
            size = session.received
            self._store.commit(session)
        self._catalog.add_layer(repository, digest, StoredLayer(size))
        self._stats.completed[f"{repository.name}@{digest}"] += 1
        return {
            "registryId": repository.registry_id,
            "repositoryName": repository.name,
            "uploadId": upload_id,
            "layerDigest": digest,
        }

    async def get_download_url_for_layer(self, call: ApiCall) -> JsonObject:
        repository = self._repository(call)
        digest = params.string(call.body, "layerDigest")
        if not is_digest(digest):
            raise params.invalid("layerDigest", "must be sha256:<64 hex digits>")
        if digest not in repository.layers:
            raise EcrError(
                "LayersNotFoundException",
                f"The image layer '{digest}' does not exist in the repository with name "
                f"'{repository.name}' in the registry with id '{repository.registry_id}'",
            )
        url = f"{call.base_url}/blobs/{repository.name}/{digest}"
        if repository.registry_id != self._catalog.default_registry_id:
            url += f"?registryId={repository.registry_id}"  # the default's URLs stay as they were
        return {"downloadUrl": url, "layerDigest": digest}

    @asynccontextmanager
    async def _locked_upload(
        self, repository: Repository, upload_id: str
    ) -> AsyncIterator[UploadSession]:
        """Holds the upload's lock, re-checking the upload still exists once held.

        A request that waited for the lock may find the upload completed or forgotten
        by the request before it; it must then see UploadNotFoundException.
        """
        session = self._find_upload(repository, upload_id)
        async with session.lock:
            if self._find_upload(repository, upload_id) is not session:
                raise _upload_not_found(repository, upload_id)
            yield session

    def _find_upload(self, repository: Repository, upload_id: str) -> UploadSession:
        session = self._store.find_upload(upload_id)
        if session is None or session.repository != _upload_scope(repository):
            raise _upload_not_found(repository, upload_id)
        return session


def _check_part(
    repository: Repository, session: UploadSession, first: int, last: int, size: int
) -> None:
    """Parts must arrive in order, contiguous, and as long as their byte range says.

    ``lastValidByteReceived`` is the offset of the last byte stored (-1 before any):
    a client whose answer was lost resumes from ``lastValidByteReceived + 1``.
    """
    if first != session.received:
        problem = f"partFirstByte {first} is not the next byte expected ({session.received})"
    elif last - first + 1 != size:
        problem = f"part range {first}-{last} does not match the {size} bytes sent"
    elif size == 0:
        problem = "the part is empty"
    elif size > MAX_PART_BYTES:
        problem = f"the part is {size} bytes; the largest allowed is {MAX_PART_BYTES}"
    else:
        return
    raise EcrError(
        "InvalidLayerPartException",
        f"Layer part rejected: {problem}",
        registryId=repository.registry_id,
        repositoryName=repository.name,
        uploadId=session.upload_id,
        lastValidByteReceived=session.received - 1,
    )


def _check_limits(session: UploadSession, size: int, limits: LayerLimits) -> None:
    """ECR's per-layer quotas: parts per upload, and bytes in the layer.

    Both ECR's and ECR Public's models list ``LimitExceededException`` ("would have
    exceeded a service limit for your account", the service-quotas page, which lists
    both quotas) and ``InvalidLayerPartException`` for UploadLayerPart; the latter
    means a part out of order or malformed, so a quota breach is LimitExceeded.
    botocore's standard retry mode counts LimitExceededException as throttling, so a
    client retries it (in vain) before it sees it.  Checked after the order rules,
    so a resent part that had arrived is still answered with where to resume.
    """
    if len(session.part_sizes) >= limits.max_parts:
        problem = f"an upload may have at most {limits.max_parts} parts"
    elif session.received + size > limits.max_bytes:
        problem = (
            f"a layer may have at most {limits.max_bytes} bytes; this part would take "
            f"the upload to {session.received + size}"
        )
    else:
        return
    raise EcrError("LimitExceededException", f"Layer part rejected: {problem}")


def _check_complete(repository: Repository, session: UploadSession, digest: str) -> None:
    if not session.part_sizes:
        raise EcrError(
            "EmptyUploadException", f"The upload '{session.upload_id}' received no parts"
        )
    if any(size < MIN_PART_BYTES for size in session.part_sizes[:-1]):
        raise EcrError(
            "LayerPartTooSmallException",
            f"Every part but the last must be at least {MIN_PART_BYTES} bytes; "
            f"parts were {session.part_sizes}",
        )
    if session.digest() != digest:
        raise EcrError(
            "InvalidLayerException",
            f"The layer digest calculated for the upload ({session.digest()}) does not "
            f"match the digest provided ({digest})",
        )


def _part_blob(body: JsonObject) -> Buffer | str:
    """The base64 text: a view of the body when the decoder lifted it out, else a JSON string."""
    value = body.get("layerPartBlob")
    if isinstance(value, bytes | bytearray | memoryview) and value:
        return value
    return params.string(body, "layerPartBlob")


async def _decode_blob(encoded: Buffer | str) -> bytes:
    """Decodes a base64 part, off the event loop when it is large (up to ~27 MB)."""
    try:
        if len(encoded) > THREAD_THRESHOLD:
            return await anyio.to_thread.run_sync(_strict_b64decode, encoded)
        return _strict_b64decode(encoded)
    except binascii.Error as exc:
        raise params.invalid("layerPartBlob", f"must be base64 ({exc})") from exc


def _strict_b64decode(encoded: Buffer | str) -> bytes:
    """Decodes with pybase64 (SIMD, several times the standard library's speed).

    Padding is only allowed at the very end, as ECR's own decoder requires:
    pybase64's ``validate`` refuses it anywhere else, without a scan of ours.
    """
    text = encoded.encode("ascii", "replace") if isinstance(encoded, str) else encoded
    if len(text) % 4:
        raise binascii.Error("not canonical base64")
    return pybase64.b64decode(text, validate=True)


def _upload_scope(repository: Repository) -> str:
    """An upload belongs to one repository of one registry: the same name elsewhere is not it."""
    return f"{repository.registry_id}/{repository.name}"


def _upload_not_found(repository: Repository, upload_id: str) -> EcrError:
    return EcrError(
        "UploadNotFoundException",
        f"The upload with id '{upload_id}' does not exist in the repository with name "
        f"'{repository.name}' in the registry with id '{repository.registry_id}'",
    )


def _layer(digest: str, availability: str, stored: StoredLayer) -> JsonObject:
    return {
        "layerDigest": digest,
        "layerAvailability": availability,
        "layerSize": stored.size,
        "mediaType": stored.media_type,
    }


def _failure(digest: str, code: str, reason: str) -> JsonObject:
    return {"layerDigest": digest, "failureCode": code, "failureReason": reason}
