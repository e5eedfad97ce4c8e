"""The settings themselves: each declared once, with its default, parser, help and reload.

``PushSettings`` is what a push needs, by hand or by the daemon;
``DaemonSettings`` adds what only ``uploaderd run`` reads.  The engine's and
the registry's knobs are built here and only here, so no default is written
twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from uploaderd.engine.limiter import DEFAULT_MAX_CONCURRENCY, MAX_CONCURRENCY
from uploaderd.engine.parts import MAX_PART_SIZE
from uploaderd.engine.retry import RetryPolicy
from uploaderd.engine.scheduler import EngineSettings
from uploaderd.registry.choice import RegistryChoice, account_id, quota_share
from uploaderd.settings.values import (
    Parse,
    boolean,
    choice,
    host_port,
    path,
    seconds,
    show_size,
    size,
    text,
    whole,
)
from uploaderd.sizes import MIB

ENV_PREFIX = "UPLOADERD_"
REGISTRY_SECTION = {
    "url": "registry",
    "insecure": "insecure_registry",
    "username": "registry_username",
}
"""Keys of the ``[registry]`` table and the settings they stand for."""


@dataclass(frozen=True, slots=True)
class Spec:
    """What a setting is, beyond its name and default."""

    help: str
    parse: Parse
    reload: bool
    """True when SIGHUP applies a new value to the running daemon."""
    is_flag: bool = False
    show: Callable[[Any], str] = str
    """How help texts write the default."""


def setting(
    default: Any,
    parse: Parse,
    help: str,
    *,
    reload: bool = False,
    show: Callable[[Any], str] = str,
) -> Any:
    """One setting's declaration; ``default`` is ``REQUIRED`` when there is none."""
    spec = Spec(help, parse, reload, is_flag=parse is boolean, show=show)
    if default is REQUIRED:
        return field(metadata={"spec": spec})
    return field(default=default, metadata={"spec": spec})


REQUIRED: Any = dataclasses.MISSING


def auto_or(parse: Parse) -> Parse:
    """``parse``, or None for "auto": the engine chooses (``concurrency``)."""

    def parse_auto(value: object) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise ValueError(f"{exc} or 'auto'") from None

    return parse_auto


# --- the settings ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PushSettings:
    """What a push needs, by hand or by the daemon: the registry and the engine's knobs."""

    registry: str | None = setting(
        None, text, "push to this OCI Distribution registry URL instead of ECR"
    )
    insecure_registry: bool = setting(
        False, boolean, "allow plain http and unverified TLS for the OCI registry"
    )
    registry_username: str | None = setting(
        None, text, "user for the OCI registry (password: UPLOADERD_REGISTRY_PASSWORD)"
    )
    endpoint_url: str | None = setting(None, text, "ECR endpoint (default: the AWS chain)")
    region: str | None = setting(None, text, "AWS region (default: the AWS chain)")
    registry_id: str | None = setting(
        None,
        account_id,
        "ECR: the 12-digit account whose registry receives the layers (default: your own)",
    )
    ecr_public: bool = setting(
        False, boolean, "push to ECR Public (ecr-public, region us-east-1) instead of ECR"
    )
    ecr_quota_share: float = setting(
        1.0,
        quota_share,
        "ECR: this host's share (0..1] of the account's per-action request quotas, "
        "kept client-side (e.g. 0.01 for each of 100 hosts)",
    )
    concurrency: int | None = setting(
        None,
        auto_or(whole(1, MAX_CONCURRENCY)),
        "layers in flight: 'auto' (the default) adapts it between 1 and max_concurrency "
        "to the throughput and the registry's throttling (AIMD); a number fixes it",
    )
    max_concurrency: int = setting(
        DEFAULT_MAX_CONCURRENCY,
        whole(1, MAX_CONCURRENCY),
        "the most layers in flight when concurrency is auto (also bounded by memory_budget)",
    )
    memory_budget: int = setting(
        256 * MIB,
        size(MAX_PART_SIZE),
        "bytes of layer data held at once, across all layers",
        show=show_size,
    )
    part_size: int | None = setting(
        None,
        size(1),
        "bytes per part, clamped to 5MiB..20MiB (default: the registry's partSize)",
        reload=True,
    )
    max_attempts: int = setting(
        8, whole(1), "attempts per request before the layer fails", reload=True
    )
    request_timeout: float = setting(
        120.0,
        seconds(minimum=0, allow_minimum=False),
        "seconds to wait for one answer from the registry",
    )
    overlap_threshold: int = setting(
        64 * MIB,
        size(1),
        "a loose layer at least this big starts uploading while it is hashed",
        show=show_size,
    )

    def engine_settings(self) -> EngineSettings:
        """The engine's knobs, built here and only here."""
        return EngineSettings(
            concurrency=self.concurrency,
            max_concurrency=self.max_concurrency,
            memory_budget=self.memory_budget,
            part_size=self.part_size,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            overlap_threshold=self.overlap_threshold,
        )

    def registry_choice(self) -> RegistryChoice:
        """Which registry to reach, and how, with a pool sized to the layers in flight."""
        return RegistryChoice(
            registry_url=self.registry,
            insecure=self.insecure_registry,
            username=self.registry_username,
            region=self.region,
            endpoint_url=self.endpoint_url,
            registry_id=self.registry_id,
            ecr_public=self.ecr_public,
            ecr_quota_share=self.ecr_quota_share,
            connections=(self.concurrency or self.max_concurrency) + 2,
            request_timeout=self.request_timeout,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DaemonSettings(PushSettings):
    """Everything ``uploaderd run`` can be told; see ``uploaderd run --help``."""

    watch: Path = setting(REQUIRED, path, "the spool directory: <watch>/<repository>/<file>")
    state_dir: Path = setting(REQUIRED, path, "journal, done/ and failed/ live here")
    metrics_address: str = setting(
        "127.0.0.1:9464", host_port, "HOST:PORT for /metrics, /healthz, /readyz"
    )
    settle_seconds: float = setting(
        1.0,
        seconds(minimum=0, allow_minimum=True),
        "a file written in place must stay unchanged this long",
        reload=True,
    )
    image_settle_timeout: float = setting(
        600.0,
        seconds(minimum=0, allow_minimum=False),
        "an image directory still lacking files is failed once unchanged this long",
        reload=True,
    )
    rescan_interval: float = setting(
        60.0,
        seconds(minimum=0, allow_minimum=False),
        "seconds between full rescans of the spool",
        reload=True,
    )
    delete_uploaded: bool = setting(
        False, boolean, "delete files once uploaded, not move", reload=True
    )
    drain_timeout: float = setting(
        30.0,
        seconds(minimum=0, allow_minimum=True),
        "seconds SIGTERM waits for uploads in flight",
        reload=True,
    )
    log_format: str = setting("logfmt", choice("logfmt", "json"), "log line format", reload=True)
    retry_max_delay: float = setting(
        300.0,
        seconds(minimum=0, allow_minimum=False),
        "longest wait before a file that failed transiently is retried",
        reload=True,
    )

    @property
    def metrics_host(self) -> str:
        return self.metrics_address.rpartition(":")[0].strip("[]")

    @property
    def metrics_port(self) -> int:
        return int(self.metrics_address.rpartition(":")[2])


AnySettings = TypeVar("AnySettings", PushSettings, DaemonSettings)


def specs(kind: type[PushSettings]) -> dict[str, dataclasses.Field[Any]]:
    """The settings of ``kind`` in declaration order, by name."""
    return {f.name: f for f in dataclasses.fields(kind)}


def spec_of(item: dataclasses.Field[Any]) -> Spec:
    spec: Spec = item.metadata["spec"]
    return spec


def default_of(item: dataclasses.Field[Any]) -> object:
    """The declared default, or ``REQUIRED``."""
    return item.default


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()
