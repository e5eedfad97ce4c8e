"""When and how long to wait before trying a registry request again.

botocore already retries each request a few times (its standard mode, which
also counts ECR's LimitExceededException as throttling).  Its retry quota
runs dry under a long outage, so the engine adds a slower outer loop on top:
exponential backoff with jitter, so that many layers retrying at once do
not hammer a registry that is recovering, and a cap so a dead registry fails
the layer in bounded time instead of hanging.

A registry that says how long to wait (``Retry-After`` on a 429 or 503, as
``TransientRegistryError.retry_after``) knows better than a guess: the next
attempt waits that long instead of the backoff, plus up to ``RETRY_AFTER_JITTER``
of it so layers told the same thing do not all come back in the same instant,
and never more than ``max_delay`` (a registry asking for an hour must not stall
a layer for an hour; the attempt then fails or succeeds like any other).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from uploaderd.errors import TransientRegistryError

T = TypeVar("T")

RETRY_AFTER_JITTER = 0.1
"""A Retry-After wait is stretched by up to this fraction, never shortened."""

RetryHook = Callable[[str, float], None]
"""Told the reason (an error code) and the delay before each retry."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per request and the backoff between them."""

    max_attempts: int
    """A setting (``max_attempts``); the delays are the engine's own."""
    base_delay: float = 0.5
    max_delay: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def delay(self, attempt: int) -> float:
        """Jittered exponential backoff after failed attempt number ``attempt`` (from 1)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311  # jitter, not a secret

    def delay_for(self, error: TransientRegistryError, attempt: int) -> float:
        """The wait before the next attempt: the registry's Retry-After if it gave one."""
        if error.retry_after is None:
            return self.delay(attempt)
        asked = error.retry_after * random.uniform(1, 1 + RETRY_AFTER_JITTER)  # noqa: S311
        return min(self.max_delay, asked)

    async def call(self, operation: Callable[[], Awaitable[T]], on_retry: RetryHook) -> T:
        """Run ``operation``, retrying transient registry errors with backoff."""
        attempt = 1
        while True:
            try:
                return await operation()
            except TransientRegistryError as exc:
                if attempt >= self.max_attempts:
                    exc.message += f" (gave up after {attempt} attempts)"
                    raise
                delay = self.delay_for(exc, attempt)
                on_retry(exc.code, delay)
                await anyio.sleep(delay)
                attempt += 1
