"""A ``docker save`` archive, turned into a Docker v2 schema 2 manifest.

``docker save`` writes no registry manifest, only ``manifest.json`` naming
the config file and the layer tarballs of each image.  The manifest a
registry wants is built from those files' digests and sizes: the config as
``application/vnd.docker.container.image.v1+json`` and each layer as the
uncompressed ``...rootfs.diff.tar`` it is (or ``.tar.gzip`` if the archive
holds it compressed), so the layer digests equal the config's diff_ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from uploaderd.errors import ErrorCode, ImageError
from uploaderd.image.blobs import hash_blob_file
from uploaderd.image.graph import ManifestStore
from uploaderd.image.layout import Catalogue, ImageRoot, load_json, tag_of
from uploaderd.image.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    Descriptor,
)

GZIP_MAGIC = b"\x1f\x8b"


def read_docker_save(root: Path) -> Catalogue:
    """Every image of the archive, each under the tags of its ``RepoTags``."""
    index_path = root / "manifest.json"
    entries = load_json(index_path)
    if not isinstance(entries, list) or not entries:
        raise ImageError("lists no images", path=index_path, code=ErrorCode.INVALID_IMAGE)
    store = ManifestStore(None)
    roots: dict[str, ImageRoot] = {}
    unnamed: list[Descriptor] = []
    for entry in entries:
        descriptor = _manifest_of(root, entry, store, index_path)
        names = entry.get("RepoTags") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ImageError(
                "an entry's RepoTags is not a list of names",
                path=index_path,
                code=ErrorCode.INVALID_IMAGE,
            )
        if not names:
            unnamed.append(descriptor)
            continue
        image = roots.setdefault(descriptor.digest, ImageRoot(descriptor))
        image.names.extend(tag_of(name) for name in names)
    return Catalogue(store, list(roots.values()), unnamed, index_path)


def _manifest_of(root: Path, entry: Any, store: ManifestStore, index_path: Path) -> Descriptor:
    """The Docker v2 manifest of one entry, kept in ``store``; its descriptor."""
    config_name, layer_names = _files_of(entry, index_path)
    config = _describe(root, config_name, DOCKER_CONFIG, store, index_path)
    layers = [
        _describe(root, name, _layer_type(root / name), store, index_path) for name in layer_names
    ]
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": _json(config),
        "layers": [_json(layer) for layer in layers],
    }
    raw = json.dumps(document, indent=3).encode()
    return Descriptor(DOCKER_MANIFEST, store.add(raw), len(raw))


def _files_of(entry: Any, index_path: Path) -> tuple[str, list[str]]:
    config = entry.get("Config") if isinstance(entry, dict) else None
    layers = entry.get("Layers") if isinstance(entry, dict) else None
    if not isinstance(config, str) or not isinstance(layers, list):
        raise ImageError(
            "an entry lacks Config or Layers", path=index_path, code=ErrorCode.INVALID_IMAGE
        )
    if not all(isinstance(layer, str) for layer in layers):
        raise ImageError("Layers holds a non-string", path=index_path, code=ErrorCode.INVALID_IMAGE)
    return config, layers


def _describe(
    root: Path, name: str, media_type: str, store: ManifestStore, index_path: Path
) -> Descriptor:
    path = root / name
    if not _inside(root, path):
        raise ImageError(
            f"names {name!r}, which is not in the archive (truncated?)",
            path=index_path,
            code=ErrorCode.MISSING_BLOB,
        )
    digest, size = hash_blob_file(path)
    store.blob_files.setdefault(digest, path)
    return Descriptor(media_type, digest, size)


def _inside(root: Path, path: Path) -> bool:
    """A regular file within ``root``: manifest.json must not name ``../../etc/shadow``."""
    return path.resolve().is_relative_to(root.resolve()) and path.is_file()


def _layer_type(path: Path) -> str:
    try:
        with path.open("rb") as layer:
            head = layer.read(2)
    except OSError:
        return DOCKER_LAYER  # _describe reports the missing file
    return DOCKER_LAYER_GZIP if head == GZIP_MAGIC else DOCKER_LAYER


def _json(descriptor: Descriptor) -> dict[str, Any]:
    return {
        "mediaType": descriptor.media_type,
        "size": descriptor.size,
        "digest": descriptor.digest,
    }
