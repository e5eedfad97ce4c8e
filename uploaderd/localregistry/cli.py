"""The ``uploaderd local-registry`` flags, kept beside the server they configure."""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import DEFAULT_PART_SIZE, LocalRegistryConfig
from .faults import parse_fault


def _fault_spec(spec: str) -> str:
    """Checks a --fault value at parse time, so a typo fails before the server starts."""
    try:
        parse_fault(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


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


def config_from_args(args: argparse.Namespace) -> LocalRegistryConfig:
    return LocalRegistryConfig(
        storage=args.storage,
        host=args.host,
        port=args.port,
        part_size=args.part_size,
        auto_create_repositories=args.auto_create_repositories,
        missing_as_unavailable=args.missing_as_unavailable,
        faults=tuple(args.faults),
    )
