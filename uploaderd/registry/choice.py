"""Which registry ``uploaderd push`` talks to: ECR by default, an OCI registry with --registry.

The choice is made here, where the registry object is created, so the
engine and the image push only ever see the ``Registry`` protocol.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from uploaderd.registry.base import Registry
from uploaderd.registry.ecr import EcrSettings, open_ecr_registry
from uploaderd.registry.oci import OciSettings, open_oci_registry
from uploaderd.registry.ociauth import PASSWORD_ENV


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that select and reach an OCI registry (ECR's own flags live beside them)."""
    parser.add_argument(
        "--registry",
        metavar="URL",
        help="push to this OCI Distribution registry (https://host[:port]) instead of ECR",
    )
    parser.add_argument(
        "--insecure-registry",
        action="store_true",
        help="allow plain http and unverified TLS for --registry",
    )
    parser.add_argument(
        "--registry-username",
        metavar="USER",
        help=f"user for --registry, password from {PASSWORD_ENV} "
        "(default: docker's config.json and credential helpers)",
    )


@asynccontextmanager
async def open_registry(
    *,
    registry_url: str | None,
    insecure: bool,
    username: str | None,
    region: str | None,
    endpoint_url: str | None,
    concurrency: int,
    request_timeout: float,
) -> AsyncIterator[Registry]:
    """ECR, or the OCI registry at ``registry_url``, with a pool sized to the layers in flight."""
    connections = concurrency + 2
    connect_timeout = min(10.0, request_timeout)
    if registry_url is not None:
        oci = OciSettings(
            url=registry_url,
            insecure=insecure,
            username=username,
            max_connections=connections,
            read_timeout=request_timeout,
            connect_timeout=connect_timeout,
        )
        async with open_oci_registry(oci) as registry:
            yield registry
        return
    ecr = EcrSettings(
        region=region,
        endpoint_url=endpoint_url,
        max_connections=connections,
        read_timeout=request_timeout,
        connect_timeout=connect_timeout,
    )
    async with open_ecr_registry(ecr) as ecr_registry:
        yield ecr_registry


def open_registry_for_args(args: argparse.Namespace) -> AbstractAsyncContextManager[Registry]:
    """The registry ``uploaderd push``'s flags name."""
    return open_registry(
        registry_url=args.registry,
        insecure=args.insecure_registry,
        username=args.registry_username,
        region=args.region,
        endpoint_url=args.endpoint_url,
        concurrency=args.concurrency,
        request_timeout=args.request_timeout,
    )
