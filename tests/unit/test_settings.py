"""Settings: one declaration read by every source, and what SIGHUP may change."""

from __future__ import annotations

from pathlib import Path

import pytest

from uploaderd.errors import ConfigurationError
from uploaderd.settings import (
    DaemonSettings,
    PushSettings,
    default_of,
    load_settings,
    plan_reload,
    spec_of,
    specs,
)
from uploaderd.sizes import MIB

REQUIRED_FOR_RUN = {"watch": "/spool", "state_dir": "/state"}


def test_the_engine_and_the_registry_are_built_from_the_declared_defaults() -> None:
    settings = load_settings(PushSettings, {}, environ={})
    engine = settings.engine_settings()
    assert (engine.concurrency, engine.memory_budget, engine.part_size) == (None, 256 * MIB, None)
    assert engine.max_concurrency == 16
    assert engine.retry.max_attempts == 8
    choice = settings.registry_choice()
    assert (choice.connections, choice.request_timeout) == (18, 120.0)


@pytest.mark.parametrize(
    ("given", "expected"), [("auto", None), (" Auto ", None), ("6", 6), (6, 6)]
)
def test_concurrency_is_auto_or_a_number(given: object, expected: int | None) -> None:
    assert load_settings(PushSettings, {"concurrency": given}, environ={}).concurrency == expected


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('watch = "/w"\nstate_dir = "/s"\nconcurrency = 2\nmax_attempts = 5\n')
    loaded = load_settings(
        DaemonSettings,
        {"concurrency": "7"},
        config_file=config,
        environ={"UPLOADERD_CONCURRENCY": "6", "UPLOADERD_MAX_ATTEMPTS": "4"},
    )
    assert (loaded.concurrency, loaded.max_attempts, loaded.watch) == (7, 4, Path("/w"))


def test_push_ignores_the_daemons_own_keys_but_not_unknown_ones(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('watch = "/w"\nsettle_seconds = 3\nmemory_budget = "64MiB"\n')
    assert load_settings(PushSettings, {}, config_file=config, environ={}).memory_budget == (
        64 * MIB
    )
    config.write_text("concurency = 3\n")
    with pytest.raises(ConfigurationError, match=r"'concurency' in .*: unknown setting"):
        load_settings(PushSettings, {}, config_file=config, environ={})


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("concurrency", "0", "--concurrency: 0 is out of range: give a whole number from 1 to 64"),
        ("concurrency", "abc", "--concurrency: 'abc' is not a whole number"),
        ("memory_budget", "1MiB", "--memory-budget: 1048576 bytes is too small"),
        ("memory_budget", "lots", "--memory-budget: 'lots' is not a size"),
        ("request_timeout", "0", "--request-timeout: 0.0 is out of range"),
        ("request_timeout", "nan", "--request-timeout: nan is out of range"),
        ("insecure_registry", "maybe", "--insecure-registry: 'maybe' is not true or false"),
    ],
)
def test_a_bad_value_names_its_flag_and_what_is_wrong(flag: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings(PushSettings, {flag: value}, environ={})
    assert message in error.value.message


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as error:
        load_settings(DaemonSettings, {"concurrency": "x"}, environ={"UPLOADERD_LOG_FORMAT": "xml"})
    lines = error.value.message.splitlines()
    assert lines[0] == "invalid settings:"
    assert any(line.startswith("  --concurrency:") for line in lines)
    assert any(line.startswith("  UPLOADERD_LOG_FORMAT='xml':") for line in lines)
    assert any(line.startswith("  --watch: required") for line in lines)


def daemon(**values: object) -> DaemonSettings:
    return load_settings(DaemonSettings, {**REQUIRED_FOR_RUN, **values}, environ={})


def test_a_reload_applies_what_it_can_and_keeps_the_running_value_of_the_rest() -> None:
    running = daemon()
    plan = plan_reload(running, daemon(watch="/elsewhere", settle_seconds="5", max_attempts="2"))
    assert plan.applied == ("max_attempts", "settle_seconds")
    assert plan.needs_restart == ("watch",)
    assert plan.settings.watch == Path("/spool")  # still the directory the watcher watches
    assert (plan.settings.settle_seconds, plan.settings.max_attempts) == (5.0, 2)
    assert plan_reload(running, daemon()).applied == ()


def test_every_setting_has_help_and_a_default_that_its_parser_accepts() -> None:
    for name, item in specs(DaemonSettings).items():
        spec = spec_of(item)
        assert spec.help, name
        default = default_of(item)
        if default is not None and name not in REQUIRED_FOR_RUN:
            assert spec.parse(default) == default, name
