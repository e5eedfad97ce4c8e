"""How a spool file's push ends, decided without any I/O.

Done, back in the queue after a delay, failed for good, or the daemon must
pause: a pure function of the file's journal row, the error and the
settings, so every branch is unit-tested without a daemon.  An image
directory that lacks a file is waited for while its writer may be at work,
and failed once it stayed unchanged for ``image_settle_timeout``.  ``filepush``
does the moving and the journal writes after it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from uploaderd.errors import (
    ErrorCode,
    ImageIncompleteError,
    JournalError,
    LayerChangedError,
    UploaderError,
)
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


@dataclass(frozen=True, slots=True)
class ImageWait:
    """An image directory in the spool: how long its tree has not changed, and the limit.

    ``changed`` says it changed since it was queued, maybe during this very push.
    """

    unchanged_for: float
    timeout: float
    changed: bool = False


def decide(
    error: UploaderError | None,
    outcome: Outcome,
    *,
    attempts: int,
    retry_max_delay: float,
    settle_seconds: float,
    jitter: Jitter = random.uniform,
    image: ImageWait | None = None,
) -> Decision:
    """How a push that took ``attempts`` tries (the journal's count, this one included) ends.

    ``image`` is given for an image directory, which a writer may still be filling.
    """
    if isinstance(error, JournalError):
        return Pause(str(error))
    if error is None:
        return Done(outcome)
    if isinstance(error, ImageIncompleteError) and image is not None:
        soon = max(settle_seconds, MIN_CHANGED_DELAY)
        delay = soon if image.changed else backoff(attempts, retry_max_delay, jitter)
        return _wait_for_image(error, image, delay)
    if not error.retry_later:
        return Fail(error)
    if isinstance(error, LayerChangedError):
        return Postpone(error, max(settle_seconds, MIN_CHANGED_DELAY))
    return Postpone(error, backoff(attempts, retry_max_delay, jitter))


def backoff(attempts: int, ceiling: float, jitter: Jitter = random.uniform) -> float:
    """Doubling with each attempt up to ``ceiling``, jittered so files do not retry in step."""
    base = min(ceiling, 2.0 ** min(attempts, MAX_BACKOFF_EXPONENT))
    return jitter(base / 2, base)


def _wait_for_image(error: ImageIncompleteError, image: ImageWait, delay: float) -> Decision:
    """Back in the queue while the writer may still finish; failed once it is long quiet.

    The next try comes after the backoff delay, or sooner if the timeout ends
    first; a change to the directory brings the next try forward: one seen
    during this push to the settle time, a later one at once (see ``intake``).
    """
    remaining = image.timeout - image.unchanged_for
    if remaining > 0:
        return Postpone(error, max(MIN_CHANGED_DELAY, min(delay, remaining)))
    message = (
        f"the image is still incomplete after waiting {image.unchanged_for:.0f} s with no "
        f"change (image_settle_timeout {image.timeout:g} s): {error}; write what is "
        "missing, then put it back with uploaderd retry-failed"
    )
    return Fail(ImageIncompleteError(message, code=ErrorCode.IMAGE_INCOMPLETE))
