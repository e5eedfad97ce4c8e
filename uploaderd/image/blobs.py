"""Blob files on disk, checked against their descriptors.

Before the first request every blob must be there with the size its
descriptor gives: a missing or short one sends nothing.  Its bytes are
hashed once, while the engine sends them (``engine.digests``), and checked
before the upload is completed: a blob whose bytes do not match would be
stored under another digest, and the manifest could never be tagged.  Only
the manifest itself (small) is hashed before anything is sent.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from uploaderd.errors import ErrorCode, ImageError, ImageIncompleteError
from uploaderd.image.manifest import Descriptor
from uploaderd.model import FileIdentity

HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobFile:
    """A blob's bytes on disk, checked against its descriptor, and the file as it was then."""

    descriptor: Descriptor
    path: Path
    identity: FileIdentity


def hash_blob_file(path: Path) -> tuple[str, int]:
    """The ``sha256:`` digest and size of a file (a docker save layer has no digest of its own)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as blob:
            while chunk := blob.read(HASH_CHUNK):
                digest.update(chunk)
            size = blob.tell()
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return "sha256:" + digest.hexdigest(), size


def _unreadable(path: Path, error: OSError) -> ImageError:
    """Why a blob cannot be read: missing (perhaps still to come), or another OS error."""
    if isinstance(error, FileNotFoundError):
        return ImageIncompleteError(
            "the image names this blob but it is not there", path=path, code=ErrorCode.MISSING_BLOB
        )
    return ImageError(
        f"cannot read the blob: {error.strerror}", path=path, code=ErrorCode.UNREADABLE_BLOB
    )


def present_blob(descriptor: Descriptor, path: Path) -> BlobFile:
    """The blob at ``path`` if it is there with its descriptor's size; else ``ImageError``.

    Its digest is checked as it is sent (see the module's docstring).
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    identity = FileIdentity(st.st_size, st.st_mtime_ns, st.st_ino)
    _check_size(identity, descriptor, path)
    return BlobFile(descriptor, path, identity)


def _check_size(identity: FileIdentity, descriptor: Descriptor, path: Path) -> None:
    if identity.size < descriptor.size:
        # A blob still being written is short; a corrupt one has its full size.
        raise ImageIncompleteError(
            f"the blob is {identity.size} of the {descriptor.size} bytes the manifest "
            "names: still being written, or truncated",
            path=path,
            code=ErrorCode.SIZE_MISMATCH,
        )
    if identity.size != descriptor.size:
        raise ImageError(
            f"the blob is {identity.size} bytes, not {descriptor.size} as the manifest says",
            path=path,
            code=ErrorCode.SIZE_MISMATCH,
        )
