"""registry_id and ECR Public: the setting's rule, every call's registryId, and per-registry limits.

The backend runs against the in-process local registry over the real wire
protocol, which counts each operation's calls by the ``registryId`` they
carried; the engine runs against ``MemoryRegistry`` with other limits.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import botocore.exceptions
import pytest

from tests.helpers import make_layer
from uploaderd.engine.retry import RetryPolicy
from uploaderd.engine.scheduler import EngineSettings, UploadEngine
from uploaderd.errors import ConfigurationError, ErrorCode, RegistryError
from uploaderd.model import LayerJob, Outcome
from uploaderd.registry.base import PartBytes
from uploaderd.registry.choice import RegistryChoice, account_id, open_registry
from uploaderd.registry.ecr import EcrSettings, open_ecr_registry
from uploaderd.registry.ecranswers import PUBLIC_ECR, EcrTarget, raise_client_error
from uploaderd.registry.limits import ECR_LIMITS, ECR_PUBLIC_LIMITS, RegistryLimits
from uploaderd.settings import PushSettings, load_settings
from uploaderd.sizes import MIB
from uploaderd.testing import MemoryRegistry, running_local_registry

DEFAULT_ACCOUNT = "000000000000"
CENTRAL_ACCOUNT = "123456789012"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDACCOUNTS")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "accounts-test-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


# --- the setting ------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["123456789012", "012345678901", 123456789012])
def test_an_account_id_is_twelve_digits(good: object) -> None:
    assert account_id(good) == str(good)


@pytest.mark.parametrize(
    "bad", ["12345678901", "1234567890123", "12345678901a", " 123456789012", True, 12345]
)
def test_anything_else_is_refused_with_the_rule(bad: object) -> None:
    with pytest.raises(ValueError, match="12 digits"):
        account_id(bad)


def test_a_bad_registry_id_names_where_it_came_from(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('registry_id = "acct-1"\n')
    with pytest.raises(ConfigurationError) as caught:
        load_settings(PushSettings, {}, config_file=config, environ={})
    assert caught.value.code == ErrorCode.INVALID_SETTING
    assert f"'registry_id' in {config}" in caught.value.message
    assert "12 digits" in caught.value.message


def test_the_settings_reach_the_registry_choice() -> None:
    environ = {"UPLOADERD_REGISTRY_ID": CENTRAL_ACCOUNT, "UPLOADERD_ECR_PUBLIC": "true"}
    choice = load_settings(PushSettings, {}, environ=environ).registry_choice()
    assert (choice.registry_id, choice.ecr_public) == (CENTRAL_ACCOUNT, True)


@pytest.mark.parametrize(
    ("name", "value"), [("ecr_public", True), ("registry_id", CENTRAL_ACCOUNT)]
)
async def test_ecr_settings_beside_an_oci_registry_url_are_refused(
    name: str, value: object
) -> None:
    choice = RegistryChoice(
        registry_url="https://registry.example.com",
        insecure=False,
        username=None,
        region=None,
        endpoint_url=None,
        connections=2,
        request_timeout=5.0,
        **{name: value},  # type: ignore[arg-type]
    )
    with pytest.raises(ConfigurationError, match=name) as caught:
        async with open_registry(choice):
            pass
    assert caught.value.code == ErrorCode.INVALID_SETTING


# --- registryId on every call -----------------------------------------------------------


async def push_one_layer_and_an_image(settings: EcrSettings, data: bytes) -> None:
    """Every call the backend makes: ping, check, initiate, a part, complete, PutImage."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": digest,
                "size": len(data),
            },
            "layers": [],
        }
    ).encode()
    async with open_ecr_registry(settings) as registry:
        await registry.ping()
        assert await registry.missing_layers("team/app", [digest]) == {digest}
        session = await registry.start_upload("team/app")
        part = registry.encode_part(session, PartBytes(data))
        assert await registry.upload_part(session, 0, part) == len(data) - 1
        await registry.complete_upload(session, digest)
        assert await registry.missing_layers("team/app", [digest]) == set()
        await registry.put_manifest("team/app", manifest, MANIFEST_MEDIA_TYPE, tag="v1")


async def test_every_ecr_call_carries_the_registry_id(tmp_path: Path) -> None:
    served = (DEFAULT_ACCOUNT, CENTRAL_ACCOUNT)
    async with running_local_registry(
        tmp_path, registry_ids=served, auto_create_repositories=True
    ) as local:
        settings = EcrSettings(
            region="us-east-1", endpoint_url=local.url, registry_id=CENTRAL_ACCOUNT
        )
        await push_one_layer_and_an_image(settings, os.urandom(1000))
        counts = local.request_log.counts
    assert {registry_id for _, registry_id in counts} == {CENTRAL_ACCOUNT}, counts
    assert {operation for operation, _ in counts} == {
        "DescribeRepositories",
        "BatchCheckLayerAvailability",
        "InitiateLayerUpload",
        "UploadLayerPart",
        "CompleteLayerUpload",
        "PutImage",
    }


async def test_ecr_public_speaks_its_own_api_in_us_east_1(tmp_path: Path) -> None:
    async with running_local_registry(
        tmp_path, public=True, auto_create_repositories=True
    ) as local:
        # Another region configured: ECR Public's client goes to us-east-1 all the same.
        settings = EcrSettings(region="eu-west-1", endpoint_url=local.url, public=True)
        await push_one_layer_and_an_image(settings, os.urandom(1000))
        counts = local.request_log.counts
    assert ("UploadLayerPart", None) in counts
    assert ("PutImage", None) in counts


async def test_an_ecr_public_registry_has_ecr_publics_limits() -> None:
    async with open_ecr_registry(EcrSettings(endpoint_url="http://127.0.0.1:9", public=True)) as r:
        assert r.limits == ECR_PUBLIC_LIMITS
    async with open_ecr_registry(EcrSettings(region="eu-west-1", endpoint_url="http://x:9")) as r:
        assert r.limits == ECR_LIMITS


def client_error(code: str) -> botocore.exceptions.ClientError:
    response = {"Error": {"Code": code, "Message": f"{code} happened"}}
    return botocore.exceptions.ClientError(response, "InitiateLayerUpload")  # type: ignore[arg-type]


def test_a_repository_missing_in_the_central_account_says_which_and_what_to_do() -> None:
    central = EcrTarget("ecr", ECR_LIMITS, CENTRAL_ACCOUNT)
    with pytest.raises(RegistryError) as caught:
        raise_client_error(client_error("RepositoryNotFoundException"), "team/app", central)
    message = caught.value.message
    assert f"repository 'team/app' in registry {CENTRAL_ACCOUNT}" in message
    assert f"--registry-id {CENTRAL_ACCOUNT}" in message
    assert "check the registry id" in message
    assert caught.value.code == "RepositoryNotFoundException"


def test_ecr_publics_advice_names_its_own_commands() -> None:
    with pytest.raises(RegistryError) as caught:
        raise_client_error(client_error("AccessDeniedException"), "team/app", PUBLIC_ECR)
    assert "ecr-public:UploadLayerPart" in caught.value.message


# --- the engine under a registry's limits -----------------------------------------------


def engine_for(registry: MemoryRegistry) -> UploadEngine:
    retry = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)
    settings = EngineSettings(
        concurrency=2,
        memory_budget=64 * MIB,
        part_size=None,
        retry=retry,
        overlap_threshold=1 << 62,
    )
    return UploadEngine(registry, settings)


async def test_the_engine_cuts_parts_to_fit_the_registrys_part_count(tmp_path: Path) -> None:
    few_parts = RegistryLimits(
        kind="a strict registry", max_parts=3, max_layer_bytes=None, min_part_size=5 * MIB
    )
    registry = MemoryRegistry(part_size=5 * MIB, limits=few_parts)
    path, digest = make_layer(tmp_path, "l", 20 * MIB)
    result = await engine_for(registry).push_layer(LayerJob(path, "team/app"))
    assert result.outcome is Outcome.UPLOADED
    assert registry.parts_sent == 3  # 7 MiB parts, not the offered 5 MiB (4 parts)
    assert registry.layers[digest] == path.read_bytes()


async def test_a_layer_over_ecr_publics_size_is_refused_before_any_request(
    tmp_path: Path,
) -> None:
    registry = MemoryRegistry(limits=ECR_PUBLIC_LIMITS)
    huge = tmp_path / "huge.tar"
    huge.touch()
    os.truncate(huge, 10_000 * MIB + 1)  # sparse
    result = await engine_for(registry).push_layer(LayerJob(huge, "team/app"))
    assert result.outcome is Outcome.FAILED
    assert result.error is not None
    assert result.error.code == ErrorCode.LAYER_TOO_LARGE
    assert result.error.path == huge
    assert "ECR Public's limit of 10,485,760,000 bytes (10,000 MiB)" in result.error.message
    assert (registry.uploads_started, registry.parts_sent) == (0, 0)
