"""Command-line flags made from the settings' declarations (``uploaderd.settings``).

Every setting a program reads gets a flag of the same name, whose help says
its default and its environment variable; values stay strings until the
settings loader parses them, so a bad flag is reported exactly like a bad
line in the config file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from uploaderd.settings import (
    REQUIRED,
    PushSettings,
    default_of,
    env_name,
    flag_name,
    spec_of,
    specs,
)


def add_setting_flags(parser: argparse.ArgumentParser, kind: type[PushSettings]) -> None:
    """``--config FILE`` and one flag per setting of ``kind``."""
    parser.add_argument("--config", type=Path, help="TOML file with any of the settings below")
    for name, item in specs(kind).items():
        spec = spec_of(item)
        default = default_of(item)
        shown = "" if default is REQUIRED or default is None else f" (default {spec.show(default)})"
        help_text = f"{spec.help}{shown}; env {env_name(name)}"
        if spec.is_flag:
            parser.add_argument(
                flag_name(name), action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(flag_name(name), metavar=name.upper(), help=help_text)


def given_settings(args: argparse.Namespace, kind: type[PushSettings]) -> dict[str, object]:
    """The settings given as flags; None for those not given, so other sources count."""
    return {name: getattr(args, name, None) for name in specs(kind)}
