"""Image manifests: PutImage and BatchGetImage.

PutImage is what makes pushed layers an image, so it refuses a manifest whose config
or layers are not in the repository: a client that forgot to upload one learns it here,
as it would from ECR, rather than when someone pulls.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import params
from .catalog import Catalog, Repository, StoredImage, StoredLayer, is_digest
from .protocol import REGISTRY_ID, ApiCall, EcrError, JsonObject

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class ImageOperations:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def put_image(self, call: ApiCall) -> JsonObject:
        repository = self._catalog.get(call.body.get("repositoryName"), call.body.get("registryId"))
        text = params.string(call.body, "imageManifest")
        tag = params.optional_string(call.body, "imageTag")
        manifest = _parse_manifest(text)
        media_type = _media_type(
            manifest, params.optional_string(call.body, "imageManifestMediaType")
        )
        digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        claimed = params.optional_string(call.body, "imageDigest")
        if claimed is not None and claimed != digest:
            raise EcrError(
                "ImageDigestDoesNotMatchException",
                f"The imageDigest '{claimed}' does not match the manifest's digest '{digest}'",
            )
        _check_references(repository, manifest)
        _check_tag(repository, digest, tag)
        repository.images[digest] = StoredImage(text, media_type)
        if tag is not None:
            repository.tags[tag] = digest
        _record_layer_media_types(repository, manifest)
        self._catalog.save()
        return {"image": _image(repository, digest, tag)}

    async def batch_get_image(self, call: ApiCall) -> JsonObject:
        repository = self._catalog.get(call.body.get("repositoryName"), call.body.get("registryId"))
        images: list[JsonObject] = []
        failures: list[JsonObject] = []
        for image_id in params.object_list(call.body, "imageIds", low=1, high=100):
            found = _resolve(repository, image_id)
            if isinstance(found, str):
                images.append(_image(repository, found, image_id.get("imageTag")))
            else:
                failures.append({"imageId": image_id, **found})
        return {"images": images, "failures": failures}


def _parse_manifest(text: str) -> dict[str, Any]:
    try:
        manifest = json.loads(text)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict):
        raise params.invalid("imageManifest", "Invalid JSON syntax")
    return manifest


def _media_type(manifest: dict[str, Any], given: str | None) -> str:
    """The manifest's own mediaType wins; ECR refuses a request that contradicts it."""
    inside = manifest.get("mediaType")
    if given is not None and isinstance(inside, str) and inside != given:
        raise params.invalid(
            "imageManifestMediaType", f"'{given}' differs from the manifest's '{inside}'"
        )
    if given is not None:
        return given
    return inside if isinstance(inside, str) else DOCKER_MANIFEST


def _check_references(repository: Repository, manifest: dict[str, Any]) -> None:
    if isinstance(manifest.get("manifests"), list):
        wanted = _digests(manifest["manifests"])
        missing = [d for d in wanted if d not in repository.images]
        if missing:
            raise EcrError(
                "ReferencedImagesNotFoundException",
                f"Images referenced by the manifest list are not in the repository: {missing}",
            )
        return
    wanted = _digests([manifest.get("config"), *manifest.get("layers", [])])
    missing = [d for d in wanted if d not in repository.layers]
    if missing:
        raise EcrError(
            "LayersNotFoundException",
            f"Layers referenced by the manifest are not in the repository "
            f"'{repository.name}': {missing}",
        )


def _digests(descriptors: list[Any]) -> list[str]:
    digests = [d.get("digest") if isinstance(d, dict) else None for d in descriptors]
    if not all(is_digest(d) for d in digests):
        raise params.invalid("imageManifest", "every descriptor needs a sha256 digest")
    return [str(d) for d in digests]


def _check_tag(repository: Repository, digest: str, tag: str | None) -> None:
    current = repository.tags.get(tag) if tag is not None else None
    if (tag is None and digest in repository.images) or current == digest:
        raise EcrError(
            "ImageAlreadyExistsException",
            f"Image with digest '{digest}' and tag '{tag}' already exists in the "
            f"repository with name '{repository.name}' in registry with id '{REGISTRY_ID}'",
        )
    if current is not None and repository.tag_mutability.startswith("IMMUTABLE"):
        raise EcrError(
            "ImageTagAlreadyExistsException",
            f"The image tag '{tag}' already exists in the repository '{repository.name}' "
            f"and cannot be overwritten because the repository is immutable",
        )


def _record_layer_media_types(repository: Repository, manifest: dict[str, Any]) -> None:
    """BatchCheckLayerAvailability reports a layer's media type once a manifest names it."""
    for layer in manifest.get("layers", []):
        stored = repository.layers.get(layer.get("digest", ""))
        if stored is not None and isinstance(layer.get("mediaType"), str):
            repository.layers[layer["digest"]] = StoredLayer(stored.size, layer["mediaType"])


def _resolve(repository: Repository, image_id: JsonObject) -> str | JsonObject:
    """Returns the image digest an imageId names, or the failure to report for it."""
    digest, tag = image_id.get("imageDigest"), image_id.get("imageTag")
    if digest is None and tag is None:
        return {"failureCode": "MissingDigestAndTag", "failureReason": "Missing digest and tag"}
    if digest is not None and not is_digest(digest):
        return {"failureCode": "InvalidImageDigest", "failureReason": "Invalid image digest"}
    resolved = repository.tags.get(tag) if tag is not None else digest
    if tag is not None and digest is not None and resolved not in (None, digest):
        return {
            "failureCode": "ImageTagDoesNotMatchDigest",
            "failureReason": "Image tag does not match digest",
        }
    if not isinstance(resolved, str) or resolved not in repository.images:
        return {"failureCode": "ImageNotFound", "failureReason": "Requested image not found"}
    return resolved


def _image(repository: Repository, digest: str, tag: object) -> JsonObject:
    image_id: JsonObject = {"imageDigest": digest}
    if isinstance(tag, str):
        image_id["imageTag"] = tag
    stored = repository.images[digest]
    return {
        "registryId": REGISTRY_ID,
        "repositoryName": repository.name,
        "imageId": image_id,
        "imageManifest": stored.manifest,
        "imageManifestMediaType": stored.media_type,
    }
