"""ECR's manifest rules in the local registry: PutImage, BatchGetImage, DescribeImages.

Every call goes through a real aiobotocore client over loopback, so botocore's
parsing (error names, ImageDetail members, timestamps) is part of what is checked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError
from types_aiobotocore_ecr import ECRClient

from tests.helpers import digest_of
from uploaderd.localregistry import LocalRegistry
from uploaderd.testing import ecr_client, running_local_registry

REPO = "team/app"
NO_RETRIES = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[LocalRegistry]:
    async with running_local_registry(tmp_path / "registry") as registry:
        yield registry


@pytest.fixture
async def ecr(registry: LocalRegistry) -> AsyncIterator[ECRClient]:
    async with ecr_client(registry.url, NO_RETRIES) as client:
        await client.create_repository(repositoryName=REPO)
        yield client


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


async def push_blob(ecr: ECRClient, data: bytes, repository: str = REPO) -> dict[str, Any]:
    """One blob through the layer API, unless there already; its descriptor (no media type)."""
    digest = digest_of(data)
    found = await ecr.batch_check_layer_availability(
        repositoryName=repository, layerDigests=[digest]
    )
    if found["layers"]:
        return {"digest": digest, "size": len(data)}
    upload_id = (await ecr.initiate_layer_upload(repositoryName=repository))["uploadId"]
    await ecr.upload_layer_part(
        repositoryName=repository,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=len(data) - 1,
        layerPartBlob=data,
    )
    await ecr.complete_layer_upload(
        repositoryName=repository, uploadId=upload_id, layerDigests=[digest]
    )
    return {"digest": digest, "size": len(data)}


def image_manifest(config: dict[str, Any], *layers: dict[str, Any], docker: bool = False) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG, **config},
            "layers": [
                {"mediaType": DOCKER_LAYER if docker else OCI_LAYER, **layer} for layer in layers
            ],
        }
    )


def index_of(*children: str, docker: bool = False) -> str:
    child_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST if docker else OCI_INDEX,
            "manifests": [
                {
                    "mediaType": child_type,
                    "digest": digest_of(child.encode()),
                    "size": len(child.encode()),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for child, arch in zip(children, ("amd64", "arm64", "s390x"), strict=False)
            ],
        }
    )


async def pushed_image(ecr: ECRClient, layer: bytes, *, docker: bool = False) -> str:
    """An image whose config and one layer are in the repository; its manifest."""
    config = await push_blob(ecr, b'{"architecture": "amd64", "os": "linux"}')
    return image_manifest(config, await push_blob(ecr, layer), docker=docker)


async def describe(ecr: ECRClient, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """DescribeImages' details by digest."""
    answer = await ecr.describe_images(repositoryName=REPO, **kwargs)
    return {d["imageDigest"]: dict(d) for d in answer["imageDetails"]}


async def tag_target(ecr: ECRClient, tag: str) -> str:
    got = await ecr.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": tag}])
    assert not got["failures"], got["failures"]
    return got["images"][0]["imageId"]["imageDigest"]


async def test_put_by_digest_stores_untagged_then_a_tag_points_at_it(ecr: ECRClient) -> None:
    manifest = await pushed_image(ecr, b"layer one")
    digest = digest_of(manifest.encode())

    put = await ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageDigest=digest)
    assert put["image"]["imageId"] == {"imageDigest": digest}
    assert "imageTags" not in (await describe(ecr))[digest]
    untagged = await describe(ecr, filter={"tagStatus": "UNTAGGED"})
    assert list(untagged) == [digest]
    assert await describe(ecr, filter={"tagStatus": "TAGGED"}) == {}

    await ecr.put_image(
        repositoryName=REPO, imageManifest=manifest, imageDigest=digest, imageTag="v1"
    )
    assert await tag_target(ecr, "v1") == digest
    assert (await describe(ecr))[digest]["imageTags"] == ["v1"]
    assert list(await describe(ecr, filter={"tagStatus": "TAGGED"})) == [digest]
    with pytest.raises(ClientError) as again:
        await ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageDigest=digest)
    assert error_code(again) == "ImageAlreadyExistsException"


async def test_a_wrong_image_digest_is_refused_and_nothing_is_stored(ecr: ECRClient) -> None:
    manifest = await pushed_image(ecr, b"layer")
    with pytest.raises(ClientError) as wrong:
        await ecr.put_image(
            repositoryName=REPO,
            imageManifest=manifest,
            imageDigest=digest_of(b"another manifest"),
            imageTag="v1",
        )
    assert error_code(wrong) == "ImageDigestDoesNotMatchException"
    assert await describe(ecr) == {}


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
async def test_an_index_needs_its_child_manifests(ecr: ECRClient, docker: bool) -> None:
    amd64 = await pushed_image(ecr, b"amd64 layer", docker=docker)
    arm64 = await pushed_image(ecr, b"arm64 layer", docker=docker)
    index = index_of(amd64, arm64, docker=docker)
    await ecr.put_image(repositoryName=REPO, imageManifest=amd64)

    with pytest.raises(ClientError) as missing:
        await ecr.put_image(repositoryName=REPO, imageManifest=index, imageTag="multi")
    assert error_code(missing) == "ReferencedImagesNotFoundException"
    assert digest_of(arm64.encode()) in str(missing.value)

    await ecr.put_image(repositoryName=REPO, imageManifest=arm64)
    put = await ecr.put_image(repositoryName=REPO, imageManifest=index, imageTag="multi")
    assert put["image"]["imageManifestMediaType"] == (DOCKER_LIST if docker else OCI_INDEX)
    got = await ecr.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": "multi"}])
    assert got["images"][0]["imageManifest"] == index


async def test_an_oci_artifact_is_accepted_once_its_blobs_are_there(ecr: ECRClient) -> None:
    """A cosign-style signature: artifactType, the empty config, a subject never pushed."""
    subject = digest_of(b"an image this repository does not hold")
    payload = b'{"critical": {"identity": {}}}'
    empty = {"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2}
    layer = {"mediaType": SIGNATURE, "digest": digest_of(payload), "size": len(payload)}
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SIGNATURE,
            "config": empty,
            "layers": [layer],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 100},
        }
    )
    await push_blob(ecr, payload)
    with pytest.raises(ClientError) as no_config:
        await ecr.put_image(repositoryName=REPO, imageManifest=artifact)
    assert error_code(no_config) == "LayersNotFoundException"

    await push_blob(ecr, b"{}")
    put = await ecr.put_image(repositoryName=REPO, imageManifest=artifact)
    digest = put["image"]["imageId"]["imageDigest"]
    detail = (await describe(ecr))[digest]
    assert detail["artifactMediaType"] == SIGNATURE
    assert detail["subjectManifestDigest"] == subject
    assert detail["imageSizeInBytes"] == 2 + len(payload)


async def test_a_tag_moves_in_a_mutable_repository(ecr: ECRClient) -> None:
    first = await pushed_image(ecr, b"first")
    second = await pushed_image(ecr, b"second")
    await ecr.put_image(repositoryName=REPO, imageManifest=first, imageTag="latest")
    await ecr.put_image(repositoryName=REPO, imageManifest=second, imageTag="latest")

    assert await tag_target(ecr, "latest") == digest_of(second.encode())
    details = await describe(ecr)
    assert "imageTags" not in details[digest_of(first.encode())]  # still there, untagged
    assert details[digest_of(second.encode())]["imageTags"] == ["latest"]


async def test_a_tag_cannot_move_in_an_immutable_repository(ecr: ECRClient) -> None:
    await ecr.create_repository(repositoryName="team/frozen", imageTagMutability="IMMUTABLE")
    config = await push_blob(ecr, b"{}", "team/frozen")
    first = image_manifest(config, await push_blob(ecr, b"first", "team/frozen"))
    second = image_manifest(config, await push_blob(ecr, b"second", "team/frozen"))
    await ecr.put_image(repositoryName="team/frozen", imageManifest=first, imageTag="v1")

    with pytest.raises(ClientError) as moved:
        await ecr.put_image(repositoryName="team/frozen", imageManifest=second, imageTag="v1")
    assert error_code(moved) == "ImageTagAlreadyExistsException"
    got = await ecr.batch_get_image(repositoryName="team/frozen", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"] == first
    # Another tag for the other image is fine: only moving a tag is refused.
    await ecr.put_image(repositoryName="team/frozen", imageManifest=second, imageTag="v2")


async def test_image_tags_are_1_to_300_characters(registry: LocalRegistry, ecr: ECRClient) -> None:
    manifest = await pushed_image(ecr, b"layer")
    with pytest.raises(ClientError) as long_tag:
        await ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="t" * 301)
    assert error_code(long_tag) == "InvalidParameterException"
    assert "imageTag" in str(long_tag.value)

    # botocore refuses an empty tag before sending; a client without its checks must
    # still meet the registry's.
    unchecked = AioConfig(parameter_validation=False, retries={"total_max_attempts": 1})
    async with ecr_client(registry.url, unchecked) as raw:
        with pytest.raises(ClientError) as empty_tag:
            await raw.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="")
    assert error_code(empty_tag) == "InvalidParameterException"
    assert await describe(ecr) == {}

    await ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="t" * 300)
    assert await tag_target(ecr, "t" * 300) == digest_of(manifest.encode())


async def test_batch_get_image_by_tag_and_by_digest(ecr: ECRClient) -> None:
    manifest = await pushed_image(ecr, b"layer", docker=True)
    digest = digest_of(manifest.encode())
    await ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    other = digest_of(b"not an image here")

    got = await ecr.batch_get_image(
        repositoryName=REPO,
        imageIds=[
            {"imageTag": "v1"},
            {"imageDigest": digest},
            {"imageTag": "v1", "imageDigest": other},
            {"imageDigest": other},
        ],
        acceptedMediaTypes=[DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX],
    )
    assert [i["imageId"] for i in got["images"]] == [
        {"imageDigest": digest, "imageTag": "v1"},
        {"imageDigest": digest},
    ]
    assert {i["imageManifest"] for i in got["images"]} == {manifest}
    assert {i["imageManifestMediaType"] for i in got["images"]} == {DOCKER_MANIFEST}
    assert [f["failureCode"] for f in got["failures"]] == [
        "ImageTagDoesNotMatchDigest",
        "ImageNotFound",
    ]


async def test_describe_images_reports_each_image(ecr: ECRClient) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    amd64 = await pushed_image(ecr, b"a" * 1000)
    arm64 = await pushed_image(ecr, b"b" * 3000)
    await ecr.put_image(repositoryName=REPO, imageManifest=amd64, imageTag="amd64")
    await ecr.put_image(repositoryName=REPO, imageManifest=amd64, imageTag="also-amd64")
    await ecr.put_image(repositoryName=REPO, imageManifest=arm64)
    index = index_of(amd64, arm64)
    await ecr.put_image(repositoryName=REPO, imageManifest=index, imageTag="latest")
    config_size = len(b'{"architecture": "amd64", "os": "linux"}')

    details = await describe(ecr)
    one = details[digest_of(amd64.encode())]
    assert one["registryId"] == "000000000000"
    assert one["repositoryName"] == REPO
    assert one["imageTags"] == ["also-amd64", "amd64"]
    assert one["imageSizeInBytes"] == config_size + 1000
    assert one["imageManifestMediaType"] == OCI_MANIFEST
    assert one["artifactMediaType"] == OCI_CONFIG
    assert before <= one["imagePushedAt"] <= datetime.now(UTC)
    assert "imageTags" not in details[digest_of(arm64.encode())]
    # An index's size is its largest child's, as ECR's model documents.
    assert details[digest_of(index.encode())]["imageSizeInBytes"] == config_size + 3000
    assert details[digest_of(index.encode())]["imageManifestMediaType"] == OCI_INDEX

    by_id = await ecr.describe_images(
        repositoryName=REPO, imageIds=[{"imageTag": "amd64"}, {"imageTag": "latest"}]
    )
    assert [d["imageDigest"] for d in by_id["imageDetails"]] == [
        digest_of(amd64.encode()),
        digest_of(index.encode()),
    ]


async def test_describe_images_refuses_an_unknown_image(ecr: ECRClient) -> None:
    manifest = await pushed_image(ecr, b"layer")
    await ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    for image_id in ({"imageTag": "v2"}, {"imageDigest": digest_of(b"absent")}):
        with pytest.raises(ClientError) as unknown:
            await ecr.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "v1"}, image_id])
        assert error_code(unknown) == "ImageNotFoundException"
        assert REPO in str(unknown.value)
    with pytest.raises(ClientError) as both:
        await ecr.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "v1"}], maxResults=5)
    assert error_code(both) == "InvalidParameterException"


async def test_describe_images_pages_through_every_image_once(ecr: ECRClient) -> None:
    config = await push_blob(ecr, b"{}")
    digests = set()
    for n in range(7):
        manifest = image_manifest(config, await push_blob(ecr, f"layer {n}".encode()))
        await ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag=f"v{n}")
        digests.add(digest_of(manifest.encode()))

    pages = []
    answer = await ecr.describe_images(repositoryName=REPO, maxResults=3)
    pages.append(answer["imageDetails"])
    while "nextToken" in answer:
        answer = await ecr.describe_images(
            repositoryName=REPO, maxResults=3, nextToken=answer["nextToken"]
        )
        pages.append(answer["imageDetails"])
    assert [len(page) for page in pages] == [3, 3, 1]
    seen = [d["imageDigest"] for page in pages for d in page]
    assert len(seen) == len(set(seen))
    assert set(seen) == digests

    paginator = ecr.get_paginator("describe_images")
    pages_seen = [
        page
        async for page in paginator.paginate(repositoryName=REPO, PaginationConfig={"PageSize": 2})
    ]
    assert {d["imageDigest"] for page in pages_seen for d in page["imageDetails"]} == digests
    assert len(pages_seen) == 4

    with pytest.raises(ClientError) as bad_token:
        await ecr.describe_images(repositoryName=REPO, nextToken="not-a-token")
    assert error_code(bad_token) == "InvalidParameterException"
