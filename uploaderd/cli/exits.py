"""The exit statuses every ``uploaderd`` subcommand shares."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILED = 1
    """A layer or image failed; the others went on."""
    USAGE = 2
    """A bad flag or setting: nothing was sent."""
    INTERRUPTED = 130
