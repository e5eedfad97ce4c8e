"""What ECR's answers mean: transient or permanent, and what the operator is to do.

botocore raises one ``ClientError`` for every refusal; the engine needs to
know which to retry (throttling, 5xx), which mean a resumed upload is to
continue elsewhere (``InvalidLayerPartException``) or start over
(``UploadNotFoundException``), and which are permanent, each with a message
that names the repository, the registry it was asked in, and the fix.  Kept
apart from the calls (ecr.py) because it is a table and its reading, the same
for ECR and ECR Public, and unit-tested on its own.  The answers to single
attempts, which botocore retries before ecr.py sees anything, are read here
too (``report_refused_attempts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import botocore.exceptions
from botocore.retries import standard

from uploaderd.errors import (
    ErrorCode,
    PartOutOfOrderError,
    RegistryError,
    TransientRegistryError,
    UploadNotFoundError,
)
from uploaderd.registry.base import ClientRetries
from uploaderd.registry.limits import ECR_LIMITS, ECR_PUBLIC_LIMITS, RegistryLimits
from uploaderd.registry.quota import retry_after

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
    "(aws {cli} create-repository --repository-name {repository}) or fix the name",
    "RegistryNotFoundException": "the account has no ECR Public registry yet; "
    "create one by creating a repository (aws ecr-public create-repository)",
    "UnsupportedCommandException": "the endpoint does not serve this call; check the "
    "endpoint URL and the --ecr-public setting",
    "InvalidLayerException": "the registry computed a different digest from the bytes sent; "
    "the file was changed or corrupted while being pushed",
    "KmsException": "the repository's KMS key refused the request; check the key policy "
    "and that the key is enabled",
    "AccessDeniedException": "the credentials in use may not push to this repository; "
    "grant {cli}:InitiateLayerUpload, {cli}:UploadLayerPart, {cli}:CompleteLayerUpload and "
    "{cli}:BatchCheckLayerAvailability",
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
class EcrTarget:
    """Which of the two services, and whose registry, as requests and messages name them."""

    service: str
    """The botocore service and AWS CLI command: ``ecr`` or ``ecr-public``."""
    limits: RegistryLimits
    registry_id: str | None = None

    def where(self, repository: str) -> str:
        """The repository as an operator looks it up."""
        place = f"repository {repository!r}"
        if self.registry_id is not None:
            place += f" in registry {self.registry_id}"
        return f"{place} ({self.limits.kind})"


PRIVATE_ECR = EcrTarget("ecr", ECR_LIMITS)
PUBLIC_ECR = EcrTarget("ecr-public", ECR_PUBLIC_LIMITS)


def raise_client_error(
    exc: botocore.exceptions.ClientError, repository: str, target: EcrTarget = PRIVATE_ECR
) -> NoReturn:
    error = exc.response.get("Error", {})
    # botocore names an error it could not parse by its HTTP status; an answer
    # with no code at all is not ECR's error JSON.
    code = str(error.get("Code") or ErrorCode.MALFORMED_RESPONSE)
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
        transient = TransientRegistryError(
            f"{code} (HTTP {status}): {message}", repository=repository, code=code
        )
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        transient.retry_after = retry_after(headers.get("retry-after"))
        raise transient from None
    text = f"{code}: {message}"
    hint = _hint(code, repository, target)
    if hint:
        text += "; " + hint
    raise RegistryError(text, repository=repository, code=code) from None


def _hint(code: str, repository: str, target: EcrTarget) -> str:
    """What to do about a permanent error, in the words of the registry it came from."""
    if code == "RepositoryNotFoundException" and target.registry_id is not None:
        # Pushing into another account: the repository may well exist, in the
        # caller's own registry; say which registry was asked.
        create = f"aws {target.service} create-repository --repository-name {repository}"
        if target.service == "ecr":
            create += f" --registry-id {target.registry_id}"
        return (
            f"{target.where(repository)} does not exist: create it in account "
            f"{target.registry_id} ({create}), or check the registry id and that the role "
            "in use may push there (that account's repository policy must allow this one)"
        )
    hint = PERMANENT_HINTS.get(code, "")
    return hint.format(repository=repository, cli=target.service) if hint else ""


def required_field(response: Any, key: str, operation: str, repository: str) -> Any:
    """A field the protocol guarantees; its absence means the answer was not ECR's JSON."""
    if not isinstance(response, dict) or key not in response:
        raise TransientRegistryError(
            f"the registry's answer to {operation} has no {key!r}; it is not ECR's "
            "JSON protocol (a proxy or a wrong endpoint URL?)",
            repository=repository,
            code=ErrorCode.MALFORMED_RESPONSE,
        )
    return response[key]


def retries_before(response: Any) -> int:
    """How often botocore retried before this answer or refusal (its ``ResponseMetadata``)."""
    metadata = response.get("ResponseMetadata") if isinstance(response, dict) else None
    attempts = metadata.get("RetryAttempts", 0) if isinstance(metadata, dict) else 0
    return attempts if isinstance(attempts, int) else 0


_RETRYABLE = standard.OrRetryChecker(
    [
        standard.TransientRetryableChecker(),
        standard.ThrottledRetryableChecker(),
        standard.ModeledRetryableChecker(),
    ]
)
_ATTEMPT = standard.RetryEventAdapter()


def report_refused_attempts(client: Any, retries: ClientRetries) -> None:
    """Tell ``retries`` of every attempt ``client`` sees refused, as its answer arrives.

    Through botocore's ``needs-retry`` event for the service (ecr, ecr-public),
    which follows every attempt.  The handler returns None always: the first
    handler to return something decides whether botocore retries, and that is
    its retry handler's to decide.
    """

    def attempt_answered(**needs_retry: Any) -> None:
        if _attempt_refused(**needs_retry):
            retries.attempt_refused()

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"needs-retry.{service}", attempt_answered)


def _attempt_refused(**needs_retry: Any) -> bool:
    """Whether one attempt, as botocore's ``needs-retry`` event reports it, failed retryably.

    botocore's own rules for its standard and adaptive modes (throttling codes,
    5xx, dropped connections, errors its models call retryable), without the
    attempt count: whether it will retry is its business, that the registry
    refused is the limit's.
    """
    return bool(_RETRYABLE.is_retryable(_ATTEMPT.create_retry_context(**needs_retry)))
