"""The daemon's settings: a TOML file < ``UPLOADERD_*`` environment < flags.

pydantic validates the merged values; what this module adds is knowing where
each value came from, so a bad one is reported as "UPLOADERD_CONCURRENCY=abc"
or "--memory-budget" or "concurrency in /etc/uploaderd/config.toml", which is
what an operator needs to fix it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from uploaderd.errors import ConfigurationError
from uploaderd.parts import MAX_PART_SIZE, MIB
from uploaderd.sizes import parse_size

ENV_PREFIX = "UPLOADERD_"
REGISTRY_SECTION = {
    "url": "registry",
    "insecure": "insecure_registry",
    "username": "registry_username",
}
"""Keys of the ``[registry]`` table and the settings they stand for."""


def _size(value: object) -> object:
    return parse_size(value) if isinstance(value, str) else value


ByteCount = Annotated[int, BeforeValidator(_size)]


class Settings(BaseModel):
    """Everything ``uploaderd run`` can be told; see ``uploaderd run --help``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    watch: Path = Field(description="the spool directory: <watch>/<repository>/<file>")
    state_dir: Path = Field(description="journal, done/ and failed/ live here")
    endpoint_url: str | None = Field(None, description="ECR endpoint (default: the AWS chain)")
    region: str | None = Field(None, description="AWS region (default: the AWS chain)")
    registry: str | None = Field(
        None, description="push to this OCI Distribution registry URL instead of ECR"
    )
    insecure_registry: bool = Field(
        False, description="allow plain http and unverified TLS for the OCI registry"
    )
    registry_username: str | None = Field(
        None, description="user for the OCI registry (password: UPLOADERD_REGISTRY_PASSWORD)"
    )
    concurrency: int = Field(4, ge=1, le=64, description="layers in flight")
    memory_budget: ByteCount = Field(
        256 * MIB, ge=MAX_PART_SIZE, description="bytes of layer data held at once"
    )
    part_size: ByteCount | None = Field(
        None, ge=1, description="bytes per part (default: the registry's partSize)"
    )
    metrics_address: str = Field(
        "127.0.0.1:9464", description="HOST:PORT for /metrics, /healthz, /readyz"
    )
    settle_seconds: float = Field(
        1.0, ge=0, description="a file written in place must stay unchanged this long"
    )
    rescan_interval: float = Field(
        60.0, gt=0, description="seconds between full rescans of the spool"
    )
    delete_uploaded: bool = Field(False, description="delete files once uploaded, not move")
    drain_timeout: float = Field(
        30.0, ge=0, description="seconds SIGTERM waits for uploads in flight"
    )
    log_format: Literal["logfmt", "json"] = Field("logfmt", description="log line format")
    max_attempts: int = Field(8, ge=1, description="attempts per request before a retry later")
    request_timeout: float = Field(120.0, gt=0, description="seconds to wait for one answer")
    retry_max_delay: float = Field(
        300.0, gt=0, description="longest wait before a file that failed transiently is retried"
    )

    @field_validator("metrics_address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
        return value

    @property
    def metrics_host(self) -> str:
        return self.metrics_address.rpartition(":")[0].strip("[]")

    @property
    def metrics_port(self) -> int:
        return int(self.metrics_address.rpartition(":")[2])


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env_values(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    values = {}
    for field in Settings.model_fields:
        key = ENV_PREFIX + field.upper()
        if key in environ:
            values[field] = (f"{key}={environ[key]!r}", environ[key])
    return values


def _file_values(config_file: Path) -> dict[str, tuple[str, Any]]:
    try:
        with config_file.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(
            f"config file {config_file} does not exist", code="ConfigFileMissing"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"config file {config_file} is not valid TOML: {exc}", code="ConfigFileInvalid"
        ) from None
    except OSError as exc:  # a directory, unreadable, ...: name the file, not a traceback
        raise ConfigurationError(
            f"cannot read config file {config_file}: {exc.strerror}", code="ConfigFileUnreadable"
        ) from None
    section = data.pop("registry", None)
    if isinstance(section, dict):
        for key, value in section.items():
            data[REGISTRY_SECTION.get(key, f"registry.{key}")] = value
    elif section is not None:
        data["registry"] = section
    return {key: (f"{key!r} in {config_file}", value) for key, value in data.items()}


def load_settings(
    flags: Mapping[str, Any],
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the three sources and validate; one line per bad value, naming its source."""
    sources: dict[str, tuple[str, Any]] = {}
    if config_file is not None:
        sources.update(_file_values(config_file))
    sources.update(_env_values(os.environ if environ is None else environ))
    sources.update({k: (_flag(k), v) for k, v in flags.items() if v is not None})
    try:
        return Settings.model_validate({key: value for key, (_, value) in sources.items()})
    except ValidationError as exc:
        raise ConfigurationError(_explain(exc, sources), code="InvalidSetting") from None


def _explain(error: ValidationError, sources: Mapping[str, tuple[str, Any]]) -> str:
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else "?"
        where = sources[field][0] if field in sources else _flag(field)
        message = problem["msg"]
        if problem["type"] == "missing":
            message = (
                f"required: pass {_flag(field)}, set {ENV_PREFIX}{field.upper()}, "
                f"or put {field} in the config file"
            )
        elif problem["type"] == "extra_forbidden":
            message = "unknown setting; see uploaderd run --help for the valid names"
        lines.append(f"{where}: {message}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_partial(
    names: tuple[str, ...], flags: Mapping[str, Any], *, config_file: Path | None
) -> dict[str, Any]:
    """A few settings for the commands that only read state (status, retry-failed).

    Same precedence as ``load_settings``, each value validated as that field,
    without requiring the settings these commands do not use.
    """
    sources: dict[str, tuple[str, Any]] = {}
    if config_file is not None:
        sources.update({k: v for k, v in _file_values(config_file).items() if k in names})
    sources.update({k: v for k, v in _env_values(os.environ).items() if k in names})
    sources.update({k: (_flag(k), v) for k, v in flags.items() if k in names and v is not None})
    missing = [name for name in names if name not in sources]
    if missing:
        raise ConfigurationError(
            "; ".join(
                f"{_flag(name)} is required (or {ENV_PREFIX}{name.upper()}, or {name} in "
                "the config file)"
                for name in missing
            ),
            code="InvalidSetting",
        )
    return {name: Path(str(sources[name][1])) for name in names}
