"""How a spool file's push ends, decided without any I/O.

Done, back in the queue after a delay, failed for good, or the daemon must
pause: a pure function of the file's journal row, the error and the
settings, so every branch is unit-tested without a daemon.  ``filepush``
does the moving and the journal writes after it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from uploaderd.errors import JournalError, LayerChangedError, UploaderError
from uploaderd.model import Outcome

MAX_BACKOFF_EXPONENT = 16
MIN_CHANGED_DELAY = 0.1
"""A file still being written is looked at again after its settle time, never sooner."""

Jitter = Callable[[float, float], float]
"""Picks the delay between its two bounds (``random.uniform``; tests pass a fixed one)."""


@dataclass(frozen=True, slots=True)
class Done:
    """In the registry: move the file to done/ (or delete it)."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Postpone:
    """Worth another try: back in the queue, not before ``delay`` seconds from now."""

    error: UploaderError
    delay: float


@dataclass(frozen=True, slots=True)
class Fail:
    """No retry will help: move the file to failed/ with its reason."""

    error: UploaderError


@dataclass(frozen=True, slots=True)
class Pause:
    """The state dir cannot record the ending: stop taking files, leave this one in place."""

    reason: str


Decision = Done | Postpone | Fail | Pause


def decide(
    error: UploaderError | None,
    outcome: Outcome,
    *,
    attempts: int,
    retry_max_delay: float,
    settle_seconds: float,
    jitter: Jitter = random.uniform,
) -> Decision:
    """How a push that took ``attempts`` tries (the journal's count, this one included) ends."""
    if isinstance(error, JournalError):
        return Pause(str(error))
    if error is None:
        return Done(outcome)
    if not error.retry_later:
        return Fail(error)
    if isinstance(error, LayerChangedError):
        return Postpone(error, max(settle_seconds, MIN_CHANGED_DELAY))
    return Postpone(error, backoff(attempts, retry_max_delay, jitter))


def backoff(attempts: int, ceiling: float, jitter: Jitter = random.uniform) -> float:
    """Doubling with each attempt up to ``ceiling``, jittered so files do not retry in step."""
    base = min(ceiling, 2.0 ** min(attempts, MAX_BACKOFF_EXPONENT))
    return jitter(base / 2, base)
