"""An ECR-compatible registry server speaking ECR's real AWS JSON 1.1 wire protocol.

It enforces ECR's layer push rules (part order, part sizes, digests) so a client that
passes against it passes against ECR, and it can inject faults (throttling, server
errors, dropped connections, refused connections) so retry and resume logic can be
tested on purpose. uploaderd's tests and demo use it; so can users testing their own
set-up: ``uploaderd local-registry --storage DIR``.  With ``public=True``
(``--public``) it speaks ECR Public's protocol and limits instead.
"""

from __future__ import annotations

from .cli import add_arguments, config_from_args
from .config import PRIVATE_LIMITS, PUBLIC_LIMITS, LayerLimits, LocalRegistryConfig
from .faults import Fault, FaultKind, parse_fault
from .listener import LocalRegistry, serve_forever
from .protocol import PUBLIC_TARGET_PREFIX, REGISTRY_ID, TARGET_PREFIX
from .stats import RequestLog

__all__ = [
    "PRIVATE_LIMITS",
    "PUBLIC_LIMITS",
    "PUBLIC_TARGET_PREFIX",
    "REGISTRY_ID",
    "TARGET_PREFIX",
    "Fault",
    "FaultKind",
    "LayerLimits",
    "LocalRegistry",
    "LocalRegistryConfig",
    "RequestLog",
    "add_arguments",
    "config_from_args",
    "parse_fault",
    "serve_forever",
]
