"""Where an image comes from: a layout directory, a docker save directory, or a tarball of either.

Whatever the source, the result is the same: the manifest's exact bytes and
every blob it names as a checked file on disk.  A tarball is unpacked into
``workdir`` first (streamed, never whole in memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anyio

from uploaderd.errors import ErrorCode, ImageError, ImageIncompleteError
from uploaderd.image.blobs import BlobFile, check_blobs
from uploaderd.image.dockersave import read_docker_save
from uploaderd.image.layout import SelectedImage, read_layout
from uploaderd.image.manifest import ImageManifest
from uploaderd.image.tarball import extract_archive

LAYOUT_FILES = ("oci-layout", "index.json")


@dataclass(frozen=True, slots=True)
class Image:
    """An image ready to push: every blob there with its size (digests are checked as sent)."""

    manifest: ImageManifest
    tag: str
    blobs: list[BlobFile]


async def open_image(path: Path, tag: str | None, workdir: Path) -> Image:
    """Read and check the image at ``path``; raise ``ImageError`` naming what is wrong."""
    if await anyio.Path(path).is_dir():
        root = path
    elif await anyio.Path(path).is_file():
        root = workdir / "unpacked"
        await anyio.Path(root).mkdir()
        await extract_archive(path, root)
    else:
        raise ImageError(
            "no such image directory or archive", path=path, code=ErrorCode.FILE_NOT_FOUND
        )
    selected = await _select(root, tag, path)
    if selected.tag is None:
        raise ImageError(
            "the image carries no tag (no org.opencontainers.image.ref.name annotation "
            "or RepoTags); pass --tag",
            path=path,
            code=ErrorCode.NO_TAG,
        )
    pairs = [
        (descriptor, selected.blob_paths[descriptor.digest])
        for descriptor in selected.manifest.blobs
    ]
    return Image(selected.manifest, selected.tag, await check_blobs(pairs))


async def _select(root: Path, tag: str | None, given: Path) -> SelectedImage:
    # docker save since 25.0 writes an OCI layout and manifest.json side by
    # side; the layout carries the real manifest, so it wins.
    missing = [name for name in LAYOUT_FILES if not (root / name).is_file()]
    if not missing:
        return await read_layout(root, tag)
    if (root / "manifest.json").is_file():
        return await read_docker_save(root, tag)
    if len(missing) < len(LAYOUT_FILES) or (root / "blobs").is_dir():
        # A layout being written file by file: what it lacks may still come.
        raise ImageIncompleteError(
            f"is an OCI image layout without {' and '.join(missing)}",
            path=given,
            code=ErrorCode.INVALID_IMAGE,
        )
    raise ImageError(
        "is neither an OCI image layout (oci-layout, index.json) nor a docker save "
        "archive (manifest.json)",
        path=given,
        code=ErrorCode.INVALID_IMAGE,
    )
