"""The ECR operations the local registry implements, by their wire names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from . import params
from .catalog import Catalog
from .images import ImageOperations
from .layers import LayerOperations
from .protocol import ApiCall, EcrError, JsonObject

Operation = Callable[[ApiCall], Awaitable[JsonObject]]

TAG_MUTABILITIES = frozenset(
    {"MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION"}
)


class RepositoryOperations:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def create_repository(self, call: ApiCall) -> JsonObject:
        mutability = params.optional_string(call.body, "imageTagMutability") or "MUTABLE"
        if mutability not in TAG_MUTABILITIES:
            raise params.invalid("imageTagMutability", f"must be one of {sorted(TAG_MUTABILITIES)}")
        repository = self._catalog.create(call.body.get("repositoryName"), mutability)
        return {"repository": repository.describe()}

    async def describe_repositories(self, call: ApiCall) -> JsonObject:
        """Lists all repositories in one page: the local registry never holds many."""
        registry_id = call.body.get("registryId")
        if "repositoryNames" in call.body:
            names = params.string_list(call.body, "repositoryNames", low=1, high=100)
            repositories = [self._catalog.get(name, registry_id) for name in names]
        else:
            repositories = self._catalog.all()
        return {"repositories": [r.describe() for r in repositories]}


def operation_table(catalog: Catalog, layers: LayerOperations) -> dict[str, Operation]:
    repositories = RepositoryOperations(catalog)
    images = ImageOperations(catalog)
    return {
        "CreateRepository": repositories.create_repository,
        "DescribeRepositories": repositories.describe_repositories,
        "BatchCheckLayerAvailability": layers.batch_check_layer_availability,
        "InitiateLayerUpload": layers.initiate_layer_upload,
        "UploadLayerPart": layers.upload_layer_part,
        "CompleteLayerUpload": layers.complete_layer_upload,
        "GetDownloadUrlForLayer": layers.get_download_url_for_layer,
        "PutImage": images.put_image,
        "BatchGetImage": images.batch_get_image,
    }


def find_operation(table: dict[str, Operation], name: str) -> Operation:
    operation = table.get(name)
    if operation is None:
        raise EcrError(
            "UnknownOperationException",
            f"{name} is not implemented by uploaderd's local registry",
        )
    return operation
