"""Blob files on disk, hashed in worker threads and checked against their descriptors.

Every blob is hashed before the first request: a blob whose bytes do not
match the manifest would be stored under another digest, and the manifest
could never be tagged.  Checking first means a bad image sends nothing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import anyio

from uploaderd.errors import ErrorCode, ImageError, ImageIncompleteError
from uploaderd.image.manifest import Descriptor
from uploaderd.model import FileIdentity

HASH_CHUNK = 1024 * 1024
HASHING_THREADS = 4


@dataclass(frozen=True, slots=True)
class BlobFile:
    """A blob's bytes on disk, checked against its descriptor, and the file as it was then."""

    descriptor: Descriptor
    path: Path
    identity: FileIdentity


def _hash(path: Path) -> tuple[str, FileIdentity]:
    digest = hashlib.sha256()
    with path.open("rb") as blob:
        before = os.fstat(blob.fileno())
        while chunk := blob.read(HASH_CHUNK):
            digest.update(chunk)
    identity = FileIdentity(before.st_size, before.st_mtime_ns, before.st_ino)
    return "sha256:" + digest.hexdigest(), identity


async def hash_file(path: Path, limiter: anyio.CapacityLimiter | None = None) -> tuple[str, int]:
    """The ``sha256:`` digest and size of a file, computed off the event loop."""
    digest, identity = await _hash_or_fail(path, limiter)
    return digest, identity.size


async def _hash_or_fail(
    path: Path, limiter: anyio.CapacityLimiter | None
) -> tuple[str, FileIdentity]:
    try:
        return await anyio.to_thread.run_sync(_hash, path, limiter=limiter)
    except FileNotFoundError:
        raise ImageIncompleteError(
            "the image names this blob but it is not there", path=path, code=ErrorCode.MISSING_BLOB
        ) from None
    except OSError as exc:
        raise ImageError(
            f"cannot read the blob: {exc.strerror}", path=path, code=ErrorCode.UNREADABLE_BLOB
        ) from None


async def check_blob(
    descriptor: Descriptor, path: Path, limiter: anyio.CapacityLimiter | None = None
) -> BlobFile:
    """The blob at ``path`` if its bytes are the ones ``descriptor`` names; else ``ImageError``."""
    digest, identity = await _hash_or_fail(path, limiter)
    if identity.size < descriptor.size:
        # A blob still being written is short; a corrupt one has its full size.
        raise ImageIncompleteError(
            f"the blob is {identity.size} of the {descriptor.size} bytes the manifest "
            "names: still being written, or truncated",
            path=path,
            code=ErrorCode.SIZE_MISMATCH,
        )
    if digest != descriptor.digest:
        raise ImageError(
            f"the blob's bytes hash to {digest}, not {descriptor.digest} as the manifest "
            "says; the image is corrupt, rebuild or re-export it",
            path=path,
            code=ErrorCode.DIGEST_MISMATCH,
        )
    if identity.size != descriptor.size:
        raise ImageError(
            f"the blob is {identity.size} bytes, not {descriptor.size} as the manifest says",
            path=path,
            code=ErrorCode.SIZE_MISMATCH,
        )
    return BlobFile(descriptor, path, identity)


async def check_blobs(pairs: list[tuple[Descriptor, Path]]) -> list[BlobFile]:
    """Check every blob, a few at a time; results in the order given."""
    limiter = anyio.CapacityLimiter(HASHING_THREADS)
    checked: dict[int, BlobFile] = {}

    async def one(index: int, descriptor: Descriptor, path: Path) -> None:
        checked[index] = await check_blob(descriptor, path, limiter)

    async with anyio.create_task_group() as group:
        for index, (descriptor, path) in enumerate(pairs):
            group.start_soon(one, index, descriptor, path)
    return [checked[index] for index in range(len(pairs))]
