"""Image manifests: PutImage, BatchGetImage and DescribeImages.

PutImage is what makes pushed layers an image, so it refuses a manifest whose config
or layers are not in the repository: a client that forgot to upload one learns it here,
as it would from ECR, rather than when someone pulls.  An index (OCI image index or
Docker manifest list) needs its child manifests instead.  An OCI 1.1 artifact (an
``artifactType``, an empty config, a ``subject``) is a manifest like any other: its
blobs must be there, its subject need not be (ECR stores referrers before subjects).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from . import params
from .catalog import Catalog, Repository, StoredImage, StoredLayer, is_digest
from .protocol import ApiCall, EcrError, JsonObject

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
#: ECR's ImageTag shape: 1 to 300 characters.
MAX_TAG_LENGTH = 300
#: DescribeImages answers up to 100 images without maxResults, and maxResults is 1..1000.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
TAG_STATUSES = frozenset({"TAGGED", "UNTAGGED", "ANY"})


class ImageOperations:
    def __init__(self, catalog: Catalog, *, public: bool = False) -> None:
        self._catalog = catalog
        self._public = public

    def _repository(self, call: ApiCall) -> Repository:
        return self._catalog.get(call.body.get("repositoryName"), call.body.get("registryId"))

    async def put_image(self, call: ApiCall) -> JsonObject:
        repository = self._repository(call)
        text = params.string(call.body, "imageManifest")
        tag = _tag(call.body)
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
        if digest not in repository.images:  # a new tag on a known image keeps its push time
            repository.images[digest] = StoredImage(text, media_type, time.time())
        if tag is not None:
            repository.tags[tag] = digest
        _record_layer_media_types(repository, manifest)
        self._catalog.save()
        return {"image": _image(repository, digest, tag)}

    async def batch_get_image(self, call: ApiCall) -> JsonObject:
        """Each image as it was put.

        ECR may convert a manifest whose type ``acceptedMediaTypes`` lacks (an index to
        one platform's manifest, say); this registry converts nothing, so it checks the
        member's shape only.  A client asking for the types it pushed sees no difference.
        """
        repository = self._repository(call)
        images: list[JsonObject] = []
        failures: list[JsonObject] = []
        if "acceptedMediaTypes" in call.body:
            params.string_list(call.body, "acceptedMediaTypes", low=1, high=100)
        for image_id in params.object_list(call.body, "imageIds", low=1, high=100):
            found = _resolve(repository, image_id)
            if isinstance(found, str):
                images.append(_image(repository, found, image_id.get("imageTag")))
            else:
                failures.append({"imageId": image_id, **found})
        return {"images": images, "failures": failures}

    async def describe_images(self, call: ApiCall) -> JsonObject:
        """The images asked for by id (each must exist), or a page of the filtered list.

        The list is in digest order and ``nextToken`` names the last digest shown, so
        images pushed between pages neither repeat nor shift the rest.
        """
        repository = self._repository(call)
        if "imageIds" in call.body:
            if "maxResults" in call.body or "nextToken" in call.body:
                raise params.invalid("maxResults", "cannot be used with imageIds")
            ids = params.object_list(call.body, "imageIds", low=1, high=100)
            digests = list(dict.fromkeys(_found(repository, image_id) for image_id in ids))
            return {"imageDetails": [self._detail(repository, d) for d in digests]}
        status = params.member_choice(call.body, "filter", "tagStatus", TAG_STATUSES, "ANY")
        tagged = set(repository.tags.values())
        after = params.next_token(call.body)
        if after is not None and not is_digest(after):
            raise params.invalid("nextToken", "not a token this registry gave")
        remaining = sorted(
            d
            for d in repository.images
            if (status == "ANY" or (d in tagged) == (status == "TAGGED"))
            and (after is None or d > after)
        )
        page = params.page_size(call.body, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        answer: JsonObject = {
            "imageDetails": [self._detail(repository, d) for d in remaining[:page]]
        }
        if len(remaining) > page:
            answer["nextToken"] = params.token_for(remaining[page - 1])
        return answer

    def _detail(self, repository: Repository, digest: str) -> JsonObject:
        """ECR's ImageDetail (ECR Public's has no subjectManifestDigest)."""
        stored = repository.images[digest]
        manifest = json.loads(stored.manifest)
        detail: JsonObject = {
            "registryId": repository.registry_id,
            "repositoryName": repository.name,
            "imageDigest": digest,
            "imageSizeInBytes": _size(repository, manifest),
            "imagePushedAt": stored.pushed_at,
            "imageManifestMediaType": stored.media_type,
        }
        tags = sorted(t for t, d in repository.tags.items() if d == digest)
        if tags:  # ECR leaves the member out for an untagged image
            detail["imageTags"] = tags
        artifact = _artifact_media_type(manifest)
        if artifact is not None:
            detail["artifactMediaType"] = artifact
        subject = manifest.get("subject")
        if not self._public and isinstance(subject, dict) and is_digest(subject.get("digest")):
            detail["subjectManifestDigest"] = subject["digest"]
        return detail


def _tag(body: JsonObject) -> str | None:
    tag = body.get("imageTag")
    if tag is not None and (not isinstance(tag, str) or not 1 <= len(tag) <= MAX_TAG_LENGTH):
        raise params.invalid("imageTag", f"Member must have length between 1 and {MAX_TAG_LENGTH}")
    return tag


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
    if "manifests" in manifest:
        wanted = _digests(_descriptors(manifest, "manifests"))
        missing = [d for d in wanted if d not in repository.images]
        if missing:
            raise EcrError(
                "ReferencedImagesNotFoundException",
                f"Images referenced by the manifest list are not in the repository: {missing}",
            )
        return
    wanted = _digests([manifest.get("config"), *_descriptors(manifest, "layers")])
    missing = [d for d in wanted if d not in repository.layers]
    if missing:
        raise EcrError(
            "LayersNotFoundException",
            f"Layers referenced by the manifest are not in the repository "
            f"'{repository.name}': {missing}",
        )


def _descriptors(manifest: dict[str, Any], member: str) -> list[Any]:
    value = manifest.get(member, [])
    if not isinstance(value, list):
        raise params.invalid("imageManifest", f"'{member}' must be a list of descriptors")
    return value


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
            f"repository with name '{repository.name}' in registry with id "
            f"'{repository.registry_id}'",
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


def _found(repository: Repository, image_id: JsonObject) -> str:
    """DescribeImages' resolution: an id that names no image fails the whole call."""
    found = _resolve(repository, image_id)
    if isinstance(found, str):
        return found
    if found["failureCode"] != "ImageNotFound":
        raise params.invalid("imageIds", found["failureReason"])
    raise EcrError(
        "ImageNotFoundException",
        f"The image with imageId {{imageDigest:'{image_id.get('imageDigest')}', "
        f"imageTag:'{image_id.get('imageTag')}'}} does not exist within the repository "
        f"with name '{repository.name}' in the registry with id '{repository.registry_id}'",
    )


def _size(repository: Repository, manifest: dict[str, Any]) -> int:
    """imageSizeInBytes: the manifest's blobs summed where stored; an index, its largest child."""
    if "manifests" in manifest:
        children = [
            json.loads(repository.images[d].manifest)
            for d in _digests(manifest["manifests"])
            if d in repository.images
        ]
        return max((_size(repository, child) for child in children), default=0)
    blobs = _digests([manifest["config"], *manifest.get("layers", [])])
    return sum(repository.layers[d].size for d in blobs if d in repository.layers)


def _artifact_media_type(manifest: dict[str, Any]) -> str | None:
    """An artifact's artifactType, else the config's media type (what ECR reports)."""
    artifact = manifest.get("artifactType")
    if isinstance(artifact, str):
        return artifact
    config = manifest.get("config")
    if isinstance(config, dict) and isinstance(config.get("mediaType"), str):
        return str(config["mediaType"])
    return None


def _image(repository: Repository, digest: str, tag: object) -> JsonObject:
    image_id: JsonObject = {"imageDigest": digest}
    if isinstance(tag, str):
        image_id["imageTag"] = tag
    stored = repository.images[digest]
    return {
        "registryId": repository.registry_id,
        "repositoryName": repository.name,
        "imageId": image_id,
        "imageManifest": stored.manifest,
        "imageManifestMediaType": stored.media_type,
    }
