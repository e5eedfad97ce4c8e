"""Which registry a push talks to: ECR by default, an OCI Distribution registry by URL.

The choice is made here, where the registry object is created, so the
engine and the image push only ever see the ``Registry`` protocol.  Each
backend is imported only when chosen: a push to an OCI registry never loads
botocore.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from uploaderd.registry.base import Registry

CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection; a registry that takes longer is as good as down."""


@dataclass(frozen=True, slots=True)
class RegistryChoice:
    """Where to push and how to reach it; ``None`` means 'the AWS chain decides'."""

    registry_url: str | None
    insecure: bool
    username: str | None
    region: str | None
    endpoint_url: str | None
    connections: int
    request_timeout: float


@asynccontextmanager
async def open_registry(choice: RegistryChoice) -> AsyncIterator[Registry]:
    """ECR, or the OCI registry at ``choice.registry_url``, open for the block."""
    connect_timeout = min(CONNECT_TIMEOUT, choice.request_timeout)
    if choice.registry_url is not None:
        from uploaderd.registry.oci import OciSettings, open_oci_registry  # noqa: PLC0415

        oci = OciSettings(
            url=choice.registry_url,
            insecure=choice.insecure,
            username=choice.username,
            max_connections=choice.connections,
            read_timeout=choice.request_timeout,
            connect_timeout=connect_timeout,
        )
        async with open_oci_registry(oci) as registry:
            yield registry
        return
    from uploaderd.registry.ecr import EcrSettings, open_ecr_registry  # noqa: PLC0415

    ecr = EcrSettings(
        region=choice.region,
        endpoint_url=choice.endpoint_url,
        max_connections=choice.connections,
        read_timeout=choice.request_timeout,
        connect_timeout=connect_timeout,
    )
    async with open_ecr_registry(ecr) as ecr_registry:
        yield ecr_registry
