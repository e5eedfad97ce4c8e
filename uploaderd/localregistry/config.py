"""The settings one local registry runs with, and the per-layer limits of each mode."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .protocol import REGISTRY_ID

DEFAULT_PART_SIZE = 10 * 1024 * 1024
MIB = 1024 * 1024
ACCOUNT_ID = re.compile(r"[0-9]{12}")


@dataclass(frozen=True)
class LayerLimits:
    """ECR's service quotas on one layer upload: parts, and bytes in all."""

    max_parts: int
    max_bytes: int


#: ECR's quotas (service-quotas page): 4,200 parts and 52,000 MiB per layer.
PRIVATE_LIMITS = LayerLimits(max_parts=4200, max_bytes=52000 * MIB)
#: ECR Public's tighter ones: 1,000 parts and 10,000 MiB per layer.
PUBLIC_LIMITS = LayerLimits(max_parts=1000, max_bytes=10000 * MIB)


@dataclass(frozen=True)
class LocalRegistryConfig:
    """Everything that changes how the local registry behaves.

    ``auto_create_repositories`` and ``missing_as_unavailable`` exist because real ECR
    set-ups differ (registries with create-on-push, and the two ways ECR reports a
    missing layer); clients must cope with both, so tests must be able to show both.
    ``faults`` are spec strings (see :func:`uploaderd.localregistry.faults.parse_fault`).

    ``registry_ids`` are the account ids served, the first being the registry a request
    without ``registryId`` means: pushing into a central account names it on every call,
    and a test must be able to see a client that forgets to.  ``public`` speaks ECR
    Public's protocol (``SpencerFrontendService.``) instead of ECR's.  ``max_layer_parts``
    and ``max_layer_bytes`` default to the mode's quotas (see :attr:`layer_limits`); a
    test sets a small byte limit to show the rule without sending gigabytes.
    """

    storage: Path
    host: str = "127.0.0.1"
    port: int = 0
    part_size: int = DEFAULT_PART_SIZE
    auto_create_repositories: bool = False
    missing_as_unavailable: bool = False
    faults: tuple[str, ...] = ()
    registry_ids: tuple[str, ...] = (REGISTRY_ID,)
    public: bool = False
    max_layer_parts: int | None = None
    max_layer_bytes: int | None = None

    def __post_init__(self) -> None:
        if not self.registry_ids:
            raise ValueError("the local registry must serve at least one registry id")
        for registry_id in self.registry_ids:
            check_registry_id(registry_id)

    @property
    def default_registry_id(self) -> str:
        return self.registry_ids[0]

    @property
    def layer_limits(self) -> LayerLimits:
        quotas = PUBLIC_LIMITS if self.public else PRIVATE_LIMITS
        return LayerLimits(
            max_parts=self.max_layer_parts or quotas.max_parts,
            max_bytes=self.max_layer_bytes or quotas.max_bytes,
        )


def check_registry_id(value: str) -> str:
    """A registry id is an AWS account id: exactly 12 digits."""
    if not ACCOUNT_ID.fullmatch(value):
        raise ValueError(f"a registry id is a 12-digit AWS account id, not {value!r}")
    return value
