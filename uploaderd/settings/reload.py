"""What SIGHUP does with a re-read config: apply what it can, name the rest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from uploaderd.settings.declared import DaemonSettings, spec_of, specs


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
