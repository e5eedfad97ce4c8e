"""The ``uploaderd local-registry`` flags, kept beside the server they configure."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import (
    DEFAULT_PART_SIZE,
    PRIVATE_LIMITS,
    PUBLIC_LIMITS,
    LocalRegistryConfig,
    check_registry_id,
)
from .faults import parse_fault
from .protocol import REGISTRY_ID


def _fault_spec(spec: str) -> str:
    """Checks a --fault value at parse time, so a typo fails before the server starts."""
    try:
        parse_fault(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def _registry_id(value: str) -> str:
    try:
        return check_registry_id(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage", type=Path, required=True, help="directory for blobs, uploads and index"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument(
        "--part-size",
        type=int,
        default=DEFAULT_PART_SIZE,
        help="partSize returned by InitiateLayerUpload (default %(default)s)",
    )
    parser.add_argument(
        "--auto-create-repositories",
        action="store_true",
        help="create a repository on first use instead of answering RepositoryNotFoundException",
    )
    parser.add_argument(
        "--missing-as-unavailable",
        action="store_true",
        help="report missing layers as layerAvailability UNAVAILABLE, not MissingLayerDigest",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        type=_fault_spec,
        default=[],
        metavar="SPEC",
        help="inject a fault, e.g. throttle-every=5, server-error-every=3, "
        "drop-after-apply-every=4, latency=0.2, forget-upload-after=2, non-json-every=7, "
        "refuse-for=3, slow-body=2 (repeatable)",
    )
    parser.add_argument(
        "--registry-id",
        dest="registry_ids",
        action="append",
        type=_registry_id,
        metavar="ID",
        help=f"a 12-digit account id to serve (repeatable; the first is the one a request "
        f"without registryId means; default {REGISTRY_ID} alone)",
    )
    parser.add_argument(
        "--public",
        action="store_true",
        help="speak ECR Public's API (SpencerFrontendService., signing name ecr-public) "
        "with its limits instead of ECR's",
    )
    parser.add_argument(
        "--max-layer-parts",
        type=_positive,
        metavar="N",
        help=f"parts allowed per upload (default {PRIVATE_LIMITS.max_parts}, "
        f"public {PUBLIC_LIMITS.max_parts})",
    )
    parser.add_argument(
        "--max-layer-bytes",
        type=_positive,
        metavar="N",
        help=f"bytes allowed per layer (default {PRIVATE_LIMITS.max_bytes}, "
        f"public {PUBLIC_LIMITS.max_bytes})",
    )


def config_from_args(args: argparse.Namespace) -> LocalRegistryConfig:
    return LocalRegistryConfig(
        storage=args.storage,
        host=args.host,
        port=args.port,
        part_size=args.part_size,
        auto_create_repositories=args.auto_create_repositories,
        missing_as_unavailable=args.missing_as_unavailable,
        faults=tuple(args.faults),
        registry_ids=tuple(args.registry_ids or (REGISTRY_ID,)),
        public=args.public,
        max_layer_parts=args.max_layer_parts,
        max_layer_bytes=args.max_layer_bytes,
    )
