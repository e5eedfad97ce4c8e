"""``uploaderd run``: the daemon, with its settings from file, environment and flags."""

from __future__ import annotations

import argparse

from uploaderd.cli.options import add_setting_flags, given_settings
from uploaderd.daemon import logs
from uploaderd.daemon.service import run_daemon
from uploaderd.engine.memory import return_freed_buffers_to_the_system
from uploaderd.settings import DaemonSettings, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run the daemon: a file at <watch>/<repository>/<name> is pushed to ECR "
        "repository <repository>, then moved to <state-dir>/done/ (or failed/ with a reason). "
        "Settings come from --config FILE (TOML) < UPLOADERD_<NAME> environment < flags."
    )
    add_setting_flags(parser, DaemonSettings)


async def run(args: argparse.Namespace) -> int:
    flags = given_settings(args, DaemonSettings)

    def reload() -> DaemonSettings:
        return load_settings(DaemonSettings, flags, config_file=args.config)

    settings = reload()
    logs.configure(settings.log_format)
    return_freed_buffers_to_the_system()
    return await run_daemon(settings, reload)
