"""``uploaderd push --image`` through ECR's API, to the embedded ECR-compatible registry."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RegistryProcess, ecr_client, push, start_registry
from tests.helpers import digest_of
from tests.imagefixtures import write_buildx_layout
from tests.oci.conftest import write_layout

MIB = 1024 * 1024
pytestmark = pytest.mark.e2e


def batch_get_image(registry: RegistryProcess, repository: str, tag: str) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        async with ecr_client(registry.url) as client:
            answer = await client.batch_get_image(
                repositoryName=repository, imageIds=[{"imageTag": tag}]
            )
            return dict(answer)

    return asyncio.run(get())


def test_image_pushed_through_ecr_api_reads_back(
    ecr_registry: RegistryProcess, tmp_path: Path
) -> None:
    registry = ecr_registry
    layout = write_layout(tmp_path / "layout", [6 * MIB, 2000], tag="release-1")

    run = push(registry.url, "team/app", options=("--image", str(layout.root)))
    again = push(registry.url, "team/app", options=("--image", str(layout.root)))

    assert run.returncode == 0, run.stderr
    assert f"tagged team/app:release-1 {layout.manifest_digest}" in run.stderr
    answer = batch_get_image(registry, "team/app", "release-1")
    assert answer["failures"] == []
    image = answer["images"][0]
    assert image["imageManifest"].encode() == layout.manifest
    assert image["imageId"]["imageDigest"] == layout.manifest_digest
    manifest = json.loads(image["imageManifest"])
    for descriptor in (manifest["config"], *manifest["layers"]):
        fetched = registry.fetch_layer("team/app", descriptor["digest"])
        assert digest_of(fetched) == descriptor["digest"]
    assert again.returncode == 0, again.stderr
    assert {r["outcome"] for r in again.records} == {"exists"}


def test_failed_blob_leaves_nothing_tagged(tmp_path: Path) -> None:
    server = start_registry(
        tmp_path / "storage", "--auto-create-repositories", "--fault", "server-error-every=1"
    )
    try:
        layout = write_layout(tmp_path / "layout", [1000], tag="v1")
        run = push(
            server.url,
            "team/app",
            options=("--image", str(layout.root), "--max-attempts", "1"),
            env={"AWS_MAX_ATTEMPTS": "1"},
        )
        assert run.returncode == 1
        assert "team/app:v1 was not tagged" in run.stderr
        assert server.stats()["requests"].get("PutImage", 0) == 0
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def get_images(registry: RegistryProcess, repository: str, *ids: dict[str, str]) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        async with ecr_client(registry.url) as client:
            answer = await client.batch_get_image(repositoryName=repository, imageIds=list(ids))
            return dict(answer)

    return asyncio.run(get())


def test_buildx_layout_through_ecr_api_by_tag_and_each_child_by_digest(
    ecr_registry: RegistryProcess, tmp_path: Path
) -> None:
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")

    run = push(ecr_registry.url, "team/app", options=("--image", str(layout.root)))

    assert run.returncode == 0, run.stderr
    by_tag = get_images(ecr_registry, "team/app", {"imageTag": "v1"})
    assert by_tag["failures"] == []
    assert by_tag["images"][0]["imageManifest"].encode() == layout.index
    assert by_tag["images"][0]["imageId"]["imageDigest"] == layout.index_digest
    children = [*layout.platforms.values(), *layout.attestations.values(), layout.signature]
    by_digest = get_images(
        ecr_registry, "team/app", *({"imageDigest": digest_of(m)} for m in children)
    )
    assert by_digest["failures"] == []
    assert [i["imageManifest"].encode() for i in by_digest["images"]] == children
    base = ecr_registry.fetch_layer("team/app", digest_of(layout.base_layer))
    assert base == layout.base_layer
    completed = ecr_registry.stats()["completed"]
    assert completed[f"team/app@{digest_of(layout.base_layer)}"] == 1  # shared, uploaded once


def test_an_index_whose_child_is_refused_leaves_no_tag(tmp_path: Path) -> None:
    # The second PutImage is the arm64 manifest; the index would come after it.
    server = start_registry(
        tmp_path / "storage", "--auto-create-repositories", "--fault", "refuse-put-image-every=2"
    )
    try:
        layout = write_buildx_layout(tmp_path / "layout", tag="v1")
        run = push(server.url, "team/app", options=("--image", str(layout.root)))
        assert run.returncode == 1
        assert "InvalidParameterException" in run.stderr, run.stderr
        answer = get_images(
            server, "team/app", {"imageTag": "v1"}, {"imageDigest": layout.index_digest}
        )
        assert answer["images"] == []
        assert {f["failureCode"] for f in answer["failures"]} == {"ImageNotFound"}
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
