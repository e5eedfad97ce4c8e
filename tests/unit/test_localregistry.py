"""The local registry, driven by a real aiobotocore client over loopback.

Every assertion goes through botocore's parsing, so these tests also pin down that the
wire format (error names, modeled error fields, blobs) is what botocore expects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from types_aiobotocore_ecr import ECRClient

from tests.e2e.conftest import running_registry
from tests.helpers import digest_of
from uploaderd.localregistry import (
    REGISTRY_ID,
    Fault,
    FaultKind,
    LayerLimits,
    LocalRegistry,
    LocalRegistryConfig,
    RequestLog,
    add_arguments,
    config_from_args,
    parse_fault,
    serve_forever,
)
from uploaderd.localregistry.catalog import Catalog, StoredLayer
from uploaderd.localregistry.stats import MAX_LOGGED_KEYS, OTHER_REGISTRY_ID
from uploaderd.testing import ecr_client, running_local_registry

MIB = 1024 * 1024
REPO = "team/app"

# botocore adds one to "max_attempts" (it counts retries); total_max_attempts=1 really
# means a single attempt, so the raw fault reaches the test.
NO_RETRIES = AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[LocalRegistry]:
    async with running_local_registry(tmp_path / "registry") as registry:
        yield registry


@pytest.fixture
async def ecr(registry: LocalRegistry) -> AsyncIterator[ECRClient]:
    async with ecr_client(registry.url, NO_RETRIES) as client:
        await client.create_repository(repositoryName=REPO)
        yield client


async def upload_part(ecr: ECRClient, upload_id: str, first: int, data: bytes) -> int:
    answer = await ecr.upload_layer_part(
        repositoryName=REPO,
        uploadId=upload_id,
        partFirstByte=first,
        partLastByte=first + len(data) - 1,
        layerPartBlob=data,
    )
    return answer["lastByteReceived"]


async def push_layer(ecr: ECRClient, data: bytes) -> str:
    """A one-part upload (the last part may be small), returning the digest."""
    upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    await upload_part(ecr, upload_id, 0, data)
    digest = digest_of(data)
    await ecr.complete_layer_upload(repositoryName=REPO, uploadId=upload_id, layerDigests=[digest])
    return digest


async def stats(registry: LocalRegistry) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{registry.url}/_stats") as resp:
        result: dict[str, Any] = await resp.json()
        return result


async def set_faults(registry: LocalRegistry, *specs: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{registry.url}/_faults", json=list(specs)) as resp,
    ):
        assert resp.status == 200, await resp.text()


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


async def test_two_part_upload_is_downloadable_with_its_digest(
    registry: LocalRegistry, ecr: ECRClient
) -> None:
    data = os.urandom(5 * MIB + 1234)
    initiated = await ecr.initiate_layer_upload(repositoryName=REPO)
    assert initiated["partSize"] == 10485760
    upload_id = initiated["uploadId"]
    assert await upload_part(ecr, upload_id, 0, data[: 5 * MIB]) == 5 * MIB - 1
    assert await upload_part(ecr, upload_id, 5 * MIB, data[5 * MIB :]) == len(data) - 1
    digest = digest_of(data)
    done = await ecr.complete_layer_upload(
        repositoryName=REPO, uploadId=upload_id, layerDigests=[digest]
    )
    assert (done["layerDigest"], done["uploadId"], done["registryId"]) == (
        digest,
        upload_id,
        REGISTRY_ID,
    )

    url = (await ecr.get_download_url_for_layer(repositoryName=REPO, layerDigest=digest))[
        "downloadUrl"
    ]
    assert url == f"{registry.url}/blobs/{REPO}/{digest}"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert digest_of(await resp.read()) == digest

    storage = registry.config.storage
    assert digest_of((storage / "blobs" / "sha256" / digest[7:]).read_bytes()) == digest
    assert list((storage / "uploads").iterdir()) == []
    seen = await stats(registry)
    assert seen["parts_received"] == 2
    assert seen["bytes_received"] == len(data)
    assert seen["completed"] == {f"{REPO}@{digest}": 1}
    assert seen["requests"]["UploadLayerPart"] == 2
    assert seen["overlapping_requests_same_upload"] == 0


async def test_part_gap_reports_last_valid_byte(ecr: ECRClient) -> None:
    upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    with pytest.raises(ClientError) as before_any:
        await upload_part(ecr, upload_id, 5, b"x" * 10)
    assert error_code(before_any) == "InvalidLayerPartException"
    assert before_any.value.response.get("lastValidByteReceived") == -1

    await upload_part(ecr, upload_id, 0, b"x" * 10)
    with pytest.raises(ClientError) as gap:
        await upload_part(ecr, upload_id, 20, b"x" * 10)
    assert error_code(gap) == "InvalidLayerPartException"
    assert gap.value.response.get("lastValidByteReceived") == 9
    assert gap.value.response.get("uploadId") == upload_id
    assert gap.value.response.get("repositoryName") == REPO


async def test_part_range_must_match_blob_length(ecr: ECRClient) -> None:
    upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    with pytest.raises(ClientError) as exc:
        await ecr.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=99,
            layerPartBlob=b"x" * 10,
        )
    assert error_code(exc) == "InvalidLayerPartException"


async def test_part_above_20_mib_is_refused(ecr: ECRClient) -> None:
    upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    with pytest.raises(ClientError) as exc:
        await upload_part(ecr, upload_id, 0, bytes(20 * MIB + 1))
    assert error_code(exc) == "InvalidLayerPartException"


@pytest.mark.parametrize(
    ("parts", "claimed", "code"),
    [
        ([], None, "EmptyUploadException"),
        ([b"a" * 10, b"b" * 10], None, "LayerPartTooSmallException"),
        ([b"a" * 10], digest_of(b"something else"), "InvalidLayerException"),
    ],
)
async def test_complete_enforces_ecr_rules(
    ecr: ECRClient, parts: list[bytes], claimed: str | None, code: str
) -> None:
    upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    offset = 0
    for part in parts:
        await upload_part(ecr, upload_id, offset, part)
        offset += len(part)
    digest = claimed or digest_of(b"".join(parts))
    with pytest.raises(ClientError) as exc:
        await ecr.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[digest]
        )
    assert error_code(exc) == code


async def test_unknown_and_completed_uploads_are_not_found(ecr: ECRClient) -> None:
    with pytest.raises(ClientError) as part:
        await upload_part(ecr, "no-such-upload", 0, b"x")
    assert error_code(part) == "UploadNotFoundException"
    with pytest.raises(ClientError) as complete:
        await ecr.complete_layer_upload(
            repositoryName=REPO, uploadId="no-such-upload", layerDigests=[digest_of(b"x")]
        )
    assert error_code(complete) == "UploadNotFoundException"

    upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    await upload_part(ecr, upload_id, 0, b"x")
    await ecr.complete_layer_upload(
        repositoryName=REPO, uploadId=upload_id, layerDigests=[digest_of(b"x")]
    )
    with pytest.raises(ClientError) as after:
        await upload_part(ecr, upload_id, 1, b"y")
    assert error_code(after) == "UploadNotFoundException"


async def test_layer_already_exists(ecr: ECRClient) -> None:
    await push_layer(ecr, b"layer")
    with pytest.raises(ClientError) as exc:
        await push_layer(ecr, b"layer")
    assert error_code(exc) == "LayerAlreadyExistsException"


async def test_unknown_repository_is_not_found_on_every_operation(ecr: ECRClient) -> None:
    other = "does-not-exist"
    digest = digest_of(b"x")
    calls = [
        ecr.describe_repositories(repositoryNames=[other]),
        ecr.batch_check_layer_availability(repositoryName=other, layerDigests=[digest]),
        ecr.initiate_layer_upload(repositoryName=other),
        ecr.upload_layer_part(
            repositoryName=other,
            uploadId="u",
            partFirstByte=0,
            partLastByte=0,
            layerPartBlob=b"x",
        ),
        ecr.complete_layer_upload(repositoryName=other, uploadId="u", layerDigests=[digest]),
        ecr.put_image(repositoryName=other, imageManifest="{}", imageTag="t"),
        ecr.batch_get_image(repositoryName=other, imageIds=[{"imageTag": "t"}]),
        ecr.get_download_url_for_layer(repositoryName=other, layerDigest=digest),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            await call
        assert error_code(exc) == "RepositoryNotFoundException"


async def test_repositories_are_created_on_first_use_only_when_configured(
    tmp_path: Path,
) -> None:
    async with (
        running_local_registry(tmp_path / "registry", auto_create_repositories=True) as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        await ecr.initiate_layer_upload(repositoryName="fresh/repo")
        described = await ecr.describe_repositories()
    assert [r["repositoryName"] for r in described["repositories"]] == ["fresh/repo"]


async def test_create_repository_validates_the_name(ecr: ECRClient) -> None:
    with pytest.raises(ClientError) as exists:
        await ecr.create_repository(repositoryName=REPO)
    assert error_code(exists) == "RepositoryAlreadyExistsException"
    for bad in ["Upper", "trailing-", "a//b", "x" * 257]:
        with pytest.raises(ClientError) as invalid:
            await ecr.create_repository(repositoryName=bad)
        assert error_code(invalid) == "InvalidParameterException", bad


async def test_unsigned_requests_are_refused(registry: LocalRegistry) -> None:
    headers = {
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
        "Content-Type": "application/x-amz-json-1.1",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(registry.url + "/", data=b"{}", headers=headers) as resp,
    ):
        assert resp.status == 403
        body = await resp.json(content_type=None)
    assert body["__type"] == "MissingAuthenticationTokenException"


SIGNED_JSON = {
    "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.CreateRepository",
    "Content-Type": "application/x-amz-json-1.1",
    "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ecr/aws4_request, "
    "SignedHeaders=host, Signature=0",
}


async def test_a_chunked_body_is_read_whole(registry: LocalRegistry) -> None:
    """Bodies without Content-Length take aiohttp's own read path; both must parse."""

    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"repositoryName":'
        yield b' "team/chunked"}'

    async with (
        aiohttp.ClientSession() as session,
        session.post(registry.url + "/", data=pieces(), headers=SIGNED_JSON) as resp,
    ):
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        body = await resp.json(content_type=None)
    assert resp.status == 200, body
    assert body["repository"]["repositoryName"] == "team/chunked"


async def test_a_body_announced_too_large_is_refused_unread(registry: LocalRegistry) -> None:
    host, port = registry.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{name}: {value}\r\n" for name, value in SIGNED_JSON.items())
    writer.write(
        f"POST / HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: {65 * MIB}\r\n\r\n".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"RequestEntityTooLargeException" in answer


@pytest.mark.parametrize("blob", ["AA==AAAA", "AAA=AAAA", "AAAAAA", "AA AAAAA"])
async def test_a_part_blob_must_be_canonical_base64(
    registry: LocalRegistry, ecr: ECRClient, blob: str
) -> None:
    upload = await ecr.initiate_layer_upload(repositoryName=REPO)
    body = (
        f'{{"layerPartBlob":"{blob}","repositoryName":"{REPO}",'
        f'"uploadId":"{upload["uploadId"]}","partFirstByte":0,"partLastByte":5}}'
    )
    headers = {
        **SIGNED_JSON,
        "X-Amz-Target": SIGNED_JSON["X-Amz-Target"].replace("CreateRepository", "UploadLayerPart"),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(registry.url + "/", data=body.encode(), headers=headers) as resp,
    ):
        answer = await resp.json(content_type=None)
    assert resp.status == 400
    assert answer["__type"] == "InvalidParameterException"
    assert "layerPartBlob" in answer["message"]


async def test_missing_layers_are_failures_by_default(ecr: ECRClient) -> None:
    present = await push_layer(ecr, b"present")
    missing = digest_of(b"missing")
    answer = await ecr.batch_check_layer_availability(
        repositoryName=REPO, layerDigests=[present, missing, "sha256:nothex"]
    )
    assert [
        (x["layerDigest"], x["layerAvailability"], x["layerSize"]) for x in answer["layers"]
    ] == [(present, "AVAILABLE", 7)]
    assert [(f["layerDigest"], f["failureCode"]) for f in answer["failures"]] == [
        (missing, "MissingLayerDigest"),
        ("sha256:nothex", "InvalidLayerDigest"),
    ]


async def test_missing_layers_can_be_reported_unavailable(tmp_path: Path) -> None:
    async with (
        running_local_registry(
            tmp_path / "registry", missing_as_unavailable=True, auto_create_repositories=True
        ) as reg,
        ecr_client(reg.url, NO_RETRIES) as ecr,
    ):
        missing = digest_of(b"missing")
        answer = await ecr.batch_check_layer_availability(
            repositoryName=REPO, layerDigests=[missing]
        )
    assert answer["failures"] == []
    assert [(x["layerDigest"], x["layerAvailability"]) for x in answer["layers"]] == [
        (missing, "UNAVAILABLE")
    ]


async def test_put_image_requires_its_layers_and_can_be_fetched(ecr: ECRClient) -> None:
    config = await push_layer(ecr, b"{}")
    layer = await push_layer(ecr, b"layer bytes")
    manifest = (
        '{"schemaVersion": 2, '
        '"mediaType": "application/vnd.oci.image.manifest.v1+json", '
        f'"config": {{"mediaType": "application/vnd.oci.image.config.v1+json", '
        f'"digest": "{config}", "size": 2}}, '
        f'"layers": [{{"mediaType": "application/vnd.oci.image.layer.v1.tar", '
        f'"digest": "{layer}", "size": 11}}]}}'
    )
    with pytest.raises(ClientError) as missing:
        await ecr.put_image(
            repositoryName=REPO,
            imageManifest=manifest.replace(layer, digest_of(b"never pushed")),
            imageTag="v1",
        )
    assert error_code(missing) == "LayersNotFoundException"

    put = await ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    assert put["image"]["imageId"] == {
        "imageDigest": digest_of(manifest.encode()),
        "imageTag": "v1",
    }
    assert put["image"]["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"
    with pytest.raises(ClientError) as again:
        await ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    assert error_code(again) == "ImageAlreadyExistsException"

    got = await ecr.batch_get_image(
        repositoryName=REPO, imageIds=[{"imageTag": "v1"}, {"imageTag": "absent"}]
    )
    assert [i["imageManifest"] for i in got["images"]] == [manifest]
    assert [f["failureCode"] for f in got["failures"]] == ["ImageNotFound"]
    with pytest.raises(ClientError) as not_json:
        await ecr.put_image(repositoryName=REPO, imageManifest="not json", imageTag="v2")
    assert error_code(not_json) == "InvalidParameterException"


async def test_unknown_layer_has_no_download_url(ecr: ECRClient) -> None:
    with pytest.raises(ClientError) as exc:
        await ecr.get_download_url_for_layer(repositoryName=REPO, layerDigest=digest_of(b"?"))
    assert error_code(exc) == "LayersNotFoundException"


async def test_throttle_fault(registry: LocalRegistry, ecr: ECRClient) -> None:
    await set_faults(registry, "throttle-every=2")
    await ecr.describe_repositories()
    with pytest.raises(ClientError) as exc:
        await ecr.describe_repositories()
    assert error_code(exc) == "ThrottlingException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    await ecr.describe_repositories()
    assert (await stats(registry))["faults_injected"] == {"throttle-every": 1}


async def test_server_error_fault_does_not_apply_the_part(
    registry: LocalRegistry, ecr: ECRClient
) -> None:
    upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    await set_faults(registry, "server-error-every=1")
    with pytest.raises(ClientError) as exc:
        await upload_part(ecr, upload_id, 0, b"x" * 10)
    assert error_code(exc) == "ServerException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    await set_faults(registry)
    assert await upload_part(ecr, upload_id, 0, b"x" * 10) == 9
    seen = await stats(registry)
    assert seen["faults_injected"] == {"server-error-every": 1}
    assert seen["parts_received"] == 1


async def test_drop_after_apply_fault_applies_then_hangs_up(
    registry: LocalRegistry, ecr: ECRClient
) -> None:
    upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    await set_faults(registry, "drop-after-apply-every=1")
    with pytest.raises(ConnectionClosedError):
        await upload_part(ecr, upload_id, 0, b"x" * 10)
    await set_faults(registry)
    with pytest.raises(ClientError) as retry:
        await upload_part(ecr, upload_id, 0, b"x" * 10)
    assert error_code(retry) == "InvalidLayerPartException"
    assert retry.value.response.get("lastValidByteReceived") == 9
    assert (await stats(registry))["faults_injected"] == {"drop-after-apply-every": 1}


async def test_non_json_and_forget_upload_faults(registry: LocalRegistry, ecr: ECRClient) -> None:
    await set_faults(registry, "non-json-every=1")
    # botocore does not fail on a 200 HTML page: the answer just lacks its members,
    # which is why clients must check the members they rely on.
    answer = await ecr.describe_repositories()
    assert "repositories" not in answer

    await set_faults(registry, "forget-upload-after=1")
    upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    await upload_part(ecr, upload_id, 0, b"x")
    with pytest.raises(ClientError) as exc:
        await upload_part(ecr, upload_id, 1, b"y")
    assert error_code(exc) == "UploadNotFoundException"
    assert (await stats(registry))["faults_injected"] == {
        "non-json-every": 1,
        "forget-upload-after": 1,
    }


async def test_refusal_window_then_recovery(registry: LocalRegistry, ecr: ECRClient) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{registry.url}/_faults/refuse?seconds=0.3") as resp,
    ):
        assert resp.status == 200
    await asyncio.sleep(0.05)
    with pytest.raises((EndpointConnectionError, ConnectionClosedError)):
        await ecr.describe_repositories()
    with pytest.raises(EndpointConnectionError):
        await ecr.describe_repositories()
    await asyncio.sleep(0.4)
    await ecr.describe_repositories()


async def test_stats_see_concurrency_and_overlap(registry: LocalRegistry, ecr: ECRClient) -> None:
    first = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    second = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
    await set_faults(registry, "latency=0.2")
    results = await asyncio.gather(
        upload_part(ecr, first, 0, b"a"),
        upload_part(ecr, second, 0, b"b"),
        upload_part(ecr, second, 0, b"b"),
        return_exceptions=True,
    )
    seen = await stats(registry)
    assert seen["max_concurrent_uploads"] == 2
    assert seen["overlapping_requests_same_upload"] == 1
    # The same part twice: one applies, the other is out of order.
    assert sum(isinstance(r, ClientError) for r in results) == 1

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{registry.url}/_stats/reset") as resp,
    ):
        assert resp.status == 200
    assert (await stats(registry))["requests"] == {}


async def test_bad_fault_specs_are_refused(registry: LocalRegistry) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{registry.url}/_faults", json=["throttle-every=0"]) as resp,
    ):
        assert resp.status == 400


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("throttle-every=3", Fault(FaultKind.THROTTLE, 3)),
        ("server-error-every=1", Fault(FaultKind.SERVER_ERROR, 1)),
        ("drop-after-apply-every=4", Fault(FaultKind.DROP_AFTER_APPLY, 4)),
        ("latency=0.25", Fault(FaultKind.LATENCY, 0.25)),
        ("forget-upload-after=2", Fault(FaultKind.FORGET_UPLOAD, 2)),
        ("non-json-every=5", Fault(FaultKind.NON_JSON, 5)),
        ("refuse-for=1.5", Fault(FaultKind.REFUSE, 1.5)),
    ],
)
def test_parse_fault(spec: str, fault: Fault) -> None:
    assert parse_fault(spec) == fault
    assert parse_fault(fault.spec) == fault


@pytest.mark.parametrize(
    "spec", ["", "throttle-every", "throttle-every=0", "throttle-every=x", "latency=-1", "nope=1"]
)
def test_parse_fault_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        parse_fault(spec)


def test_cli_arguments_build_the_config(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            *("--storage", str(tmp_path), "--port", "5000", "--auto-create-repositories"),
            *("--fault", "latency=0.1", "--fault", "throttle-every=2"),
        ]
    )
    assert config_from_args(args) == LocalRegistryConfig(
        storage=tmp_path,
        port=5000,
        auto_create_repositories=True,
        faults=("latency=0.1", "throttle-every=2"),
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--storage", str(tmp_path), "--fault", "bogus=1"])


async def test_layers_survive_a_restart(tmp_path: Path) -> None:
    async with (
        running_local_registry(tmp_path / "registry") as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        await ecr.create_repository(repositoryName=REPO)
        digest = await push_layer(ecr, b"kept")
    async with (
        running_local_registry(tmp_path / "registry") as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        answer = await ecr.batch_check_layer_availability(
            repositoryName=REPO, layerDigests=[digest]
        )
    assert [x["layerAvailability"] for x in answer["layers"]] == ["AVAILABLE"]


async def test_serve_forever_announces_its_url_and_stops_when_cancelled(tmp_path: Path) -> None:
    announced: asyncio.Queue[str] = asyncio.Queue()
    config = LocalRegistryConfig(storage=tmp_path, faults=("latency=0",))
    task = asyncio.create_task(serve_forever(config, announced.put_nowait))
    try:
        url = await asyncio.wait_for(announced.get(), timeout=5)
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_stats") as resp:
            assert resp.status == 200
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# Registry ids: a central account named on every call.

CENTRAL = "111122223333"
SIDE = "444455556666"
UNSERVED = "999999999999"


def not_found_message(name: str, registry_id: str) -> str:
    return (
        f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'"
    )


async def test_a_repository_exists_under_its_registry_id_only(tmp_path: Path) -> None:
    async with (
        running_local_registry(tmp_path / "registry", registry_ids=(SIDE, CENTRAL)) as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        created = await ecr.create_repository(repositoryName=REPO, registryId=CENTRAL)
        assert created["repository"]["registryId"] == CENTRAL
        assert created["repository"]["repositoryUri"].startswith(f"{CENTRAL}.dkr.ecr.")
        listed = await ecr.describe_repositories(registryId=CENTRAL)
        assert [r["repositoryName"] for r in listed["repositories"]] == [REPO]
        assert (await ecr.describe_repositories())["repositories"] == []  # the default: SIDE

        for registry_id in (None, SIDE, UNSERVED):
            named = {} if registry_id is None else {"registryId": registry_id}
            with pytest.raises(ClientError) as missing:
                await ecr.initiate_layer_upload(repositoryName=REPO, **named)
            assert error_code(missing) == "RepositoryNotFoundException"
            message = missing.value.response["Error"]["Message"]
            assert message == not_found_message(REPO, registry_id or SIDE)
        with pytest.raises(ClientError) as unserved:
            await ecr.describe_repositories(registryId=UNSERVED)
        assert error_code(unserved) == "RepositoryNotFoundException"

        # The same name under another id is another repository, with its own uploads.
        await ecr.create_repository(repositoryName=REPO)
        upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO, registryId=CENTRAL))[
            "uploadId"
        ]
        with pytest.raises(ClientError) as elsewhere:
            await upload_part(ecr, upload_id, 0, b"x")
        assert error_code(elsewhere) == "UploadNotFoundException"


async def test_answers_carry_the_registry_id_the_request_named(tmp_path: Path) -> None:
    async with (
        running_local_registry(tmp_path / "registry", registry_ids=(SIDE, CENTRAL)) as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        at = {"repositoryName": REPO, "registryId": CENTRAL}
        await ecr.create_repository(**at)
        upload_id = (await ecr.initiate_layer_upload(**at))["uploadId"]
        part = await ecr.upload_layer_part(
            **at, uploadId=upload_id, partFirstByte=0, partLastByte=1, layerPartBlob=b"{}"
        )
        assert part["registryId"] == CENTRAL
        done = await ecr.complete_layer_upload(
            **at, uploadId=upload_id, layerDigests=[digest_of(b"{}")]
        )
        assert done["registryId"] == CENTRAL
        manifest = (
            '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", '
            '"config": {"mediaType": "application/vnd.oci.image.config.v1+json", '
            f'"digest": "{digest_of(b"{}")}", "size": 2}}, "layers": []}}'
        )
        put = await ecr.put_image(**at, imageManifest=manifest, imageTag="v1")
        assert put["image"]["registryId"] == CENTRAL
        described = await ecr.describe_images(**at)
        assert [d["registryId"] for d in described["imageDetails"]] == [CENTRAL]
        got = await ecr.batch_get_image(**at, imageIds=[{"imageTag": "v1"}])
        assert got["images"][0]["registryId"] == CENTRAL
        url = (await ecr.get_download_url_for_layer(**at, layerDigest=digest_of(b"{}")))[
            "downloadUrl"
        ]
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            assert await resp.read() == b"{}"


async def test_the_request_log_shows_which_registry_id_each_call_carried(tmp_path: Path) -> None:
    async with (
        running_local_registry(tmp_path / "registry", registry_ids=(CENTRAL,)) as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        await ecr.create_repository(repositoryName=REPO, registryId=CENTRAL)
        for _ in range(2):
            await ecr.batch_check_layer_availability(
                repositoryName=REPO, registryId=CENTRAL, layerDigests=[digest_of(b"x")]
            )
        assert registry.request_log.registry_ids() == {CENTRAL}
        await ecr.initiate_layer_upload(repositoryName=REPO)  # forgot it
        with pytest.raises(ClientError):
            await ecr.initiate_layer_upload(repositoryName=REPO, registryId=UNSERVED)

        assert registry.request_log.registry_ids() == {CENTRAL, None, UNSERVED}
        assert registry.request_log.registry_ids("InitiateLayerUpload") == {None, UNSERVED}
        assert registry.request_log.counts == {
            ("CreateRepository", CENTRAL): 1,
            ("BatchCheckLayerAvailability", CENTRAL): 2,
            ("InitiateLayerUpload", None): 1,
            ("InitiateLayerUpload", UNSERVED): 1,
        }
        seen = await stats(registry)
        assert sorted(
            seen["request_log"], key=lambda e: (e["operation"], str(e["registryId"]))
        ) == [
            {"operation": "BatchCheckLayerAvailability", "registryId": CENTRAL, "count": 2},
            {"operation": "CreateRepository", "registryId": CENTRAL, "count": 1},
            {"operation": "InitiateLayerUpload", "registryId": UNSERVED, "count": 1},
            {"operation": "InitiateLayerUpload", "registryId": None, "count": 1},
        ]
        async with aiohttp.ClientSession() as session:
            await session.post(f"{registry.url}/_stats/reset")
        assert (await stats(registry))["request_log"] == []


def test_the_request_log_stays_small_whatever_ids_a_client_invents() -> None:
    log = RequestLog()
    for n in range(3 * MAX_LOGGED_KEYS):
        log.record("BatchCheckLayerAvailability", f"{n:012d}")
    assert len(log.counts) == MAX_LOGGED_KEYS + 1
    assert log.counts[("BatchCheckLayerAvailability", OTHER_REGISTRY_ID)] == 2 * MAX_LOGGED_KEYS
    assert sum(log.counts.values()) == 3 * MAX_LOGGED_KEYS


async def test_repositories_keep_their_registry_id_across_a_restart(tmp_path: Path) -> None:
    storage = tmp_path / "registry"
    async with (
        running_local_registry(storage, registry_ids=(SIDE, CENTRAL)) as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        await ecr.create_repository(repositoryName="central/app", registryId=CENTRAL)
        await ecr.create_repository(repositoryName="side/app")
    async with (
        running_local_registry(storage, registry_ids=(SIDE, CENTRAL)) as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        central = await ecr.describe_repositories(registryId=CENTRAL)
        side = await ecr.describe_repositories(registryId=SIDE)
    assert [(r["repositoryName"], r["registryId"]) for r in central["repositories"]] == [
        ("central/app", CENTRAL)
    ]
    assert [(r["repositoryName"], r["registryId"]) for r in side["repositories"]] == [
        ("side/app", SIDE)
    ]


async def test_an_index_from_before_registry_ids_belongs_to_the_default(tmp_path: Path) -> None:
    storage = tmp_path / "registry"
    storage.mkdir()
    old = {"name": REPO, "created_at": 1.0, "tag_mutability": "MUTABLE"}
    old |= {"layers": {}, "images": {}, "tags": {}}
    (storage / "index.json").write_text(json.dumps({REPO: old}))
    async with (
        running_local_registry(storage, registry_ids=(CENTRAL,)) as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        listed = await ecr.describe_repositories()
    assert [(r["repositoryName"], r["registryId"]) for r in listed["repositories"]] == [
        (REPO, CENTRAL)
    ]


def test_registry_ids_are_12_digit_account_ids(tmp_path: Path) -> None:
    assert LocalRegistryConfig(storage=tmp_path).registry_ids == (REGISTRY_ID,)
    for bad in (("12345",), ("1111222233334",), ()):
        with pytest.raises(ValueError, match="registry id"):
            LocalRegistryConfig(storage=tmp_path, registry_ids=bad)


def test_cli_registry_ids_public_mode_and_limits(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            *("--storage", str(tmp_path), "--registry-id", CENTRAL, "--registry-id", SIDE),
            *("--public", "--max-layer-parts", "10", "--max-layer-bytes", "1000"),
        ]
    )
    config = config_from_args(args)
    assert config.registry_ids == (CENTRAL, SIDE)
    assert config.public
    assert config.layer_limits == LayerLimits(max_parts=10, max_bytes=1000)
    plain = config_from_args(parser.parse_args(["--storage", str(tmp_path)]))
    assert (plain.registry_ids, plain.public) == ((REGISTRY_ID,), False)
    with pytest.raises(SystemExit):
        parser.parse_args(["--storage", str(tmp_path), "--registry-id", "central"])


def test_the_local_registry_process_reports_its_request_log(tmp_path: Path) -> None:
    """What e2e tests read: ``RegistryProcess.stats()["request_log"]``."""
    with running_registry(tmp_path / "registry", "--registry-id", CENTRAL) as server:

        async def push_to_central() -> None:
            async with ecr_client(server.url, NO_RETRIES) as ecr:
                await ecr.create_repository(repositoryName=REPO, registryId=CENTRAL)
                await ecr.describe_repositories(registryId=CENTRAL)
                await ecr.describe_repositories()

        asyncio.run(push_to_central())
        log = server.stats()["request_log"]
    assert sorted(log, key=lambda e: (e["operation"], str(e["registryId"]))) == [
        {"operation": "CreateRepository", "registryId": CENTRAL, "count": 1},
        {"operation": "DescribeRepositories", "registryId": CENTRAL, "count": 1},
        {"operation": "DescribeRepositories", "registryId": None, "count": 1},
    ]


# ECR Public mode.


@pytest.fixture
async def public_registry(tmp_path: Path) -> AsyncIterator[LocalRegistry]:
    async with running_local_registry(tmp_path / "public", public=True) as registry:
        yield registry


@pytest.fixture
async def ecr_public(public_registry: LocalRegistry) -> AsyncIterator[Any]:
    async with ecr_client(public_registry.url, NO_RETRIES, service="ecr-public") as client:
        await client.create_repository(repositoryName=REPO)
        yield client


def test_public_mode_has_ecr_publics_quotas(tmp_path: Path) -> None:
    assert LocalRegistryConfig(storage=tmp_path, public=True).layer_limits == LayerLimits(
        max_parts=1000, max_bytes=10000 * MIB
    )
    assert LocalRegistryConfig(storage=tmp_path).layer_limits == LayerLimits(
        max_parts=4200, max_bytes=52000 * MIB
    )


async def test_a_layer_and_an_image_go_up_through_an_ecr_public_client(
    public_registry: LocalRegistry, ecr_public: Any
) -> None:
    first, last = os.urandom(5 * MIB), b"the last part may be small"
    digest = digest_of(first + last)
    missing = await ecr_public.batch_check_layer_availability(
        repositoryName=REPO, layerDigests=[digest]
    )
    assert [f["failureCode"] for f in missing["failures"]] == ["MissingLayerDigest"]
    upload = await ecr_public.initiate_layer_upload(repositoryName=REPO)
    assert upload["partSize"] == 10 * MIB
    for start, data in ((0, first), (len(first), last)):
        part = await ecr_public.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload["uploadId"],
            partFirstByte=start,
            partLastByte=start + len(data) - 1,
            layerPartBlob=data,
        )
        assert part["lastByteReceived"] == start + len(data) - 1
    await ecr_public.complete_layer_upload(
        repositoryName=REPO, uploadId=upload["uploadId"], layerDigests=[digest]
    )
    upload = await ecr_public.initiate_layer_upload(repositoryName=REPO)
    await ecr_public.upload_layer_part(
        repositoryName=REPO,
        uploadId=upload["uploadId"],
        partFirstByte=0,
        partLastByte=1,
        layerPartBlob=b"{}",
    )
    await ecr_public.complete_layer_upload(
        repositoryName=REPO, uploadId=upload["uploadId"], layerDigests=[digest_of(b"{}")]
    )
    manifest = (
        '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", '
        '"config": {"mediaType": "application/vnd.oci.image.config.v1+json", '
        f'"digest": "{digest_of(b"{}")}", "size": 2}}, '
        '"layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", '
        f'"digest": "{digest}", "size": {len(first + last)}}}]}}'
    )
    put = await ecr_public.put_image(repositoryName=REPO, imageManifest=manifest, imageTag="v1")
    assert put["image"]["imageId"] == {
        "imageDigest": digest_of(manifest.encode()),
        "imageTag": "v1",
    }

    described = await ecr_public.describe_images(repositoryName=REPO)
    [detail] = described["imageDetails"]
    assert (detail["imageTags"], detail["imageSizeInBytes"]) == (["v1"], 2 + len(first + last))
    repositories = (await ecr_public.describe_repositories())["repositories"]
    assert [r["repositoryUri"] for r in repositories] == [f"public.ecr.aws/{REGISTRY_ID}/{REPO}"]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{public_registry.url}/blobs/{REPO}/{digest}") as resp,
    ):
        assert await resp.read() == first + last


async def test_each_mode_answers_the_others_protocol_as_unknown(
    registry: LocalRegistry, public_registry: LocalRegistry
) -> None:
    async with (
        ecr_client(public_registry.url, NO_RETRIES) as private_client,
        ecr_client(registry.url, NO_RETRIES, service="ecr-public") as public_client,
    ):
        for call in (private_client.describe_repositories(), public_client.describe_repositories()):
            with pytest.raises(ClientError) as unknown:
                await call
            assert error_code(unknown) == "UnknownOperationException"
            assert unknown.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # What ECR Public lacks, a public-mode registry lacks too.
    headers = SIGNED_JSON | {"X-Amz-Target": "SpencerFrontendService.GetDownloadUrlForLayer"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(public_registry.url + "/", data=b"{}", headers=headers) as resp,
    ):
        assert resp.status == 400
        assert (await resp.json(content_type=None))["__type"] == "UnknownOperationException"


async def test_public_mode_refuses_part_1001(ecr_public: Any) -> None:
    upload_id = (await ecr_public.initiate_layer_upload(repositoryName=REPO))["uploadId"]

    async def part(first: int) -> int:
        answer = await ecr_public.upload_layer_part(
            repositoryName=REPO,
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first,
            layerPartBlob=b"x",
        )
        return int(answer["lastByteReceived"])

    for n in range(1000):
        assert await part(n) == n
    with pytest.raises(ClientError) as too_many:
        await part(1000)
    assert error_code(too_many) == "LimitExceededException"
    assert "1000 parts" in str(too_many.value)
    with pytest.raises(ClientError) as where:  # the refused part was not kept
        await part(999)
    assert where.value.response["lastValidByteReceived"] == 999


async def test_a_layer_may_not_pass_the_byte_limit(tmp_path: Path) -> None:
    async with (
        running_local_registry(tmp_path / "r", public=True, max_layer_bytes=6 * MIB) as registry,
        ecr_client(registry.url, NO_RETRIES, service="ecr-public") as ecr_public,
    ):
        await ecr_public.create_repository(repositoryName=REPO)
        upload_id = (await ecr_public.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        first, over, fits = os.urandom(5 * MIB), os.urandom(MIB + 1), os.urandom(MIB)

        async def part(start: int, data: bytes) -> None:
            await ecr_public.upload_layer_part(
                repositoryName=REPO,
                uploadId=upload_id,
                partFirstByte=start,
                partLastByte=start + len(data) - 1,
                layerPartBlob=data,
            )

        await part(0, first)
        with pytest.raises(ClientError) as too_big:
            await part(len(first), over)
        assert error_code(too_big) == "LimitExceededException"
        await part(len(first), fits)  # exactly the limit
        await ecr_public.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[digest_of(first + fits)]
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{registry.url}/blobs/{REPO}/{digest_of(first + fits)}") as resp,
        ):
            assert await resp.read() == first + fits


async def test_private_mode_enforces_its_part_limit_too(tmp_path: Path) -> None:
    async with (
        running_local_registry(tmp_path / "r", max_layer_parts=2) as registry,
        ecr_client(registry.url, NO_RETRIES) as ecr,
    ):
        await ecr.create_repository(repositoryName=REPO)
        upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        assert await upload_part(ecr, upload_id, 0, b"a") == 0
        assert await upload_part(ecr, upload_id, 1, b"b") == 1
        with pytest.raises(ClientError) as third:
            await upload_part(ecr, upload_id, 2, b"c")
        assert error_code(third) == "LimitExceededException"


def test_the_local_registry_process_speaks_ecr_public_with_public(tmp_path: Path) -> None:
    with running_registry(tmp_path / "registry", "--public") as server:

        async def both() -> tuple[list[str], str]:
            async with ecr_client(server.url, NO_RETRIES, service="ecr-public") as ecr_public:
                await ecr_public.create_repository(repositoryName=REPO)
                listed = await ecr_public.describe_repositories()
            async with ecr_client(server.url, NO_RETRIES) as ecr:
                with pytest.raises(ClientError) as unknown:
                    await ecr.describe_repositories()
            return [r["repositoryName"] for r in listed["repositories"]], error_code(unknown)

        names, code = asyncio.run(both())
    assert (names, code) == ([REPO], "UnknownOperationException")


async def test_public_mode_wants_signatures_scoped_to_ecr_public(
    public_registry: LocalRegistry,
) -> None:
    target = {"X-Amz-Target": "SpencerFrontendService.DescribeRepositories"}
    answers = []
    for service in ("ecr", "ecr-public"):
        authorization = SIGNED_JSON["Authorization"].replace("/ecr/", f"/{service}/")
        headers = SIGNED_JSON | target | {"Authorization": authorization}
        async with (
            aiohttp.ClientSession() as session,
            session.post(public_registry.url + "/", data=b"{}", headers=headers) as resp,
        ):
            answers.append((resp.status, (await resp.json(content_type=None)).get("__type")))
    assert answers == [(403, "InvalidSignatureException"), (200, None)]


def test_completed_layers_survive_a_restart_through_the_append_log(tmp_path: Path) -> None:
    """Completions are appended, not rewritten; a new catalog on the same file finds them."""
    index = tmp_path / "index.json"
    catalog = Catalog(index, auto_create=True)
    repository = catalog.get("team/app")
    for n in range(3):
        catalog.add_layer(repository, f"sha256:{n:064x}", StoredLayer(10 + n))
    with index.with_suffix(".log").open("a") as log:
        log.write('{"registry": "0000')  # a line cut short by a crash
    assert sorted(Catalog(index, auto_create=False).get("team/app").layers) == [
        f"sha256:{n:064x}" for n in range(3)
    ]
    catalog.save()  # a full rewrite takes the log's lines in, and the log goes
    assert not index.with_suffix(".log").exists()
    assert len(Catalog(index, auto_create=False).get("team/app").layers) == 3
