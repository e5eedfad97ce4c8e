"""Every setting, declared once: its default, its type, and whether SIGHUP can change it.

``uploaderd push`` and ``uploaderd run`` read the same declarations, from
three sources in rising precedence: a TOML file < ``UPLOADERD_<NAME>``
environment < flags.  A bad value is reported with where it came from
("UPLOADERD_CONCURRENCY='abc'", "--memory-budget", "'concurrency' in FILE"),
which is what an operator needs to fix it.  The engine and the registry are
built from the settings here, so no default is written twice.

The parsers are small and strict on purpose: a setting is a number, a size,
a path, a word or a flag, and the message for a bad one is the parser's own.
Nothing heavy is imported, so ``uploaderd status`` starts fast.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from uploaderd.engine.parts import MAX_PART_SIZE
from uploaderd.engine.retry import RetryPolicy
from uploaderd.engine.scheduler import EngineSettings
from uploaderd.errors import ConfigurationError, ErrorCode
from uploaderd.registry.choice import RegistryChoice
from uploaderd.sizes import MIB, parse_size

ENV_PREFIX = "UPLOADERD_"
REGISTRY_SECTION = {
    "url": "registry",
    "insecure": "insecure_registry",
    "username": "registry_username",
}
"""Keys of the ``[registry]`` table and the settings they stand for."""

Parse = Callable[[object], Any]


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


# --- parsers: each takes a TOML value or a string and says precisely what is wrong -------


def whole(low: int, high: int | None = None) -> Parse:
    def parse(value: object) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not a whole number")
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{value} is out of range: give a whole number {bound}")
        return value

    return parse


def seconds(*, minimum: float, allow_minimum: bool) -> Parse:
    def parse(value: object) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a number of seconds") from None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not a number of seconds")
        number = float(value)
        too_small = number < minimum if allow_minimum else number <= minimum
        if not math.isfinite(number) or too_small:
            relation = "at least" if allow_minimum else "more than"
            raise ValueError(f"{value!r} is out of range: give {relation} {minimum:g} seconds")
        return number

    return parse


def size(minimum: int) -> Parse:
    def parse(value: object) -> int:
        if isinstance(value, str):
            value = parse_size(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not a size; write bytes or a string like '256MiB'")
        if value < minimum:
            raise ValueError(f"{value} bytes is too small: give at least {minimum} bytes")
        return value

    return parse


def show_size(nbytes: int) -> str:
    return f"{nbytes // MIB}MiB" if nbytes % MIB == 0 else str(nbytes)


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    words = {"true": True, "1": True, "yes": True, "on": True}
    words |= {"false": False, "0": False, "no": False, "off": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ValueError(f"{value!r} is not true or false")


def text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def path(value: object) -> Path:
    return Path(text(value))


def choice(*allowed: str) -> Parse:
    def parse(value: object) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, allowed))}")
        return str(value)

    return parse


def host_port(value: object) -> str:
    address = text(value)
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return address


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
    concurrency: int = setting(4, whole(1, 64), "layers in flight")
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

    def engine_settings(self) -> EngineSettings:
        """The engine's knobs, built here and only here."""
        return EngineSettings(
            concurrency=self.concurrency,
            memory_budget=self.memory_budget,
            part_size=self.part_size,
            retry=RetryPolicy(max_attempts=self.max_attempts),
        )

    def registry_choice(self) -> RegistryChoice:
        """Which registry to reach, and how, with a pool sized to the layers in flight."""
        return RegistryChoice(
            registry_url=self.registry,
            insecure=self.insecure_registry,
            username=self.registry_username,
            region=self.region,
            endpoint_url=self.endpoint_url,
            connections=self.concurrency + 2,
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


# --- reading the sources ---------------------------------------------------------------

Sources = dict[str, tuple[str, object]]
"""setting name -> (where the value came from, the raw value)."""


def _file_values(config_file: Path) -> Sources:
    try:
        with config_file.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(
            f"config file {config_file} does not exist", code=ErrorCode.CONFIG_FILE_MISSING
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"config file {config_file} is not valid TOML: {exc}",
            code=ErrorCode.CONFIG_FILE_INVALID,
        ) from None
    except OSError as exc:  # a directory, unreadable, ...: name the file, not a traceback
        raise ConfigurationError(
            f"cannot read config file {config_file}: {exc.strerror}",
            code=ErrorCode.CONFIG_FILE_UNREADABLE,
        ) from None
    section = data.pop("registry", None)
    if isinstance(section, dict):
        for key, value in section.items():
            data[REGISTRY_SECTION.get(key, f"registry.{key}")] = value
    elif section is not None:
        data["registry"] = section
    return {key: (f"{key!r} in {config_file}", value) for key, value in data.items()}


def _sources(
    names: Mapping[str, object],
    flags: Mapping[str, object],
    config_file: Path | None,
    environ: Mapping[str, str],
) -> Sources:
    """Every value given, the later sources winning; file keys unknown to all programs kept."""
    found: Sources = {}
    if config_file is not None:
        everything = specs(DaemonSettings)
        for key, source in _file_values(config_file).items():
            if key in names or key not in everything:
                found[key] = source  # a daemon-only key in push's view is not push's business
    for name in names:
        key = env_name(name)
        if key in environ:
            found[name] = (f"{key}={environ[key]!r}", environ[key])
    for name, value in flags.items():
        if name in names and value is not None:
            found[name] = (flag_name(name), value)
    return found


def load_settings(
    kind: type[AnySettings],
    flags: Mapping[str, object],
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> AnySettings:
    """Merge the three sources and check every value; one line per bad one, naming its source."""
    fields = specs(kind)
    sources = _sources(fields, flags, config_file, os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, (where, raw) in sources.items():
        if key not in fields:
            problems.append(f"{where}: unknown setting; see uploaderd run --help for the names")
            continue
        try:
            values[key] = spec_of(fields[key]).parse(raw)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    for name, item in fields.items():
        if default_of(item) is REQUIRED and name not in sources:
            problems.append(
                f"{flag_name(name)}: required: pass {flag_name(name)}, set {env_name(name)}, "
                f"or put {name} in the config file"
            )
    if problems:
        raise ConfigurationError(
            "invalid settings:\n  " + "\n  ".join(problems), code=ErrorCode.INVALID_SETTING
        )
    return kind(**values)


def load_paths(
    names: tuple[str, ...], flags: Mapping[str, object], *, config_file: Path | None
) -> dict[str, Path]:
    """A few path settings for the commands that only read state (status, retry-failed).

    Same sources and precedence as ``load_settings``, without requiring the
    settings these commands do not use.
    """
    sources = _sources(dict.fromkeys(names), flags, config_file, os.environ)
    missing = [name for name in names if name not in sources]
    if missing:
        raise ConfigurationError(
            "; ".join(
                f"{flag_name(name)} is required (or {env_name(name)}, or {name} in the config file)"
                for name in missing
            ),
            code=ErrorCode.INVALID_SETTING,
        )
    found: dict[str, Path] = {}
    for name in names:
        where, raw = sources[name]
        try:
            found[name] = path(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{where}: {exc}", code=ErrorCode.INVALID_SETTING) from None
    return found


# --- SIGHUP ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a re-read config changes: the settings to run with, and what waits for a restart."""

    settings: DaemonSettings
    applied: tuple[str, ...]
    needs_restart: tuple[str, ...]


def plan_reload(running: DaemonSettings, fresh: DaemonSettings) -> ReloadPlan:
    """Apply the reloadable changes; every other changed setting keeps its running value.

    Keeping the running value matters: a new ``watch`` taking effect in one
    place (where finished files are looked for) and not in another (the inotify
    watches) would move files the daemon never watched.
    """
    applied: list[str] = []
    needs_restart: list[str] = []
    for name, item in specs(DaemonSettings).items():
        if getattr(fresh, name) == getattr(running, name):
            continue
        (applied if spec_of(item).reload else needs_restart).append(name)
    settings = dataclasses.replace(running, **{name: getattr(fresh, name) for name in applied})
    return ReloadPlan(settings, tuple(applied), tuple(needs_restart))
