"""Amazon ECR and ECR Public through their layer-push API, over aiobotocore.

Credentials, region, endpoint (``AWS_ENDPOINT_URL_ECR``,
``AWS_ENDPOINT_URL_ECR_PUBLIC``) and botocore's own per-request retries come
from the standard AWS chain; this module adds only what that chain does not
know: how a part's prepared body is sent (ecrpart.py), which registry every
call names, and the reading of ECR's refusals (ecranswers.py).

ECR Public (service ``ecr-public``) has the same calls with the same members,
a different target prefix, tighter limits, and an API that exists only in
us-east-1.  A ``registryId`` (an account pushing into a central account's
registry) goes on every call, so no request ever lands in the caller's own
registry by mistake.

Every call first waits for the host's share of its action's rate quota when
one is set (``ecr_quota_share`` below 1.0, token buckets in quota.py).  When
the AWS chain names no retry mode, botocore's adaptive mode is asked for
(ecrclient.py says why).  A ``Retry-After`` on a throttled or failed
answer is carried on the ``TransientRegistryError``, for the retry policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, cast

import botocore.exceptions
import botocore.parsers
from aiobotocore.session import get_session

from uploaderd.errors import (
    ConfigurationError,
    CredentialsError,
    ErrorCode,
    RegistryError,
    TransientRegistryError,
)
from uploaderd.registry.base import (
    Allocate,
    ClientRetries,
    PartPayload,
    PartSource,
    UploadSession,
    new_buffer,
)
from uploaderd.registry.ecranswers import (
    PRIVATE_ECR,
    PUBLIC_ECR,
    EcrTarget,
    raise_client_error,
    report_refused_attempts,
    required_field,
    retries_before,
)
from uploaderd.registry.ecrclient import client_config, client_region
from uploaderd.registry.ecrpart import EcrPart, encode_ecr_part, install_part_hooks
from uploaderd.registry.quota import ECR_PUBLIC_QUOTAS, ECR_QUOTAS, QuotaShare


@dataclass(frozen=True, slots=True)
class EcrSettings:
    """How to reach ECR; every ``None`` means 'the standard AWS chain decides'."""

    region: str | None = None
    endpoint_url: str | None = None
    max_connections: int = 10
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    registry_id: str | None = None
    """The account whose registry receives the layers; ``None``: the caller's own."""
    public: bool = False
    """ECR Public (``ecr-public``, always in us-east-1) instead of private ECR."""
    quota_share: float = 1.0
    """This host's share of each action's rate quota (``ecr_quota_share``; see quota.py)."""


class LayerPushClient(Protocol):
    """The calls made here; ECR's and ECR Public's aiobotocore clients both have them.

    Requests and answers are botocore's dicts either way; this keeps the one
    cast at the client's creation instead of ``Any`` on every call.
    """

    def describe_repositories(self, **request: Any) -> Any: ...
    def batch_check_layer_availability(self, **request: Any) -> Any: ...
    def initiate_layer_upload(self, **request: Any) -> Any: ...
    def upload_layer_part(self, **request: Any) -> Any: ...
    def complete_layer_upload(self, **request: Any) -> Any: ...
    def put_image(self, **request: Any) -> Any: ...


class EcrRegistry:
    """The ``Registry`` interface over one aiobotocore ECR or ECR Public client."""

    memory_per_part_byte = 1.4
    """The body is 4/3 of the part, and it is the only copy."""

    def __init__(
        self,
        client: LayerPushClient,
        target: EcrTarget = PRIVATE_ECR,
        quota: QuotaShare | None = None,
    ) -> None:
        self._client = client
        self.target = target
        self.limits = target.limits
        self.quota = quota
        """The host's share of the rate quotas, awaited before each call; None: unmetered."""
        self.client_retries = ClientRetries()
        install_part_hooks(client)
        report_refused_attempts(client, self.client_retries)

    def _members(self, **members: Any) -> dict[str, Any]:
        """A request's members, with ``registryId`` when one is set: on every call alike."""
        if self.target.registry_id is not None:
            members["registryId"] = self.target.registry_id
        return members

    def encode_part(
        self, session: UploadSession, source: PartSource, allocate: Allocate = new_buffer
    ) -> PartPayload:
        return encode_ecr_part(session, source, allocate, registry_id=self.target.registry_id)

    async def ping(self) -> None:
        try:
            await self._call(
                "",
                "DescribeRepositories",
                self._client.describe_repositories(**self._members(maxResults=1)),
            )
        except TransientRegistryError:
            raise
        except RegistryError:
            pass  # it answered: reachable

    async def missing_layers(self, repository: str, digests: Sequence[str]) -> set[str]:
        # A missing layer comes back either as failures[] (MissingLayerDigest)
        # or as layers[] with layerAvailability UNAVAILABLE: anything not
        # reported AVAILABLE is missing.
        missing = set(digests)
        for start in range(0, len(digests), 100):  # the API takes 100 digests per call
            batch = list(digests[start : start + 100])
            response = await self._call(
                repository,
                "BatchCheckLayerAvailability",
                self._client.batch_check_layer_availability(
                    **self._members(repositoryName=repository, layerDigests=batch)
                ),
            )
            for layer in response.get("layers", []):
                if layer.get("layerAvailability") == "AVAILABLE":
                    missing.discard(layer.get("layerDigest", ""))
        return missing

    async def start_upload(self, repository: str) -> UploadSession:
        response = await self._call(
            repository,
            "InitiateLayerUpload",
            self._client.initiate_layer_upload(**self._members(repositoryName=repository)),
        )
        upload_id = required_field(response, "uploadId", "InitiateLayerUpload", repository)
        part_size = required_field(response, "partSize", "InitiateLayerUpload", repository)
        return UploadSession(repository, str(upload_id), int(part_size))

    async def upload_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        if not isinstance(part, EcrPart):
            raise TypeError("ECR parts come from EcrRegistry.encode_part (see the hooks)")
        response = await self._call(
            session.repository,
            "UploadLayerPart",
            self._client.upload_layer_part(
                **self._members(
                    repositoryName=session.repository,
                    uploadId=session.upload_id,
                    partFirstByte=first_byte,
                    partLastByte=first_byte + part.length - 1,
                    layerPartBlob=part,  # an EcrPart: see the hooks
                )
            ),
        )
        last = required_field(response, "lastByteReceived", "UploadLayerPart", session.repository)
        return int(last)

    async def complete_upload(self, session: UploadSession, digest: str) -> None:
        try:
            response = await self._call(
                session.repository,
                "CompleteLayerUpload",
                self._client.complete_layer_upload(
                    **self._members(
                        repositoryName=session.repository,
                        uploadId=session.upload_id,
                        layerDigests=[digest],
                    )
                ),
            )
        except RegistryError as exc:
            if exc.code != "LayerAlreadyExistsException":
                raise
            return
        # A 200 that is not ECR's answer (a proxy's page) must not count as a
        # completion, or the file would be moved to done/ without its layer.
        required_field(response, "layerDigest", "CompleteLayerUpload", session.repository)

    async def put_manifest(
        self, repository: str, manifest: bytes, media_type: str, tag: str | None = None
    ) -> None:
        # imageDigest on every call: ECR then refuses bytes that are not the
        # ones the parent index names (ImageDigestDoesNotMatchException).
        request = self._members(
            repositoryName=repository,
            imageManifest=manifest.decode("utf-8"),
            imageManifestMediaType=media_type,
            imageDigest="sha256:" + hashlib.sha256(manifest).hexdigest(),
        )
        if tag is not None:
            request["imageTag"] = tag
        try:
            await self._call(repository, "PutImage", self._client.put_image(**request))
        except RegistryError as exc:
            # The same manifest (under the same tag): a repeated push, nothing to change.
            if exc.code != "ImageAlreadyExistsException":
                raise

    async def _call(self, repository: str, action: str, request: Any) -> Any:
        """Await one call's coroutine once the host's share of ``action``'s quota allows it."""
        if self.quota is not None:
            try:
                await self.quota.take(action)
            except BaseException:
                request.close()  # never started: not 'never awaited' either
                raise
        try:
            response = await request
        except botocore.exceptions.ClientError as exc:
            self._count_client_retries(exc.response)  # those before the final refusal
            raise_client_error(exc, repository, self.target)
        except (
            botocore.exceptions.NoCredentialsError,
            botocore.exceptions.PartialCredentialsError,
        ) as exc:
            raise CredentialsError(
                f"no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role",
                code=ErrorCode.NO_CREDENTIALS,
            ) from None
        except (
            botocore.exceptions.HTTPClientError,
            botocore.exceptions.ConnectionError,
            botocore.parsers.ResponseParserError,
        ) as exc:
            raise TransientRegistryError(
                f"cannot reach the registry: {exc}",
                repository=repository,
                code=type(exc).__name__,
            ) from exc
        self._count_client_retries(response)
        return response

    def _count_client_retries(self, response: Any) -> None:
        retries = retries_before(response)
        if retries:
            self.client_retries.retried(retries)


@asynccontextmanager
async def open_ecr_registry(settings: EcrSettings) -> AsyncIterator[EcrRegistry]:
    """An ``EcrRegistry`` whose connection pool is sized to the layers in flight."""
    session = get_session()
    config = client_config(
        session,
        max_connections=settings.max_connections,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )
    target = PUBLIC_ECR if settings.public else PRIVATE_ECR
    target = EcrTarget(target.service, target.limits, settings.registry_id)
    region = client_region(settings.region, public=settings.public)
    try:
        client_context = session.create_client(
            target.service,  # type: ignore[call-overload]  # one of two services, cast below
            region_name=region,
            endpoint_url=settings.endpoint_url,
            config=config,
        )
        async with client_context as client:
            quotas = ECR_PUBLIC_QUOTAS if settings.public else ECR_QUOTAS
            # The whole quota is not metered: a host alone may use all of it, and
            # past it ECR's own ThrottlingException halves the adaptive limit.
            metered = settings.quota_share < 1.0
            quota = QuotaShare.of(quotas, settings.quota_share) if metered else None
            yield EcrRegistry(cast(LayerPushClient, client), target, quota)
    except botocore.exceptions.NoRegionError:
        raise ConfigurationError(
            "no AWS region configured; pass --region or set AWS_REGION "
            "(or AWS_DEFAULT_REGION, or region in the AWS config file)",
            code=ErrorCode.NO_REGION,
        ) from None
