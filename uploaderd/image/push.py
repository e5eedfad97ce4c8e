"""Pushing a whole image: every blob through the engine, then the manifest, in that order.

The manifest is the one thing that makes an image pullable, so it is
published only once every blob it names was confirmed by the engine and the
registry reports them all present; if any blob failed, nothing is tagged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from uploaderd.engine.scheduler import UploadEngine
from uploaderd.errors import ErrorCode, ImageError, RegistryError
from uploaderd.image.source import Image
from uploaderd.model import LayerJob, LayerResult, Outcome
from uploaderd.registry.base import Registry


@dataclass(frozen=True, slots=True)
class ImagePushResult:
    """Each blob's result, and the manifest digest if the image was tagged."""

    blobs: list[LayerResult]
    manifest_digest: str | None


def blob_jobs(image: Image, repository: str) -> list[LayerJob]:
    """One engine job per blob, claiming the manifest's digest: checked as the bytes are sent."""
    return [
        LayerJob(blob.path, repository, claimed_digest=blob.descriptor.digest)
        for blob in image.blobs
    ]


async def push_image(
    image: Image, repository: str, registry: Registry, engine: UploadEngine
) -> ImagePushResult:
    """Push the blobs (in parallel, each in order), then tag the manifest if all arrived."""
    results = await engine.push_all(blob_jobs(image, repository))
    if any(result.outcome is Outcome.FAILED for result in results):
        return ImagePushResult(results, None)
    _check_digests(image, results)
    wanted = [blob.descriptor.digest for blob in image.blobs]
    retry = engine.settings.retry
    missing = await retry.call(partial(registry.missing_layers, repository, wanted), _quiet)
    if missing:
        raise RegistryError(
            f"the registry reports blobs missing right after they were pushed: "
            f"{sorted(missing)}; the image was not tagged",
            repository=repository,
            code=ErrorCode.BLOBS_MISSING,
        )
    manifest = image.manifest
    await retry.call(
        partial(registry.put_manifest, repository, image.tag, manifest.raw, manifest.media_type),
        _quiet,
    )
    return ImagePushResult(results, "sha256:" + hashlib.sha256(image.manifest.raw).hexdigest())


def _check_digests(image: Image, results: Sequence[LayerResult]) -> None:
    """A blob changed after it was checked would leave the manifest naming absent bytes."""
    for blob, result in zip(image.blobs, results, strict=True):
        if result.digest != blob.descriptor.digest:
            raise ImageError(
                f"was pushed as {result.digest}, but the manifest names "
                f"{blob.descriptor.digest}; it changed during the push, nothing was tagged",
                path=blob.path,
                code=ErrorCode.DIGEST_MISMATCH,
            )


def _quiet(reason: str, delay: float) -> None:
    """Retries of the final checks are not a blob's; the outcome says enough."""
