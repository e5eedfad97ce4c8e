"""Where images come from: a layout directory, a docker save directory, or a tarball of either.

Whatever the source, the result is the same: every manifest's exact bytes
in push order, every blob as a file on disk with its size checked, and the
tags.  A tarball is unpacked into ``workdir`` first (streamed, never whole
in memory).  All the reading runs in one worker thread, off the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from uploaderd.errors import ErrorCode, ImageError, ImageIncompleteError
from uploaderd.image.blobs import BlobFile, present_blob
from uploaderd.image.dockersave import read_docker_save
from uploaderd.image.graph import ImageGraph
from uploaderd.image.layout import Catalogue, ImageRoot, read_layout
from uploaderd.image.manifest import Manifest, Platform
from uploaderd.image.platforms import select_platforms
from uploaderd.image.tarball import extract_archive

LAYOUT_FILES = ("oci-layout", "index.json")
VALID_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
"""The OCI distribution spec's tag grammar; ECR's is looser, so this one binds."""


@dataclass(frozen=True, slots=True)
class Image:
    """What to push: blobs (sizes checked; digests are checked as sent), manifests, tags.

    ``manifests`` are in the order a registry must receive them, children
    first; ``tags`` map each tag to the manifest it names, published last.
    """

    blobs: list[BlobFile]
    manifests: list[Manifest]
    tags: dict[str, Manifest]


@dataclass(frozen=True, slots=True)
class ImageChoice:
    """What of an image source to push: extra tags and platforms (empty: everything)."""

    tags: Sequence[str] = ()
    platforms: Sequence[Platform] = ()


async def open_image(path: Path, choice: ImageChoice, workdir: Path) -> Image:
    """Read and check the images at ``path``; raise ``ImageError`` naming what is wrong."""
    for tag in choice.tags:
        _check_tag(tag, "--tag", path)
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
    return await anyio.to_thread.run_sync(_read_image, root, choice, path)


def _read_image(root: Path, choice: ImageChoice, given: Path) -> Image:
    catalogue = _catalogue(root, given)
    graph = ImageGraph()
    tags: dict[str, Manifest] = {}
    for image in _chosen(catalogue, choice.tags, given):
        top = image.descriptor
        if choice.platforms:
            whole = catalogue.store.read(top, catalogue.listing.name, ())
            top = select_platforms(catalogue.store, top, whole, choice.platforms)
        manifest = graph.add(catalogue.store, top, catalogue.listing.name)
        for tag in dict.fromkeys([*image.names, *choice.tags]):
            _check_tag(tag, catalogue.listing.name, catalogue.listing)
            if tags.setdefault(tag, manifest) is not manifest:
                raise ImageError(
                    f"two images claim the tag {tag!r}; give each its own",
                    path=catalogue.listing,
                    code=ErrorCode.AMBIGUOUS_IMAGE,
                )
    graph.add_referrers(catalogue.store, catalogue.unnamed)
    blobs = [
        present_blob(descriptor, catalogue.store.blob_path(descriptor))
        for descriptor in graph.blobs.values()
    ]
    return Image(blobs, list(graph.manifests.values()), tags)


def _catalogue(root: Path, given: Path) -> Catalogue:
    # docker save since 25.0 writes an OCI layout and manifest.json side by
    # side; the layout carries the real manifests, so it wins.
    missing = [name for name in LAYOUT_FILES if not (root / name).is_file()]
    if not missing:
        return read_layout(root)
    if (root / "manifest.json").is_file():
        return read_docker_save(root)
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


def _chosen(catalogue: Catalogue, tags: Sequence[str], given: Path) -> list[ImageRoot]:
    """The images to push: all named ones; with ``--tag``, the one it adds tags to.

    ``--tag`` adds tags to a single image.  Where the source holds several,
    a ``--tag`` that is one of their names chooses that image instead (as
    ``--tag`` always has), and one that is not is ambiguous.
    """
    roots, listing = catalogue.roots, catalogue.listing
    if not roots and len(catalogue.unnamed) == 1 and tags:
        return [ImageRoot(catalogue.unnamed[0])]
    if not roots:
        raise ImageError(
            "the image carries no tag (no org.opencontainers.image.ref.name annotation "
            "or RepoTags); pass --tag",
            path=given,
            code=ErrorCode.NO_TAG,
        )
    if len(roots) == 1 or not tags:
        return roots
    named = [root for root in roots if set(tags) & set(root.names)]
    if named and all(any(tag in root.names for root in named) for tag in tags):
        return named
    names = ", ".join(sorted(name for root in roots for name in root.names))
    raise ImageError(
        f"{listing.name} holds {len(roots)} images ({names}); --tag adds tags to one image, "
        "so name one of them with --tag, or push them without --tag under their own names",
        path=listing,
        code=ErrorCode.AMBIGUOUS_IMAGE,
    )


def _check_tag(tag: str, where: str, path: Path) -> None:
    if VALID_TAG.fullmatch(tag) is None:
        raise ImageError(
            f"{where} gives the tag {tag!r}, which is not a valid tag: 1 to 128 letters, "
            "digits, '_', '.' or '-', not starting with '.' or '-'",
            path=path,
            code=ErrorCode.INVALID_TAG,
        )
