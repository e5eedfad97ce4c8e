"""The settings one local registry runs with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_PART_SIZE = 10 * 1024 * 1024


@dataclass(frozen=True)
class LocalRegistryConfig:
    """Everything that changes how the local registry behaves.

    ``auto_create_repositories`` and ``missing_as_unavailable`` exist because real ECR
    set-ups differ (registries with create-on-push, and the two ways ECR reports a
    missing layer); clients must cope with both, so tests must be able to show both.
    ``faults`` are spec strings (see :func:`uploaderd.localregistry.faults.parse_fault`).
    """

    storage: Path
    host: str = "127.0.0.1"
    port: int = 0
    part_size: int = DEFAULT_PART_SIZE
    auto_create_repositories: bool = False
    missing_as_unavailable: bool = False
    faults: tuple[str, ...] = ()
