"""Each local-registry fault does what faults.py says, seen through a real aiobotocore client.

tests/unit/test_localregistry.py covers throttle, server-error, drop-after-apply,
non-json, forget-upload and a run-time refusal one by one; this adds the faults it
does not (slow-body both ways, latency, refusal at start-up) and the documented order
in which combined faults fire, because the chaos suite relies on all of them.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from types_aiobotocore_ecr import ECRClient

from tests.unit.test_localregistry import upload_part
from uploaderd.localregistry import LocalRegistry, parse_fault
from uploaderd.localregistry.faults import SLOW_BODY_PIECES, FaultPlan
from uploaderd.testing import ecr_client, running_local_registry

REPO = "team/app"


def client_config(read_timeout: float = 10.0) -> AioConfig:
    return AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=read_timeout,
        connect_timeout=2,
    )


def running(tmp_path: Path, *faults: str) -> AbstractAsyncContextManager[LocalRegistry]:
    return running_local_registry(
        tmp_path / "registry", auto_create_repositories=True, faults=faults
    )


def client(
    registry: LocalRegistry, read_timeout: float = 10.0
) -> AbstractAsyncContextManager[ECRClient]:
    return ecr_client(registry.url, client_config(read_timeout))


def set_faults(registry: LocalRegistry, *specs: str) -> None:
    registry.app.faults = FaultPlan(parse_fault(spec) for spec in specs)


def injected(registry: LocalRegistry) -> dict[str, Any]:
    return dict(registry.app.stats.faults_injected)


def test_slow_body_spec_parses_as_seconds() -> None:
    assert parse_fault("slow-body=0.5").value == 0.5
    assert parse_fault("slow-body=2").spec == "slow-body=2.0"
    with pytest.raises(ValueError, match="seconds"):
        parse_fault("slow-body=-1")


async def test_slow_body_trips_a_short_read_timeout_after_the_part_was_applied(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as registry, client(registry, read_timeout=0.3) as ecr:
        upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        set_faults(registry, "slow-body=1")
        started = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            await upload_part(ecr, upload_id, 0, b"x" * 10)
        assert time.monotonic() - started < 1.0  # the timeout tripped, not the trickle
        set_faults(registry)
        # The part landed although the client never saw the answer.
        with pytest.raises(ClientError) as retry:
            await upload_part(ecr, upload_id, 0, b"x" * 10)
        assert retry.value.response["Error"]["Code"] == "InvalidLayerPartException"
        assert retry.value.response.get("lastValidByteReceived") == 9
        assert injected(registry) == {"slow-body": 1}


async def test_slow_body_under_the_read_timeout_is_slow_but_correct(tmp_path: Path) -> None:
    async with running(tmp_path) as registry, client(registry, read_timeout=2) as ecr:
        upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        set_faults(registry, "slow-body=0.05")
        started = time.monotonic()
        assert await upload_part(ecr, upload_id, 0, b"y" * 7) == 6
        assert time.monotonic() - started >= SLOW_BODY_PIECES * 0.05 * 0.9
        # Errors trickle too, and still parse as ECR errors.
        with pytest.raises(ClientError) as error:
            await upload_part(ecr, "no-such-upload", 0, b"z")
        assert error.value.response["Error"]["Code"] == "UploadNotFoundException"
        assert injected(registry) == {"slow-body": 2}


async def test_latency_delays_every_api_request(tmp_path: Path) -> None:
    async with running(tmp_path, "latency=0.2") as registry, client(registry) as ecr:
        started = time.monotonic()
        await ecr.describe_repositories()
        await ecr.describe_repositories()
        assert time.monotonic() - started >= 0.4


async def test_refuse_for_at_start_up_refuses_then_serves(tmp_path: Path) -> None:
    async with running(tmp_path, "refuse-for=0.5") as registry, client(registry) as ecr:
        with pytest.raises(EndpointConnectionError):
            await ecr.describe_repositories()
        deadline = time.monotonic() + 5
        while True:
            try:
                await ecr.describe_repositories()
                break
            except EndpointConnectionError:
                assert time.monotonic() < deadline, "the registry never listened again"
                await anyio.sleep(0.1)


async def test_combined_faults_fire_in_the_documented_order(tmp_path: Path) -> None:
    """throttle, then non-json, then (parts only) server-error, then drop-after-apply."""
    async with running(tmp_path) as registry, client(registry) as ecr:
        upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        set_faults(
            registry,
            "throttle-every=3",
            "non-json-every=3",
            "server-error-every=2",
            "drop-after-apply-every=2",
        )
        outcomes = []
        for _ in range(5):
            try:
                await upload_part(ecr, upload_id, 0, b"q" * 5)
                outcomes.append("ok")
            except ClientError as exc:
                outcomes.append(exc.response["Error"]["Code"])
            except KeyError:
                outcomes.append("non-json")  # botocore parsed an HTML page: no members
            except Exception as exc:
                outcomes.append(type(exc).__name__)
        # Each request bumps the counter of every fault it reaches, in order:
        #   1: t1 n1 s1 d1 -> applied    2: t2 n2 s2 -> server error   3: t3 -> throttled
        #   4: t4 n3 -> non-json         5: t5 n4 s3 d2 -> applied, then dropped
        assert outcomes == [
            "ok",
            "ServerException",
            "ThrottlingException",
            "non-json",
            "ConnectionClosedError",
        ]
        assert injected(registry) == {
            "throttle-every": 1,
            "non-json-every": 1,
            "server-error-every": 1,
            "drop-after-apply-every": 1,
        }


async def test_forget_upload_after_k_parts(tmp_path: Path) -> None:
    async with running(tmp_path, "forget-upload-after=2") as registry, client(registry) as ecr:
        upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        assert await upload_part(ecr, upload_id, 0, b"a") == 0
        assert await upload_part(ecr, upload_id, 1, b"b") == 1
        with pytest.raises(ClientError) as exc:
            await upload_part(ecr, upload_id, 2, b"c")
        assert exc.value.response["Error"]["Code"] == "UploadNotFoundException"
        # A new upload of the same layer completes, so the layer is not lost.
        data = b"abc"
        upload_id = (await ecr.initiate_layer_upload(repositoryName=REPO))["uploadId"]
        assert await upload_part(ecr, upload_id, 0, data) == 2
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        await ecr.complete_layer_upload(
            repositoryName=REPO, uploadId=upload_id, layerDigests=[digest]
        )
        assert registry.app.stats.completed[f"{REPO}@{digest}"] == 1
