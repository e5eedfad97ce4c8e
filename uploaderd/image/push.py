"""Pushing whole images: every blob through the engine, then the manifests, then the tags.

A tag is what makes an image pullable, so the tags are published only once
every blob was confirmed by the engine, the registry reports them all
present, and every manifest was accepted by digest, children before the
index naming them and a referrer after its subject.  If anything failed,
nothing is tagged.
"""

from __future__ import annotations

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
    """Each blob's result, and the digest each tag was published under (none if it failed)."""

    blobs: list[LayerResult]
    tagged: dict[str, str]


def blob_jobs(image: Image, repository: str) -> list[LayerJob]:
    """One engine job per blob, claiming its digest: checked as the bytes are sent."""
    return [
        LayerJob(blob.path, repository, claimed_digest=blob.descriptor.digest)
        for blob in image.blobs
    ]


async def push_image(
    image: Image, repository: str, registry: Registry, engine: UploadEngine
) -> ImagePushResult:
    """Push the blobs (in parallel, each in order), then the manifests and tags if all arrived."""
    results = await engine.push_all(blob_jobs(image, repository))
    if any(result.outcome is Outcome.FAILED for result in results):
        return ImagePushResult(results, {})
    _check_digests(image, results)
    retry = engine.settings.retry
    wanted = [blob.descriptor.digest for blob in image.blobs]
    missing = await retry.call(partial(registry.missing_layers, repository, wanted), _quiet)
    if missing:
        raise RegistryError(
            f"the registry reports blobs missing right after they were pushed: "
            f"{sorted(missing)}; the image was not tagged",
            repository=repository,
            code=ErrorCode.BLOBS_MISSING,
        )
    for manifest in image.manifests:
        publish = partial(registry.put_manifest, repository, manifest.raw, manifest.media_type)
        await retry.call(publish, _quiet)
    for tag, manifest in image.tags.items():
        publish = partial(registry.put_manifest, repository, manifest.raw, manifest.media_type, tag)
        await retry.call(publish, _quiet)
    return ImagePushResult(results, {tag: m.digest for tag, m in image.tags.items()})


def _check_digests(image: Image, results: Sequence[LayerResult]) -> None:
    """A blob changed after it was checked would leave a manifest naming absent bytes."""
    for blob, result in zip(image.blobs, results, strict=True):
        if result.digest != blob.descriptor.digest:
            raise ImageError(
                f"was pushed as {result.digest}, but the manifest names "
                f"{blob.descriptor.digest}; it changed during the push, nothing was tagged",
                path=blob.path,
                code=ErrorCode.DIGEST_MISMATCH,
            )


def _quiet(reason: str, delay: float) -> None:
    """Retries of the final steps are not a blob's; the outcome says enough."""
