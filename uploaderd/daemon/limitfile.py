"""The daemon's layer limit, written to its state dir for ``uploaderd status``.

``status`` reads the daemon's view without a server (the journal holds the
queue); the limit lives only in the running daemon, so the daemon writes it
here when it changes, by rename so a reader never sees half a file, and
removes the file when it stops.  The file names the daemon's pid: a file
left by a daemon killed with -9 is recognised as stale and not shown as
the limit of a running daemon.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # status imports this module: no anyio at its start-up
    from uploaderd.engine.limiter import LimitStatistics

LIMIT_FILE_NAME = "concurrency.json"


@dataclass(frozen=True, slots=True)
class PublishedLimit:
    """What ``status`` shows of the limit."""

    mode: str
    """``auto`` or ``fixed``."""
    limit: int
    ceiling: int
    budget_cap: int | None
    pid: int
    updated_at: float

    @classmethod
    def of(cls, statistics: LimitStatistics) -> PublishedLimit:
        return cls(
            "auto" if statistics.adaptive else "fixed",
            statistics.limit,
            statistics.ceiling,
            statistics.budget_cap,
            os.getpid(),
            round(time.time(), 3),
        )

    def same_limit(self, other: PublishedLimit | None) -> bool:
        return other is not None and (self.mode, self.limit, self.ceiling, self.budget_cap) == (
            other.mode,
            other.limit,
            other.ceiling,
            other.budget_cap,
        )


def write_limit(state_dir: Path, published: PublishedLimit) -> None:
    """Replace the file; raises ``OSError`` (the caller decides whether that matters)."""
    target = state_dir / LIMIT_FILE_NAME
    scratch = target.with_suffix(".tmp")
    scratch.write_text(json.dumps(asdict(published)) + "\n")
    os.replace(scratch, target)


def remove_limit(state_dir: Path) -> None:
    (state_dir / LIMIT_FILE_NAME).unlink(missing_ok=True)


def read_limit(state_dir: Path) -> PublishedLimit | None:
    """The running daemon's limit; None if no daemon published one, or it is gone."""
    try:
        data = json.loads((state_dir / LIMIT_FILE_NAME).read_text())
        published = PublishedLimit(**data)
    except (OSError, ValueError, TypeError):
        return None
    return published if _alive(published.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: status may run as someone else
    return True
