"""Every setting, declared once: its default, its type, and whether SIGHUP can change it.

``uploaderd push`` and ``uploaderd run`` read the same declarations, from
three sources in rising precedence: a TOML file < ``UPLOADERD_<NAME>``
environment < flags.  A bad value is reported with where it came from
("UPLOADERD_CONCURRENCY='abc'", "--memory-budget", "'concurrency' in FILE"),
which is what an operator needs to fix it.  The engine and the registry are
built from the settings here, so no default is written twice.

Nothing heavy is imported, so ``uploaderd status`` starts fast.  The rooms:
``values`` (parsers), ``declared`` (the settings), ``sources`` (reading them),
``reload`` (SIGHUP).
"""

from __future__ import annotations

from uploaderd.settings.declared import (
    ENV_PREFIX,
    REQUIRED,
    DaemonSettings,
    PushSettings,
    Spec,
    default_of,
    env_name,
    flag_name,
    spec_of,
    specs,
)
from uploaderd.settings.reload import ReloadPlan, plan_reload
from uploaderd.settings.sources import load_paths, load_settings

__all__ = [
    "ENV_PREFIX",
    "REQUIRED",
    "DaemonSettings",
    "PushSettings",
    "ReloadPlan",
    "Spec",
    "default_of",
    "env_name",
    "flag_name",
    "load_paths",
    "load_settings",
    "plan_reload",
    "spec_of",
    "specs",
]
