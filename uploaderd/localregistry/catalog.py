"""Which repositories exist, which layers and images each holds, and ECR's naming rules.

Blobs are stored once on disk, but ECR scopes them to a repository: a layer pushed to
one repository is missing from every other, so membership is tracked here per
repository. The catalog is small, so it lives in memory and is rewritten whole to
``<storage>/index.json`` after each change, letting a restarted server keep its data.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .protocol import REGION, REGISTRY_ID, EcrError, JsonObject

#: ECR's repository name pattern, from its API reference.
REPOSITORY_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: index.json's layout since repositories live under registry ids.
INDEX_VERSION = 2


@dataclass
class StoredLayer:
    size: int
    media_type: str = DOCKER_LAYER


@dataclass
class StoredImage:
    manifest: str
    media_type: str
    #: When PutImage stored it (DescribeImages' imagePushedAt); 0 for an older index.
    pushed_at: float = 0.0


@dataclass
class Repository:
    name: str
    created_at: float
    tag_mutability: str = "MUTABLE"
    layers: dict[str, StoredLayer] = field(default_factory=dict)
    images: dict[str, StoredImage] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    registry_id: str = REGISTRY_ID

    def describe(self, *, public: bool = False) -> JsonObject:
        """The Repository shape of ECR's model, or of ECR Public's (fewer members)."""
        if public:
            return {
                "repositoryArn": f"arn:aws:ecr-public::{self.registry_id}:repository/{self.name}",
                "registryId": self.registry_id,
                "repositoryName": self.name,
                "repositoryUri": f"public.ecr.aws/{self.registry_id}/{self.name}",
                "createdAt": self.created_at,
            }
        return {
            "repositoryArn": f"arn:aws:ecr:{REGION}:{self.registry_id}:repository/{self.name}",
            "registryId": self.registry_id,
            "repositoryName": self.name,
            "repositoryUri": f"{self.registry_id}.dkr.ecr.{REGION}.amazonaws.com/{self.name}",
            "createdAt": self.created_at,
            "imageTagMutability": self.tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": False},
            "encryptionConfiguration": {"encryptionType": "AES256"},
        }


def check_repository_name(name: object) -> str:
    """ECR refuses a malformed name on every operation, not only on creation."""
    if (
        not isinstance(name, str)
        or not 2 <= len(name) <= 256
        or not REPOSITORY_NAME.fullmatch(name)
    ):
        raise EcrError(
            "InvalidParameterException",
            f"Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            f"'must satisfy regular expression {REPOSITORY_NAME.pattern}' ({name!r})",
        )
    return name


def is_digest(value: object) -> bool:
    return isinstance(value, str) and DIGEST.fullmatch(value) is not None


def repository_not_found(name: object, registry_id: object) -> EcrError:
    return EcrError(
        "RepositoryNotFoundException",
        f"The repository with name '{name}' does not exist in the registry with id '{registry_id}'",
    )


class Catalog:
    """The repositories of every registry id served, each under its own id.

    A repository created with ``registryId=X`` exists under X only, as each account's
    registry is separate in ECR.  A request without ``registryId`` means the first
    id served.  An id not served is answered as a missing repository, as ECR does for
    a registry the caller cannot see.
    """

    def __init__(
        self,
        index_path: Path,
        *,
        auto_create: bool,
        registry_ids: tuple[str, ...] = (REGISTRY_ID,),
    ) -> None:
        self._index_path = index_path
        self._log_path = index_path.with_suffix(".log")
        self._auto_create = auto_create
        self._served = registry_ids
        self._registries: dict[str, dict[str, Repository]] = {r: {} for r in registry_ids}
        self._load()

    @property
    def default_registry_id(self) -> str:
        return self._served[0]

    def registry(self, registry_id: object, name: object = None) -> str:
        """The registry id a request means; ``name`` is for the error's message."""
        if registry_id is None:
            return self.default_registry_id
        if not isinstance(registry_id, str) or registry_id not in self._served:
            if name is None:
                raise EcrError(
                    "RepositoryNotFoundException",
                    f"The registry with id '{registry_id}' does not exist",
                )
            raise repository_not_found(name, registry_id)
        return registry_id

    def create(
        self, name: object, tag_mutability: str = "MUTABLE", registry_id: object = None
    ) -> Repository:
        name = check_repository_name(name)
        registry = self.registry(registry_id, name)
        repositories = self._registries.setdefault(registry, {})
        if name in repositories:
            raise EcrError(
                "RepositoryAlreadyExistsException",
                f"The repository with name '{name}' already exists in the registry "
                f"with id '{registry}'",
            )
        repository = Repository(name, time.time(), tag_mutability, registry_id=registry)
        repositories[name] = repository
        self.save()
        return repository

    def get(self, name: object, registry_id: object = None) -> Repository:
        """Finds a repository, creating it first if the server was told to."""
        name = check_repository_name(name)
        registry = self.registry(registry_id, name)
        repository = self._registries.get(registry, {}).get(name)
        if repository is None and self._auto_create:
            repository = self.create(name, registry_id=registry)
        if repository is None:
            raise repository_not_found(name, registry)
        return repository

    def all(self, registry_id: object = None) -> list[Repository]:
        registry = self.registry(registry_id)
        return sorted(self._registries.get(registry, {}).values(), key=lambda r: r.name)

    def save(self) -> None:
        """Rewrites the index atomically so a crash never leaves half a file."""
        data = {
            "version": INDEX_VERSION,
            "registries": {
                registry: {name: asdict(repo) for name, repo in repositories.items()}
                for registry, repositories in self._registries.items()
            },
        }
        partial = self._index_path.with_suffix(".tmp")
        partial.write_text(json.dumps(data))
        os.replace(partial, self._index_path)
        self._log_path.unlink(missing_ok=True)  # the index now holds what it said

    def add_layer(self, repository: Repository, digest: str, layer: StoredLayer) -> None:
        """Records a completed layer by appending one line, not by rewriting the index.

        A completion is the one change that comes thousands of times a minute (a
        build's small layers); rewriting the whole index for each cost ~9 ms at
        2,000 layers, and the registry, not the client, became what a benchmark
        measured.  A line cut short by a crash is skipped when the log is read back.
        """
        repository.layers[digest] = layer
        entry: JsonObject = {
            "registry": repository.registry_id,
            "repository": repository.name,
            "digest": digest,
            "layer": asdict(layer),
        }
        with self._log_path.open("a") as log:
            log.write(json.dumps(entry) + "\n")

    def _load(self) -> None:
        """Reads the index; an older one (name -> repository) holds the default registry's."""
        if not self._index_path.is_file():
            return
        data = json.loads(self._index_path.read_text())
        if data.get("version") == INDEX_VERSION:
            registries = data["registries"]
        else:
            registries = {self.default_registry_id: data}
        for registry, repositories in registries.items():
            loaded = self._registries.setdefault(registry, {})
            for name, raw in repositories.items():
                loaded[name] = _repository(registry, name, raw)
        self._replay_log()

    def _replay_log(self) -> None:
        """The layers completed since the index was last written (see ``add_layer``)."""
        if not self._log_path.is_file():
            return
        for line in self._log_path.read_text().splitlines():
            try:
                entry = json.loads(line)
                repository = self._registries[entry["registry"]][entry["repository"]]
                repository.layers[entry["digest"]] = StoredLayer(**entry["layer"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash, or for a repository gone since


def _repository(registry_id: str, name: str, raw: JsonObject) -> Repository:
    return Repository(
        name=name,
        created_at=raw["created_at"],
        tag_mutability=raw["tag_mutability"],
        layers={d: StoredLayer(**layer) for d, layer in raw["layers"].items()},
        images={d: StoredImage(**image) for d, image in raw["images"].items()},
        tags=dict(raw["tags"]),
        registry_id=registry_id,
    )
