"""An ECR-compatible registry server speaking ECR's real AWS JSON 1.1 wire protocol.

It enforces ECR's layer push rules (part order, part sizes, digests) so a client that
passes against it passes against ECR, and it can inject faults (throttling, server
errors, dropped connections, refused connections) so retry and resume logic can be
tested on purpose. uploaderd's tests and demo use it; so can users testing their own
set-up: ``uploaderd local-registry --storage DIR``.
"""

from __future__ import annotations

from .cli import add_arguments, config_from_args
from .config import LocalRegistryConfig
from .faults import Fault, FaultKind, parse_fault
from .listener import LocalRegistry, serve_forever
from .protocol import REGISTRY_ID

__all__ = [
    "REGISTRY_ID",
    "Fault",
    "FaultKind",
    "LocalRegistry",
    "LocalRegistryConfig",
    "add_arguments",
    "config_from_args",
    "parse_fault",
    "serve_forever",
]
