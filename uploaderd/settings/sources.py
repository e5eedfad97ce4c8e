"""Reading the settings from a TOML file < ``UPLOADERD_*`` environment < flags.

A bad value is reported with where it came from ("UPLOADERD_CONCURRENCY='abc'",
"--memory-budget", "'concurrency' in FILE"): what an operator needs to fix it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uploaderd.errors import ConfigurationError, ErrorCode
from uploaderd.settings.declared import (
    REGISTRY_SECTION,
    REQUIRED,
    AnySettings,
    DaemonSettings,
    default_of,
    env_name,
    flag_name,
    spec_of,
    specs,
)
from uploaderd.settings.values import path

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
