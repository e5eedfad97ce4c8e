"""An OCI image layout directory: ``oci-layout``, ``index.json`` and ``blobs/sha256/``.

``index.json`` may list several entries.  Each with an
``org.opencontainers.image.ref.name`` annotation is an image under that
name's tag (several entries with one digest: one image, several tags).  An
entry without a name is pushed only as a referrer, if its manifest has a
``subject`` among what is pushed (cosign and oras save signatures so), or as
the one image of a layout whose only entry has no name, under ``--tag``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uploaderd.errors import ErrorCode, ImageError, ImageIncompleteError
from uploaderd.image.graph import ManifestStore
from uploaderd.image.manifest import Descriptor, parse_descriptor

REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(slots=True)
class ImageRoot:
    """One image an image source holds: its top descriptor and the names it carries."""

    descriptor: Descriptor
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What an image source holds: its images, unnamed entries, and where the bytes are."""

    store: ManifestStore
    roots: list[ImageRoot]
    unnamed: list[Descriptor]
    listing: Path
    """The file that lists the images (index.json, manifest.json), for messages."""


def tag_of(reference: str) -> str:
    """``1.0``, or the tag part of ``host:5000/app:1.0`` (annotations hold either)."""
    _, sep, tag = reference.rpartition(":")
    return tag if sep and "/" not in tag else reference


def read_layout(root: Path) -> Catalogue:
    index_path = root / "index.json"
    index = load_json(index_path)
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ImageError(
            "index.json lists no manifests", path=index_path, code=ErrorCode.INVALID_IMAGE
        )
    roots: dict[str, ImageRoot] = {}
    unnamed: list[Descriptor] = []
    for n, entry in enumerate(entries):
        descriptor = parse_descriptor(entry, f"manifests[{n}]", index_path)
        name = _ref_name(entry)
        if name is None:
            unnamed.append(descriptor)
        else:
            roots.setdefault(descriptor.digest, ImageRoot(descriptor)).names.append(tag_of(name))
    return Catalogue(ManifestStore(root / "blobs"), list(roots.values()), unnamed, index_path)


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
