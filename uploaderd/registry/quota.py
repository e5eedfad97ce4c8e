"""A host's share of ECR's request-rate quotas, kept by one token bucket per action.

ECR's rate quotas are per account and region, not per host: a hundred build
hosts pushing into one account share InitiateLayerUpload's 100 per second.
Throttling tells a host that the *fleet* went over, after the fact, and
every host backs off at once; a static share (``ecr_quota_share``) keeps each
host under ``quota x share`` before anything is sent, so a fleet whose
shares add up to at most 1 meets no ThrottlingException in steady state.

* **One bucket per action**, because the quotas are per action: a host
  limited to 1 PutImage per second may still send 50 UploadLayerPart.
  Calls without a quota here (DescribeRepositories, the daemon's readiness
  probe) are not metered.
* **Burst: one second's worth of the rate, at least one token.**  The quotas
  are stated per second, and a registry's own bucket holds at least that
  much, so a host idle for a while may send one second's worth at once
  without going over on its own; a fleet whose hosts all come back from
  idle in the same second sends at most its rate's worth on top of the
  steady rate, which is what AWS's own burst absorbs.  At least one token,
  or a rate under 1/s (PutImage at a share of 0.01: 0.1/s) could never send.
  Tokens run below zero: a caller *reserves* the next token and sleeps
  until it is due, so waiters are served in order and the rate holds
  exactly however many layers wait.
* **Awaited before each call the engine makes**, with ``anyio.sleep``, never
  a blocking sleep.  botocore's own retries inside one call (its standard
  mode retries a throttled request twice, with its own backoff) are not
  charged: they follow a throttle, which the share exists to prevent.

botocore's **adaptive retry mode** (``AWS_RETRY_MODE=adaptive``) cannot do
this, and is not switched on: its ``ClientRateLimiter`` is one rate for the
whole client, starts unlimited and only learns a rate from throttling, so it
has no static per-action limit to give a share (and a PutImage throttle at
10/s would cut the same client's UploadLayerPart rate too).  As a reaction to
throttling it helps and did not fight AIMD when measured (``python -m
benchmarks throttling``: auto met 29 throttles, auto with adaptive 6, at 7%
less throughput); it stays the operator's choice because setting it here
would override the ``AWS_RETRY_MODE`` of their AWS chain, and beside a share
it has nothing to react to in steady state.  Set, it limits beneath these
buckets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import anyio

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

BURST_SECONDS = 1.0
"""A bucket holds this many seconds of its rate (at least one token): see the module."""

ECR_QUOTAS: Mapping[str, float] = {
    "BatchCheckLayerAvailability": 1000.0,
    "InitiateLayerUpload": 100.0,
    "UploadLayerPart": 500.0,
    "CompleteLayerUpload": 100.0,
    "PutImage": 10.0,
}
"""Requests per second per account and region (PROTOCOL.md, ECR's service quotas)."""

ECR_PUBLIC_QUOTAS: Mapping[str, float] = {
    **ECR_QUOTAS,
    "UploadLayerPart": 260.0,
    "CompleteLayerUpload": 10.0,
    "PutImage": 10.0,
}
"""ECR Public's tighter quotas; the calls it lists no own quota for are taken as ECR's."""


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; full at the start."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(
                f"a token bucket needs a rate > 0 and a burst >= 1, got {rate}, {burst}"
            )
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._updated = clock()

    @classmethod
    def per_second(cls, rate: float, *, clock: Clock = time.monotonic) -> TokenBucket:
        """A bucket of ``rate`` per second with the module's burst."""
        return cls(rate, max(1.0, rate * BURST_SECONDS), clock=clock)

    @property
    def tokens(self) -> float:
        """Tokens there now; below zero while callers wait for reserved ones."""
        self._refill()
        return self._tokens

    def reserve(self) -> float:
        """Take the next token; the seconds until it is due (0: now)."""
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def take(self) -> None:
        """Wait for a token.  A caller cancelled while waiting gives its token back."""
        delay = self.reserve()
        if delay <= 0:
            return
        try:
            await self._sleep(delay)
        except BaseException:
            self._tokens += 1
            raise

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now


@dataclass(frozen=True, slots=True)
class QuotaShare:
    """A host's share of each action's quota: one bucket per action."""

    buckets: Mapping[str, TokenBucket]

    @classmethod
    def of(
        cls, quotas: Mapping[str, float], share: float, *, clock: Clock = time.monotonic
    ) -> QuotaShare:
        if not 0 < share <= 1:
            raise ValueError(f"a quota share is in (0, 1], got {share}")
        return cls(
            {action: TokenBucket.per_second(q * share, clock=clock) for action, q in quotas.items()}
        )

    async def take(self, action: str) -> None:
        """Wait until ``action`` may be sent; an action without a quota goes at once."""
        bucket = self.buckets.get(action)
        if bucket is not None:
            await bucket.take()


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delay-seconds or an HTTP-date.

    ``None`` when there is no header or it is neither (RFC 9110 section 10.2.3);
    a date in the past is 0.  ``now`` is the wall clock, for tests.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None  # an HTTP-date is always GMT; anything else is not one
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
