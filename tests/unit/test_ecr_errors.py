"""How ECR's answers are classified: retry, resume, restart, or fail at once."""

import botocore.exceptions
import pytest

from uploaderd.errors import (
    PartOutOfOrderError,
    RegistryError,
    TransientRegistryError,
    UploadNotFoundError,
)
from uploaderd.registry.ecranswers import raise_client_error


def client_error(code: str, status: int = 400, **fields: object) -> botocore.exceptions.ClientError:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **fields,
    }
    return botocore.exceptions.ClientError(response, "UploadLayerPart")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 400),
        ("LimitExceededException", 400),
        ("ServerException", 500),
        ("SomethingNew", 503),
        ("TooManyRequests", 429),
    ],
)
def test_throttling_and_server_faults_are_transient(code: str, status: int) -> None:
    with pytest.raises(TransientRegistryError) as caught:
        raise_client_error(client_error(code, status), "team/app")
    assert isinstance(caught.value, TransientRegistryError)
    assert caught.value.retry_later
    assert caught.value.code == code


def test_invalid_layer_part_resumes_after_the_last_valid_byte() -> None:
    error = client_error("InvalidLayerPartException", lastValidByteReceived=5242879)
    with pytest.raises(PartOutOfOrderError) as caught:
        raise_client_error(error, "team/app")
    assert caught.value.next_byte == 5242880


def test_upload_not_found_restarts_the_layer() -> None:
    with pytest.raises(UploadNotFoundError):
        raise_client_error(client_error("UploadNotFoundException"), "team/app")


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        ("RepositoryNotFoundException", "aws ecr create-repository --repository-name team/app"),
        ("InvalidLayerException", "changed or corrupted"),
        ("KmsException", "KMS key"),
        ("AccessDeniedException", "ecr:UploadLayerPart"),
        ("LayerPartTooSmallException", "5 MiB"),
    ],
)
def test_permanent_errors_fail_at_once_with_advice(code: str, advice: str) -> None:
    with pytest.raises(RegistryError) as caught:
        raise_client_error(client_error(code), "team/app")
    assert not isinstance(caught.value, TransientRegistryError)
    assert not caught.value.retry_later
    assert caught.value.code == code
    assert advice in caught.value.message
