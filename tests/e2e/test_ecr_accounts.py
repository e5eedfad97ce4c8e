"""A central account's registry and ECR Public, through the real ``uploaderd push`` process.

The local registry serves several account ids (or speaks ECR Public) and counts
each operation's calls by the ``registryId`` they carried, so what the client
sent is checked server-side: every request named the central account, the
bytes arrived, and a layer too big for ECR Public never cost a request.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.conftest import PushRun, RegistryProcess, push, running_registry, uploaderd_env
from tests.imagefixtures import write_buildx_layout
from uploaderd.sizes import MIB
from uploaderd.testing import ecr_client

DEFAULT_ACCOUNT = "000000000000"
CENTRAL_ACCOUNT = "123456789012"
UPLOAD_OPERATIONS = {
    "BatchCheckLayerAvailability",
    "InitiateLayerUpload",
    "UploadLayerPart",
    "CompleteLayerUpload",
}


def request_log(registry: RegistryProcess) -> dict[tuple[str, str | None], int]:
    """(operation, registryId or None) -> calls, as the registry counted them."""
    return {
        (entry["operation"], entry["registryId"]): entry["count"]
        for entry in registry.stats()["request_log"]
    }


def reset_stats(registry: RegistryProcess) -> None:
    request = urllib.request.Request(f"{registry.url}/_stats/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def create_repository(registry: RegistryProcess, name: str, registry_id: str) -> None:
    async def create() -> None:
        async with ecr_client(registry.url) as client:
            await client.create_repository(repositoryName=name, registryId=registry_id)

    asyncio.run(create())


def fetch_layer(registry: RegistryProcess, repository: str, digest: str, registry_id: str) -> bytes:
    """The stored bytes, as a user of that account gets them: GetDownloadUrlForLayer, then GET."""

    async def download_url() -> str:
        async with ecr_client(registry.url) as client:
            answer = await client.get_download_url_for_layer(
                registryId=registry_id, repositoryName=repository, layerDigest=digest
            )
            return answer["downloadUrl"]

    with urllib.request.urlopen(asyncio.run(download_url()), timeout=30) as answer:
        data: bytes = answer.read()
        return data


def write_layer(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def by_file(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(record["file"]).name: record for record in records}


def test_every_request_names_the_central_account(tmp_path: Path) -> None:
    big = write_layer(tmp_path / "big.tar", 12 * MIB + 5)  # two parts
    small = write_layer(tmp_path / "small.tar", 1000)
    served = ("--registry-id", DEFAULT_ACCOUNT, "--registry-id", CENTRAL_ACCOUNT)
    with running_registry(tmp_path / "registry", *served) as registry:
        create_repository(registry, "team/app", CENTRAL_ACCOUNT)
        reset_stats(registry)

        run = push(
            registry.url,
            "team/app",
            tmp_path / "big.tar",
            tmp_path / "small.tar",
            options=("--registry-id", CENTRAL_ACCOUNT),
        )

        assert run.returncode == 0, run.stderr
        log = request_log(registry)
        assert {registry_id for _, registry_id in log} == {CENTRAL_ACCOUNT}, log
        assert {operation for operation, _ in log} >= UPLOAD_OPERATIONS, log
        assert log[("UploadLayerPart", CENTRAL_ACCOUNT)] == 3
        records = by_file(run.records)
        assert [records[name]["outcome"] for name in ("big.tar", "small.tar")] == [
            "uploaded",
            "uploaded",
        ]
        for name, data in (("big.tar", big), ("small.tar", small)):
            digest = records[name]["digest"]
            assert fetch_layer(registry, "team/app", digest, CENTRAL_ACCOUNT) == data


def test_a_repository_missing_in_the_central_account_names_both(tmp_path: Path) -> None:
    write_layer(tmp_path / "layer.tar", 1000)
    served = ("--registry-id", DEFAULT_ACCOUNT, "--registry-id", CENTRAL_ACCOUNT)
    with running_registry(tmp_path / "registry", *served) as registry:
        registry.create_repository("team/app")  # in the caller's own account only
        reset_stats(registry)

        run = push(
            registry.url,
            "team/app",
            tmp_path / "layer.tar",
            options=("--registry-id", CENTRAL_ACCOUNT),
        )

        assert run.returncode == 1, run.stderr
        [record] = run.records
        assert record["outcome"] == "failed"
        assert record["error"]["code"] == "RepositoryNotFoundException"
        message = record["error"]["message"]
        assert "'team/app'" in message, message
        assert f"registry {CENTRAL_ACCOUNT}" in message, message
        assert f"create it in account {CENTRAL_ACCOUNT}" in message, message
        assert "check the registry id" in message, message
        assert {registry_id for _, registry_id in request_log(registry)} == {CENTRAL_ACCOUNT}


def test_a_bad_registry_id_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    write_layer(tmp_path / "layer.tar", 1000)
    with running_registry(tmp_path / "registry", "--auto-create-repositories") as registry:
        run = push(
            registry.url,
            "team/app",
            tmp_path / "layer.tar",
            env={"UPLOADERD_REGISTRY_ID": "12345678901"},
        )

        assert run.returncode == 2
        assert "UPLOADERD_REGISTRY_ID='12345678901'" in run.stderr
        assert "12 digits" in run.stderr
        assert registry.stats()["requests"] == {}


def push_public(registry: RegistryProcess, *files: Path, region: str = "eu-west-1") -> PushRun:
    """``uploaderd push --ecr-public``, reaching the registry the AWS way, by its variable."""
    command = [sys.executable, "-m", "uploaderd", "push", "--ecr-public", "--json"]
    command += ["--repository", "team/app", *map(str, files)]
    # The host's region is another one: ECR Public's API is only in us-east-1.
    env = uploaderd_env(AWS_ENDPOINT_URL_ECR_PUBLIC=registry.url, AWS_REGION=region)
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    return PushRun(done.returncode, done.stdout, done.stderr)


def test_a_layer_goes_to_ecr_public(tmp_path: Path) -> None:
    data = write_layer(tmp_path / "layer.tar", 11 * MIB)
    with running_registry(tmp_path / "registry", "--public", "--auto-create-repositories") as (
        registry
    ):
        run = push_public(registry, tmp_path / "layer.tar")

        assert run.returncode == 0, run.stderr
        [record] = run.records
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        assert (record["outcome"], record["digest"]) == ("uploaded", digest)
        assert registry.stats()["completed"] == {f"team/app@{digest}": 1}
        assert {operation for operation, _ in request_log(registry)} >= UPLOAD_OPERATIONS

        async def availability() -> str:
            async with ecr_client(registry.url, service="ecr-public") as client:
                answer = await client.batch_check_layer_availability(
                    repositoryName="team/app", layerDigests=[digest]
                )
                return str(answer["layers"][0]["layerAvailability"])

        assert asyncio.run(availability()) == "AVAILABLE"


def test_a_layer_over_ecr_publics_limit_is_refused_before_any_request(tmp_path: Path) -> None:
    huge = tmp_path / "huge.tar"
    with huge.open("wb"):
        pass
    os.truncate(huge, 10_000 * MIB + 1)  # sparse: no 10 GB written
    with running_registry(tmp_path / "registry", "--public", "--auto-create-repositories") as (
        registry
    ):
        run = push_public(registry, huge)

        assert run.returncode == 1, run.stderr
        [record] = run.records
        assert record["file"] == str(huge)
        assert record["error"]["code"] == "LayerTooLarge"
        message = record["error"]["message"]
        assert f"{10_000 * MIB + 1:,} bytes" in message, message
        assert "ECR Public's limit" in message, message
        assert "10,000 MiB" in message, message
        assert not set(registry.stats()["requests"]) & UPLOAD_OPERATIONS


def describe_images(
    registry: RegistryProcess, service: str = "ecr", **extra: str
) -> list[dict[str, Any]]:
    async def describe() -> list[dict[str, Any]]:
        async with ecr_client(registry.url, service=service) as client:
            answer = await client.describe_images(repositoryName="team/app", **extra)
            return list(answer["imageDetails"])

    return asyncio.run(describe())


def test_a_multi_platform_image_goes_to_the_central_account(tmp_path: Path) -> None:
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")
    served = ("--registry-id", DEFAULT_ACCOUNT, "--registry-id", CENTRAL_ACCOUNT)
    with running_registry(tmp_path / "registry", *served) as registry:
        create_repository(registry, "team/app", CENTRAL_ACCOUNT)
        reset_stats(registry)

        run = push(
            registry.url,
            "team/app",
            options=("--image", str(layout.root), "--registry-id", CENTRAL_ACCOUNT),
        )

        assert run.returncode == 0, run.stderr
        log = request_log(registry)
        assert {registry_id for _, registry_id in log} == {CENTRAL_ACCOUNT}, log
        assert log[("PutImage", CENTRAL_ACCOUNT)] >= 6  # 4 children, the signature, the tag
        images = describe_images(registry, registryId=CENTRAL_ACCOUNT)
        tagged = {i["imageDigest"]: i.get("imageTags", []) for i in images}
        assert tagged[layout.index_digest] == ["v1"]
        assert len(tagged) == 6  # the index, two platforms, two attestations, the signature


def test_an_image_goes_to_ecr_public(tmp_path: Path) -> None:
    layout = write_buildx_layout(tmp_path / "layout", tag="v1")
    with running_registry(tmp_path / "registry", "--public", "--auto-create-repositories") as (
        registry
    ):
        command = [sys.executable, "-m", "uploaderd", "push", "--ecr-public"]
        command += ["--repository", "team/app", "--image", str(layout.root)]
        env = uploaderd_env(AWS_ENDPOINT_URL_ECR_PUBLIC=registry.url)
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=120, check=False
        )

        assert done.returncode == 0, done.stderr
        assert f"tagged team/app:v1 {layout.index_digest}" in done.stderr
        images = describe_images(registry, service="ecr-public")
        tagged = {i["imageDigest"]: i.get("imageTags", []) for i in images}
        assert tagged[layout.index_digest] == ["v1"]
