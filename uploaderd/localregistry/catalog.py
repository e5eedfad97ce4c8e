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


@dataclass
class StoredLayer:
    size: int
    media_type: str = DOCKER_LAYER


@dataclass
class StoredImage:
    manifest: str
    media_type: str


@dataclass
class Repository:
    name: str
    created_at: float
    tag_mutability: str = "MUTABLE"
    layers: dict[str, StoredLayer] = field(default_factory=dict)
    images: dict[str, StoredImage] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def describe(self) -> JsonObject:
        return {
            "repositoryArn": f"arn:aws:ecr:{REGION}:{REGISTRY_ID}:repository/{self.name}",
            "registryId": REGISTRY_ID,
            "repositoryName": self.name,
            "repositoryUri": f"{REGISTRY_ID}.dkr.ecr.{REGION}.amazonaws.com/{self.name}",
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


class Catalog:
    def __init__(self, index_path: Path, *, auto_create: bool) -> None:
        self._index_path = index_path
        self._auto_create = auto_create
        self._repositories: dict[str, Repository] = {}
        self._load()

    def create(self, name: object, tag_mutability: str = "MUTABLE") -> Repository:
        name = check_repository_name(name)
        if name in self._repositories:
            raise EcrError(
                "RepositoryAlreadyExistsException",
                f"The repository with name '{name}' already exists in the registry "
                f"with id '{REGISTRY_ID}'",
            )
        repository = Repository(name, time.time(), tag_mutability)
        self._repositories[name] = repository
        self.save()
        return repository

    def get(self, name: object, registry_id: object = None) -> Repository:
        """Finds a repository, creating it first if the server was told to.

        A foreign ``registryId`` is reported as a missing repository, as ECR does
        for a registry the caller cannot see.
        """
        name = check_repository_name(name)
        repository = self._repositories.get(name)
        if repository is None and self._auto_create and registry_id in (None, REGISTRY_ID):
            repository = self.create(name)
        if repository is None or registry_id not in (None, REGISTRY_ID):
            raise EcrError(
                "RepositoryNotFoundException",
                f"The repository with name '{name}' does not exist in the registry "
                f"with id '{registry_id or REGISTRY_ID}'",
            )
        return repository

    def all(self) -> list[Repository]:
        return sorted(self._repositories.values(), key=lambda r: r.name)

    def save(self) -> None:
        """Rewrites the index atomically so a crash never leaves half a file."""
        data = {name: asdict(repo) for name, repo in self._repositories.items()}
        partial = self._index_path.with_suffix(".tmp")
        partial.write_text(json.dumps(data))
        os.replace(partial, self._index_path)

    def _load(self) -> None:
        if not self._index_path.is_file():
            return
        data = json.loads(self._index_path.read_text())
        for name, raw in data.items():
            self._repositories[name] = Repository(
                name=name,
                created_at=raw["created_at"],
                tag_mutability=raw["tag_mutability"],
                layers={d: StoredLayer(**layer) for d, layer in raw["layers"].items()},
                images={d: StoredImage(**image) for d, image in raw["images"].items()},
                tags=dict(raw["tags"]),
            )
