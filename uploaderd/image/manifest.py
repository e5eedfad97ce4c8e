"""Manifests and indexes: what each references, checked before anything is sent.

An image is a graph: an index names manifests (or other indexes), a manifest
names its config and layers, and a referrer (a signature, an SBOM) names its
subject.  This module reads one node of that graph; ``image.graph`` walks it.

Only the *manifest* media types are checked: OCI and Docker image manifests
and their indexes, which registries parse and must understand.  A blob's
media type (a config, a layer, an artifact's payload) is the registry's
business, so blobs of any type are pushed as they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uploaderd.errors import ErrorCode, ImageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
"""distribution's own limit on a manifest; anything bigger is not a manifest."""

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Platform:
    """``os/architecture[/variant]``, as an index entry or a ``--platform`` names it."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a manifest or index says about one thing it references.

    ``entry`` is the JSON object as written, so that an index rebuilt for a
    platform filter keeps every field the original carried.
    """

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False)
    entry: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def hex(self) -> str:
        return self.digest.partition(":")[2]


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest's or an index's exact bytes (its digest is over them) and what it names.

    ``blobs`` are an image manifest's config and layers (each digest once);
    ``children`` an index's manifests; ``subject`` the manifest a referrer
    points at, which must be in the registry before the referrer is.
    """

    raw: bytes
    digest: str
    media_type: str
    blobs: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    config: Descriptor | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def parse_descriptor(value: Any, where: str, source: Path) -> Descriptor:
    """A descriptor from JSON; anything malformed names the file and the field."""
    if not isinstance(value, dict):
        raise _bad(source, f"{where} is not a descriptor object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise _bad(source, f"{where} has no sha256 digest (got {digest!r})")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad(source, f"{where} has no valid size (got {size!r})")
    if not isinstance(media_type, str):
        raise _bad(source, f"{where} has no mediaType")
    annotations = value.get("annotations")
    strings = (
        {k: v for k, v in annotations.items() if isinstance(v, str)}
        if isinstance(annotations, dict)
        else {}
    )
    return Descriptor(media_type, digest, size, platform_of(value.get("platform")), strings, value)


def platform_of(value: Any) -> Platform | None:
    """The platform a descriptor or an image config names (``os``, ``architecture``)."""
    if not isinstance(value, dict):
        return None
    os_name, architecture = value.get("os"), value.get("architecture")
    if not isinstance(os_name, str) or not isinstance(architecture, str):
        return None
    variant = value.get("variant")
    return Platform(os_name, architecture, variant if isinstance(variant, str) else None)


def parse_manifest(raw: bytes, digest: str, declared_type: str | None, source: Path) -> Manifest:
    """Check a manifest's or index's structure; ``declared_type`` is what its parent says."""
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise _bad(source, f"the manifest is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _bad(source, "the manifest is not a JSON object")
    inner = document.get("mediaType")
    if declared_type is not None and isinstance(inner, str) and inner != declared_type:
        raise _bad(source, f"the manifest says {inner!r} but its index says {declared_type!r}")
    media_type = inner if isinstance(inner, str) else declared_type or _guess(document)
    subject = (
        parse_descriptor(document["subject"], "subject", source) if "subject" in document else None
    )
    if media_type in INDEX_TYPES:
        children = _descriptor_list(document, "manifests", source)
        return Manifest(raw, digest, media_type, children=children, subject=subject)
    if media_type not in MANIFEST_TYPES:
        raise ImageError(
            f"has unknown manifest media type {media_type!r}; uploaderd pushes OCI and "
            "Docker v2 image manifests and indexes (blobs may be of any type)",
            path=source,
            code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )
    config = parse_descriptor(document.get("config"), "config", source)
    layers = _descriptor_list(document, "layers", source)
    unique: dict[str, Descriptor] = {}
    for descriptor in (config, *layers):  # config first, a repeated layer once
        unique.setdefault(descriptor.digest, descriptor)
    blobs = tuple(unique.values())
    return Manifest(raw, digest, media_type, blobs=blobs, subject=subject, config=config)


def _guess(document: dict[str, Any]) -> str:
    """A manifest without ``mediaType`` (allowed by OCI): an index if it lists manifests."""
    return OCI_INDEX if isinstance(document.get("manifests"), list) else OCI_MANIFEST


def _descriptor_list(document: dict[str, Any], key: str, source: Path) -> tuple[Descriptor, ...]:
    items = document.get(key)
    if not isinstance(items, list):
        raise _bad(source, f"the manifest has no {key} list")
    return tuple(parse_descriptor(item, f"{key}[{n}]", source) for n, item in enumerate(items))


def _bad(source: Path, what: str) -> ImageError:
    return ImageError(what, path=source, code=ErrorCode.INVALID_IMAGE)
