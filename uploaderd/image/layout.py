"""An OCI image layout directory: ``oci-layout``, ``index.json`` and ``blobs/sha256/``.

The index may hold several images; the one to push is the one whose
``org.opencontainers.image.ref.name`` annotation is the requested tag, or
the only one.  The annotation also gives the tag when none is requested.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uploaderd.errors import ErrorCode, ImageError, ImageIncompleteError
from uploaderd.image.blobs import check_blob
from uploaderd.image.manifest import Descriptor, ImageManifest, parse_descriptor, parse_manifest

REF_NAME = "org.opencontainers.image.ref.name"
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
"""distribution's own limit on a manifest; anything bigger is not an image manifest."""


@dataclass(frozen=True, slots=True)
class SelectedImage:
    """A manifest read from an image source, the tag it carries, and where its blobs are."""

    manifest: ImageManifest
    tag: str | None
    blob_paths: dict[str, Path]


def tag_of(reference: str) -> str:
    """``1.0``, or the tag part of ``host:5000/app:1.0`` (annotations hold either)."""
    _, sep, tag = reference.rpartition(":")
    return tag if sep and "/" not in tag else reference


def blob_path(root: Path, descriptor: Descriptor) -> Path:
    return root / "blobs" / "sha256" / descriptor.hex


async def read_layout(root: Path, tag: str | None) -> SelectedImage:
    index_path = root / "index.json"
    index = load_json(index_path)
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ImageError(
            "index.json lists no manifests", path=index_path, code=ErrorCode.INVALID_IMAGE
        )
    candidates = [
        (parse_descriptor(entry, f"manifests[{n}]", index_path), _ref_name(entry))
        for n, entry in enumerate(entries)
    ]
    descriptor, ref_name = _choose(candidates, tag, index_path)
    path = blob_path(root, descriptor)
    if descriptor.size > MAX_MANIFEST_SIZE:
        raise ImageError(
            f"the manifest is {descriptor.size} bytes, too big",
            path=path,
            code=ErrorCode.INVALID_IMAGE,
        )
    await check_blob(descriptor, path)
    manifest = parse_manifest(path.read_bytes(), descriptor.media_type, path)
    chosen_tag = tag if tag is not None else (tag_of(ref_name) if ref_name else None)
    paths = {blob.digest: blob_path(root, blob) for blob in manifest.blobs}
    return SelectedImage(manifest, chosen_tag, paths)


def _choose(
    candidates: list[tuple[Descriptor, str | None]], tag: str | None, index_path: Path
) -> tuple[Descriptor, str | None]:
    if tag is not None:
        named = [c for c in candidates if c[1] is not None and tag_of(c[1]) == tag]
        if len(named) == 1:
            return named[0]
    if len(candidates) == 1:
        return candidates[0]
    names = sorted(c[1] or "(unnamed)" for c in candidates)
    raise ImageError(
        f"index.json holds {len(candidates)} images ({', '.join(names)}); "
        "choose one with --tag NAME",
        path=index_path,
        code=ErrorCode.AMBIGUOUS_IMAGE,
    )


def _ref_name(entry: Any) -> str | None:
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) and name else None


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ImageIncompleteError(
            "missing; not an image (yet)", path=path, code=ErrorCode.INVALID_IMAGE
        ) from None
    except (OSError, ValueError) as exc:
        raise ImageError(
            f"cannot read it as JSON: {exc}", path=path, code=ErrorCode.INVALID_IMAGE
        ) from None
