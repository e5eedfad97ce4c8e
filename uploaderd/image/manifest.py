"""Image manifests: the media types we push, and a manifest checked before anything is sent.

Only single-platform image manifests are pushed (OCI image manifest v1 and
Docker v2 schema 2).  A media type outside the known sets is refused up
front: a registry would accept the blobs and then refuse or mis-serve the
manifest, leaving half an image behind.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uploaderd.errors import ErrorCode, ImageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG, "application/vnd.oci.empty.v1+json"})

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
LAYER_TYPES = frozenset(
    {
        DOCKER_LAYER,
        DOCKER_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a manifest says about one blob: its media type, digest and size."""

    media_type: str
    digest: str
    size: int

    @property
    def hex(self) -> str:
        return self.digest.partition(":")[2]


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """A manifest's exact bytes (its digest is over them) and the blobs it names."""

    raw: bytes
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @property
    def blobs(self) -> list[Descriptor]:
        """Config and layers, each digest once (a layer may repeat), config first."""
        seen: dict[str, Descriptor] = {}
        for descriptor in (self.config, *self.layers):
            seen.setdefault(descriptor.digest, descriptor)
        return list(seen.values())


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
    return Descriptor(media_type, digest, size)


def parse_manifest(raw: bytes, declared_type: str | None, source: Path) -> ImageManifest:
    """Check a manifest's structure and media types; ``declared_type`` is what its parent says."""
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise _bad(source, f"the manifest is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _bad(source, "the manifest is not a JSON object")
    inner = document.get("mediaType")
    media_type = inner if isinstance(inner, str) else declared_type or OCI_MANIFEST
    if declared_type is not None and isinstance(inner, str) and inner != declared_type:
        raise _bad(source, f"the manifest says {inner!r} but its index says {declared_type!r}")
    if media_type in INDEX_TYPES:
        raise ImageError(
            f"the image is a multi-platform index ({media_type}); push one platform's "
            "image manifest instead",
            path=source,
            code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )
    if media_type not in MANIFEST_TYPES:
        raise _unknown(source, "manifest", media_type)
    config = parse_descriptor(document.get("config"), "config", source)
    if config.media_type not in CONFIG_TYPES:
        raise _unknown(source, "config", config.media_type)
    layer_list = document.get("layers")
    if not isinstance(layer_list, list):
        raise _bad(source, "the manifest has no layers list")
    layers = tuple(
        parse_descriptor(item, f"layers[{index}]", source) for index, item in enumerate(layer_list)
    )
    for index, layer in enumerate(layers):
        if layer.media_type not in LAYER_TYPES:
            raise _unknown(source, f"layers[{index}]", layer.media_type)
    return ImageManifest(raw, media_type, config, layers)


def _bad(source: Path, what: str) -> ImageError:
    return ImageError(what, path=source, code=ErrorCode.INVALID_IMAGE)


def _unknown(source: Path, where: str, media_type: str) -> ImageError:
    return ImageError(
        f"{where} has unknown media type {media_type!r}; uploaderd pushes OCI and Docker "
        "v2 images only",
        path=source,
        code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    )
