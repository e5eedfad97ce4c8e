"""Which registry a push talks to: ECR by default, ECR Public, or an OCI registry by URL.

The choice is made here, where the registry object is created, so the
engine and the image push only ever see the ``Registry`` protocol.  Each
backend is imported only when chosen: a push to an OCI registry never loads
botocore.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from uploaderd.errors import ConfigurationError, ErrorCode
from uploaderd.registry.base import Registry

ACCOUNT_ID = re.compile(r"[0-9]{12}")

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
    registry_id: str | None = None
    """ECR: the account whose registry receives the pushes (a central account)."""
    ecr_public: bool = False
    """ECR Public instead of private ECR."""
    ecr_quota_share: float = 1.0
    """ECR: this host's share of each action's rate quota (see registry/quota.py)."""

    def check(self) -> None:
        """Refuse settings that name two registries at once, before anything is sent."""
        if self.registry_url is None:
            return
        for name, given in (
            ("ecr_public", self.ecr_public),
            ("registry_id", self.registry_id),
            ("ecr_quota_share", self.ecr_quota_share != 1.0),
        ):
            if given:
                raise ConfigurationError(
                    f"{name} applies to ECR, but registry = {self.registry_url!r} sends "
                    f"everything to an OCI registry; unset one of the two",
                    code=ErrorCode.INVALID_SETTING,
                )


def account_id(value: object) -> str:
    """An AWS account id, as ``registryId`` carries it: exactly 12 digits.

    Checked here, at start, because ECR's own refusal of a malformed id is an
    InvalidParameterException per layer, long after the operator has left.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # TOML drops leading zeros: such an id must be quoted
    if not isinstance(value, str) or ACCOUNT_ID.fullmatch(value) is None:
        raise ValueError(
            f"{value!r} is not an AWS account id: give the 12 digits of the account "
            'that owns the registry (in TOML, quoted: registry_id = "012345678901")'
        )
    return value


def quota_share(value: object) -> float:
    """A fraction of ECR's rate quotas, in (0, 1]: 0.01 for one host of a hundred."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number")
    try:
        share = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not 0 < share <= 1:  # also refuses nan
        raise ValueError(
            f"{value!r} is out of range: give a fraction above 0 and at most 1 "
            "(this host's share of the account's ECR request quotas, e.g. 0.01 for one of 100)"
        )
    return share


@asynccontextmanager
async def open_registry(choice: RegistryChoice) -> AsyncIterator[Registry]:
    """ECR, or the OCI registry at ``choice.registry_url``, open for the block."""
    choice.check()
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
        registry_id=choice.registry_id,
        public=choice.ecr_public,
        quota_share=choice.ecr_quota_share,
    )
    async with open_ecr_registry(ecr) as ecr_registry:
        yield ecr_registry
