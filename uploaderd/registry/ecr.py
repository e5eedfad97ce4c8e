"""Amazon ECR through its layer-push API, over aiobotocore.

Credentials, region, endpoint (``AWS_ENDPOINT_URL_ECR``) and botocore's own
per-request retries come from the standard AWS chain; this module adds only
what that chain does not know: which ECR errors are transient, what
InvalidLayerPartException means for a resumed upload, and a message for each
permanent error that tells the operator what to do.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import botocore.exceptions
import botocore.parsers
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from uploaderd.errors import (
    ConfigurationError,
    CredentialsError,
    ErrorCode,
    PartOutOfOrderError,
    RegistryError,
    TransientRegistryError,
    UploadNotFoundError,
)
from uploaderd.registry.base import Allocate, PartPayload, PartSource, UploadSession, new_buffer
from uploaderd.registry.ecrpart import EcrPart, encode_ecr_part, install_part_hooks

if TYPE_CHECKING:
    from types_aiobotocore_ecr import ECRClient

TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "LimitExceededException",
        "ServerException",
        "ServiceUnavailableException",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

PERMANENT_HINTS = {
    "RepositoryNotFoundException": "create the repository first "
    "(aws ecr create-repository --repository-name {repository}) or fix the name",
    "InvalidLayerException": "the registry computed a different digest from the bytes sent; "
    "the file was changed or corrupted while being pushed",
    "KmsException": "the repository's KMS key refused the request; check the key policy "
    "and that the key is enabled",
    "AccessDeniedException": "the credentials in use may not push to this repository; "
    "grant ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload and "
    "ecr:BatchCheckLayerAvailability",
    "UnrecognizedClientException": "the AWS access key is not valid; check the credentials",
    "InvalidSignatureException": "the request signature was refused; check the secret key "
    "and the clock",
    "ExpiredTokenException": "the session token has expired; refresh the credentials",
    "LayerPartTooSmallException": "a part other than the last was under 5 MiB; "
    "use a --part-size of at least 5 MiB",
    "EmptyUploadException": "no bytes were uploaded before completion",
    "InvalidParameterException": "the registry refused a parameter",
    "LayersNotFoundException": "the manifest names blobs the repository does not have",
    "ImageTagAlreadyExistsException": "the repository's tags are immutable; push under a new --tag",
}


@dataclass(frozen=True, slots=True)
class EcrSettings:
    """How to reach ECR; every ``None`` means 'the standard AWS chain decides'."""

    region: str | None = None
    endpoint_url: str | None = None
    max_connections: int = 10
    connect_timeout: float = 10.0
    read_timeout: float = 120.0


class EcrRegistry:
    """The ``Registry`` interface over one aiobotocore ECR client."""

    memory_per_part_byte = 1.4
    """The body is 4/3 of the part, and it is the only copy."""

    def __init__(self, client: ECRClient) -> None:
        self._client = client
        install_part_hooks(client)

    def encode_part(
        self, session: UploadSession, source: PartSource, allocate: Allocate = new_buffer
    ) -> PartPayload:
        return encode_ecr_part(session, source, allocate)

    async def ping(self) -> None:
        try:
            await self._call("", self._client.describe_repositories(maxResults=1))
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
                self._client.batch_check_layer_availability(
                    repositoryName=repository, layerDigests=batch
                ),
            )
            for layer in response.get("layers", []):
                if layer.get("layerAvailability") == "AVAILABLE":
                    missing.discard(layer.get("layerDigest", ""))
        return missing

    async def start_upload(self, repository: str) -> UploadSession:
        response = await self._call(
            repository, self._client.initiate_layer_upload(repositoryName=repository)
        )
        upload_id = _required(response, "uploadId", "InitiateLayerUpload", repository)
        part_size = _required(response, "partSize", "InitiateLayerUpload", repository)
        return UploadSession(repository, str(upload_id), int(part_size))

    async def upload_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        if not isinstance(part, EcrPart):
            raise TypeError("ECR parts come from EcrRegistry.encode_part (see the hooks)")
        response = await self._call(
            session.repository,
            self._client.upload_layer_part(
                repositoryName=session.repository,
                uploadId=session.upload_id,
                partFirstByte=first_byte,
                partLastByte=first_byte + part.length - 1,
                layerPartBlob=part,  # type: ignore[arg-type]  # an EcrPart: see the hooks
            ),
        )
        last = _required(response, "lastByteReceived", "UploadLayerPart", session.repository)
        return int(last)

    async def complete_upload(self, session: UploadSession, digest: str) -> None:
        try:
            response = await self._call(
                session.repository,
                self._client.complete_layer_upload(
                    repositoryName=session.repository,
                    uploadId=session.upload_id,
                    layerDigests=[digest],
                ),
            )
        except RegistryError as exc:
            if exc.code != "LayerAlreadyExistsException":
                raise
            return
        # A 200 that is not ECR's answer (a proxy's page) must not count as a
        # completion, or the file would be moved to done/ without its layer.
        _required(response, "layerDigest", "CompleteLayerUpload", session.repository)

    async def put_manifest(
        self, repository: str, tag: str, manifest: bytes, media_type: str
    ) -> None:
        try:
            await self._call(
                repository,
                self._client.put_image(
                    repositoryName=repository,
                    imageManifest=manifest.decode("utf-8"),
                    imageManifestMediaType=media_type,
                    imageTag=tag,
                ),
            )
        except RegistryError as exc:
            # The same manifest under the same tag: a repeated push, nothing to change.
            if exc.code != "ImageAlreadyExistsException":
                raise

    async def _call(self, repository: str, request: Any) -> Any:
        try:
            return await request
        except botocore.exceptions.ClientError as exc:
            _raise_client_error(exc, repository)
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


def _raise_client_error(exc: botocore.exceptions.ClientError, repository: str) -> NoReturn:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", "")) or code
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code == "InvalidLayerPartException":
        last_valid = int(exc.response.get("lastValidByteReceived", -1))  # type: ignore[call-overload]
        raise PartOutOfOrderError(
            f"registry holds bytes up to {last_valid}: {message}",
            next_byte=last_valid + 1,
            repository=repository,
        ) from None
    if code == "UploadNotFoundException":
        raise UploadNotFoundError(message, repository=repository, code=code) from None
    if code in TRANSIENT_CODES or status >= 500 or status == 429:
        raise TransientRegistryError(
            f"{code} (HTTP {status}): {message}", repository=repository, code=code
        ) from None
    hint = PERMANENT_HINTS.get(code, "")
    text = f"{code}: {message}"
    if hint:
        text += "; " + hint.format(repository=repository)
    raise RegistryError(text, repository=repository, code=code) from None


def _required(response: Any, key: str, operation: str, repository: str) -> Any:
    """A field the protocol guarantees; its absence means the answer was not ECR's JSON."""
    if not isinstance(response, dict) or key not in response:
        raise TransientRegistryError(
            f"the registry's answer to {operation} has no {key!r}; it is not ECR's "
            "JSON protocol (a proxy or a wrong endpoint URL?)",
            repository=repository,
            code=ErrorCode.MALFORMED_RESPONSE,
        )
    return response[key]


@asynccontextmanager
async def open_ecr_registry(settings: EcrSettings) -> AsyncIterator[EcrRegistry]:
    """An ``EcrRegistry`` whose connection pool is sized to the layers in flight."""
    config = AioConfig(
        max_pool_connections=settings.max_connections,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
    )
    session = get_session()
    # botocore reads only AWS_DEFAULT_REGION; the AWS CLI v2 and the other
    # SDKs also honour AWS_REGION, and operators expect it to work here too.
    region = settings.region or os.environ.get("AWS_REGION") or None
    try:
        client_context = session.create_client(
            "ecr",
            region_name=region,
            endpoint_url=settings.endpoint_url,
            config=config,
        )
        async with client_context as client:
            yield EcrRegistry(client)
    except botocore.exceptions.NoRegionError:
        raise ConfigurationError(
            "no AWS region configured; pass --region or set AWS_REGION "
            "(or AWS_DEFAULT_REGION, or region in the AWS config file)",
            code=ErrorCode.NO_REGION,
        ) from None
