"""How the aiobotocore client is configured: what the AWS chain decides, and the two gaps
uploaderd fills in it (the retry mode when none is named, and ``AWS_REGION``).

Apart from ecr.py, which speaks the layer-push API through the client, because
this is configuration read once at start-up and the calls are the hot path.
"""

from __future__ import annotations

import os

import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

ECR_PUBLIC_REGION = "us-east-1"
"""ECR Public's API is served only there, whatever region the host's other pushes use."""


def client_config(
    session: AioSession, *, max_connections: int, connect_timeout: float, read_timeout: float
) -> AioConfig:
    """The pool and timeouts asked for; the AWS chain's retry mode, or adaptive if it names none."""
    return AioConfig(
        max_pool_connections=max_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries=None if _retry_mode_chosen(session) else {"mode": "adaptive"},
    )


def client_region(region: str | None, *, public: bool) -> str | None:
    """The region to call: us-east-1 for ECR Public, else the setting or ``AWS_REGION``.

    botocore reads only AWS_DEFAULT_REGION; the AWS CLI v2 and the other SDKs
    also honour AWS_REGION, and operators expect it to work here too.  None
    leaves it to the AWS chain (the config file).
    """
    if public:
        return ECR_PUBLIC_REGION  # the host's region is for its other services
    return region or os.environ.get("AWS_REGION") or None


def _retry_mode_chosen(session: AioSession) -> bool:
    """Whether the AWS chain names a retry mode (``AWS_RETRY_MODE``, the profile's ``retry_mode``).

    If it does, botocore uses it; if not, uploaderd asks for ``adaptive``: its
    client-side rate limiter learns from throttling, and beside the AIMD limit
    it cut ThrottlingExceptions from 45 to 6 (auto) and from 77 to 16 (fixed
    16) at equal or better throughput (``python -m benchmarks throttling``).
    """
    if os.environ.get("AWS_RETRY_MODE"):
        return True
    try:
        return bool(session.get_scoped_config().get("retry_mode"))
    except botocore.exceptions.ProfileNotFound:
        return False  # creating the client reports the missing profile
