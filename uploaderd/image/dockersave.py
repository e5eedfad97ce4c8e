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

import anyio

from uploaderd.errors import ErrorCode, ImageError
from uploaderd.image.blobs import hash_file
from uploaderd.image.layout import SelectedImage, load_json, tag_of
from uploaderd.image.manifest import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    Descriptor,
    parse_manifest,
)

GZIP_MAGIC = b"\x1f\x8b"


async def read_docker_save(root: Path, tag: str | None) -> SelectedImage:
    index_path = root / "manifest.json"
    entries = load_json(index_path)
    if not isinstance(entries, list) or not entries:
        raise ImageError("lists no images", path=index_path, code=ErrorCode.INVALID_IMAGE)
    entry, repo_tag = _choose(entries, tag, index_path)
    config_name, layer_names = _files_of(entry, index_path)
    paths: dict[str, Path] = {}
    config = await _describe(root, config_name, DOCKER_CONFIG, paths, index_path)
    layers = [
        await _describe(root, name, _layer_type(root / name), paths, index_path)
        for name in layer_names
    ]
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": _json(config),
        "layers": [_json(layer) for layer in layers],
    }
    raw = json.dumps(document, indent=3).encode()
    manifest = parse_manifest(raw, DOCKER_MANIFEST, index_path)
    chosen_tag = tag if tag is not None else (tag_of(repo_tag) if repo_tag else None)
    return SelectedImage(manifest, chosen_tag, paths)


def _choose(entries: list[Any], tag: str | None, index_path: Path) -> tuple[Any, str | None]:
    tagged = [
        (entry, name)
        for entry in entries
        if isinstance(entry, dict)
        for name in entry.get("RepoTags") or [None]
    ]
    if tag is not None:
        named = [pair for pair in tagged if pair[1] is not None and tag_of(pair[1]) == tag]
        if named:
            return named[0]
    if len(entries) == 1 and tagged:
        return tagged[0]
    raise ImageError(
        f"holds {len(entries)} images; choose one with --tag NAME",
        path=index_path,
        code=ErrorCode.AMBIGUOUS_IMAGE,
    )


def _files_of(entry: Any, index_path: Path) -> tuple[str, list[str]]:
    config, layers = entry.get("Config"), entry.get("Layers")
    if not isinstance(config, str) or not isinstance(layers, list):
        raise ImageError(
            "an entry lacks Config or Layers", path=index_path, code=ErrorCode.INVALID_IMAGE
        )
    if not all(isinstance(layer, str) for layer in layers):
        raise ImageError("Layers holds a non-string", path=index_path, code=ErrorCode.INVALID_IMAGE)
    return config, layers


async def _describe(
    root: Path, name: str, media_type: str, paths: dict[str, Path], index_path: Path
) -> Descriptor:
    path = root / name
    if not await anyio.to_thread.run_sync(_inside, root, path):
        raise ImageError(
            f"names {name!r}, which is not in the archive (truncated?)",
            path=index_path,
            code=ErrorCode.MISSING_BLOB,
        )
    digest, size = await hash_file(path)
    paths.setdefault(digest, path)
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
