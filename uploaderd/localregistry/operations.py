"""The ECR operations the local registry implements, by their wire names.

ECR Public has a subset of ECR's operations (no BatchGetImage, no
GetDownloadUrlForLayer: pulls go through public.ecr.aws), so a public-mode registry
answers those as unknown, as ECR Public itself would.
"""

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
    def __init__(self, catalog: Catalog, *, public: bool = False) -> None:
        self._catalog = catalog
        self._public = public

    async def create_repository(self, call: ApiCall) -> JsonObject:
        """ECR Public's CreateRepository has no registryId nor tag mutability (always mutable)."""
        mutability = params.optional_string(call.body, "imageTagMutability") or "MUTABLE"
        if mutability not in TAG_MUTABILITIES:
            raise params.invalid("imageTagMutability", f"must be one of {sorted(TAG_MUTABILITIES)}")
        repository = self._catalog.create(
            call.body.get("repositoryName"), mutability, call.body.get("registryId")
        )
        return {"repository": repository.describe(public=self._public)}

    async def describe_repositories(self, call: ApiCall) -> JsonObject:
        """Lists all repositories in one page: the local registry never holds many."""
        registry_id = call.body.get("registryId")
        if "repositoryNames" in call.body:
            names = params.string_list(call.body, "repositoryNames", low=1, high=100)
            repositories = [self._catalog.get(name, registry_id) for name in names]
        else:
            repositories = self._catalog.all(registry_id)
        return {"repositories": [r.describe(public=self._public) for r in repositories]}


#: What ECR Public lacks of the operations below (botocore's ecr-public model).
NOT_IN_ECR_PUBLIC = frozenset({"GetDownloadUrlForLayer", "BatchGetImage"})


def operation_table(
    catalog: Catalog, layers: LayerOperations, *, public: bool = False
) -> dict[str, Operation]:
    repositories = RepositoryOperations(catalog, public=public)
    images = ImageOperations(catalog, public=public)
    table: dict[str, Operation] = {
        "CreateRepository": repositories.create_repository,
        "DescribeRepositories": repositories.describe_repositories,
        "BatchCheckLayerAvailability": layers.batch_check_layer_availability,
        "InitiateLayerUpload": layers.initiate_layer_upload,
        "UploadLayerPart": layers.upload_layer_part,
        "CompleteLayerUpload": layers.complete_layer_upload,
        "GetDownloadUrlForLayer": layers.get_download_url_for_layer,
        "PutImage": images.put_image,
        "BatchGetImage": images.batch_get_image,
        "DescribeImages": images.describe_images,
    }
    if public:
        return {name: op for name, op in table.items() if name not in NOT_IN_ECR_PUBLIC}
    return table


def find_operation(table: dict[str, Operation], name: str) -> Operation:
    operation = table.get(name)
    if operation is None:
        raise EcrError(
            "UnknownOperationException",
            f"{name} is not implemented by uploaderd's local registry",
        )
    return operation
