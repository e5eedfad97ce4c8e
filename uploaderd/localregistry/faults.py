"""Injected failures, so client retry and resume logic can be tested on purpose.

A fault spec is ``NAME=VALUE``:

* ``throttle-every=N``: every Nth API request answers 400 ``ThrottlingException``,
  not applied.
* ``throttle-above=RATE`` or ``throttle-above=OPERATION:RATE``: ECR's rate quotas.
  Requests beyond RATE per second (all API requests together, or only those of
  OPERATION, an ECR operation name such as ``UploadLayerPart``) answer 400
  ``ThrottlingException``, not applied.  A token bucket per fault, full at the
  start, holding one second's worth of RATE (at least one request), as ECR's
  quotas are stated per second; a refused request takes no token, so a client
  that backs off gets through.  Several may be given (one per operation).
* ``server-error-every=N``: every Nth UploadLayerPart answers 500 ``ServerException``,
  not applied.
* ``drop-after-apply-every=N``: every Nth UploadLayerPart is applied, then the
  connection is closed without an answer: the client cannot know the part landed and
  must learn it from ``InvalidLayerPartException.lastValidByteReceived`` on retry.
* ``refuse-put-image-every=N``: every Nth PutImage answers 400
  ``InvalidParameterException``, a permanent refusal, not applied: an index whose
  child manifest is refused must leave no tag.
* ``latency=SECONDS``: every API request waits this long before being handled.
* ``forget-upload-after=K``: once an upload has received K parts it is forgotten, so
  the next request for it meets ``UploadNotFoundException`` (ECR expires uploads).
* ``non-json-every=N``: every Nth API request answers 200 with an HTML page, as a
  misconfigured proxy would; not applied.
* ``refuse-for=SECONDS``: at start-up, the server refuses connections for this long.
* ``slow-body=SECONDS``: every API answer is applied, then its status and headers go
  out at once and its body trickles out in ``SLOW_BODY_PIECES`` pieces, SECONDS
  apart.  A client whose read timeout is shorter than SECONDS gives up on a request
  that was applied (like ``drop-after-apply``, but through its timeout); one with a
  longer timeout copes, ``SLOW_BODY_PIECES`` x SECONDS later.

The "every Nth" counters are per fault and count only requests that reach that fault:
faults are tried in the order throttle-above, throttle, non-json, server-error,
drop-after-apply, and the first that fires answers the request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    THROTTLE = "throttle-every"
    THROTTLE_ABOVE = "throttle-above"
    SERVER_ERROR = "server-error-every"
    DROP_AFTER_APPLY = "drop-after-apply-every"
    LATENCY = "latency"
    FORGET_UPLOAD = "forget-upload-after"
    NON_JSON = "non-json-every"
    REFUSE = "refuse-for"
    SLOW_BODY = "slow-body"
    REFUSE_PUT_IMAGE = "refuse-put-image-every"


_SECONDS = frozenset({FaultKind.LATENCY, FaultKind.REFUSE, FaultKind.SLOW_BODY})
#: Tried in this order; the first that fires answers the request.
_PER_REQUEST = (FaultKind.THROTTLE, FaultKind.NON_JSON)
_PER_PART = (FaultKind.SERVER_ERROR, FaultKind.DROP_AFTER_APPLY)
_PER_MANIFEST = (FaultKind.REFUSE_PUT_IMAGE,)
#: A trickle, not a byte at a time: ECR's answers are ~150 bytes, and a byte per
#: SECONDS would make a client that copes take minutes per request.
SLOW_BODY_PIECES = 8


@dataclass(frozen=True)
class Fault:
    """One parsed spec; ``value`` is a count (N or K), seconds, or requests per second."""

    kind: FaultKind
    value: float
    operation: str | None = None
    """throttle-above: the one operation it meters; None: all of them together."""

    @property
    def spec(self) -> str:
        if self.kind is FaultKind.THROTTLE_ABOVE:
            scope = f"{self.operation}:" if self.operation else ""
            return f"{self.kind}={scope}{self.value:g}"
        value = self.value if self.kind in _SECONDS else int(self.value)
        return f"{self.kind}={value}"


def parse_fault(spec: str) -> Fault:
    """Parses ``NAME=VALUE``; a bad spec fails loudly rather than testing nothing."""
    name, sep, raw = spec.strip().partition("=")
    try:
        kind = FaultKind(name.strip())
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise ValueError(f"unknown fault {name!r} in {spec!r}; known faults: {known}") from None
    if not sep:
        raise ValueError(f"fault {spec!r} needs a value: {kind}=VALUE")
    if kind is FaultKind.THROTTLE_ABOVE:
        return _parse_rate(spec, raw)
    if kind in _SECONDS:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"fault {spec!r}: {kind} takes a number of seconds >= 0")
        return Fault(kind, seconds)
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ValueError(f"fault {spec!r}: {kind} takes a whole number >= 1")
    return Fault(kind, int(raw))


def _parse_rate(spec: str, raw: str) -> Fault:
    operation, _, rate_text = raw.strip().rpartition(":")
    try:
        rate = float(rate_text)
    except ValueError:
        rate = math.nan
    if not math.isfinite(rate) or rate <= 0 or (operation == "" and ":" in raw):
        raise ValueError(
            f"fault {spec!r}: throttle-above takes RATE or OPERATION:RATE, "
            "requests per second > 0 (e.g. throttle-above=UploadLayerPart:20)"
        )
    return Fault(FaultKind.THROTTLE_ABOVE, rate, operation or None)


class RateBucket:
    """Requests per second with a burst of one second's worth (at least 1); full at start."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()

    def admit(self) -> bool:
        """True, taking a token, if the request is within the rate; False takes none."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class FaultPlan:
    """The active faults and their counters; replaced whole at run time."""

    def __init__(
        self, faults: Iterable[Fault] = (), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.faults = tuple(faults)
        self._seen = [0] * len(self.faults)
        self._buckets = {
            index: RateBucket(fault.value, clock)
            for index, fault in enumerate(self.faults)
            if fault.kind is FaultKind.THROTTLE_ABOVE
        }

    @property
    def latency(self) -> float:
        return sum(f.value for f in self.faults if f.kind is FaultKind.LATENCY)

    @property
    def refusals(self) -> list[float]:
        return [f.value for f in self.faults if f.kind is FaultKind.REFUSE]

    @property
    def slow_body(self) -> float:
        """Seconds between the pieces of every answer's body (0: answered at once)."""
        return max((f.value for f in self.faults if f.kind is FaultKind.SLOW_BODY), default=0.0)

    @property
    def forget_after(self) -> int | None:
        counts = [int(f.value) for f in self.faults if f.kind is FaultKind.FORGET_UPLOAD]
        return min(counts) if counts else None

    def pick(self, operation: str) -> Fault | None:
        """Counts this request against each fault it reaches; returns the one that fires."""
        over = self._over_rate(operation)
        if over is not None:
            return over
        kinds = _PER_REQUEST + (_PER_PART if operation == "UploadLayerPart" else ())
        kinds += _PER_MANIFEST if operation == "PutImage" else ()
        for kind in kinds:
            for index, fault in enumerate(self.faults):
                if fault.kind is not kind:
                    continue
                self._seen[index] += 1
                if self._seen[index] % int(fault.value) == 0:
                    return fault
        return None

    def _over_rate(self, operation: str) -> Fault | None:
        """throttle-above: the first bucket metering this request that has no token left.

        Every bucket that meters the request is asked, so a request refused by
        one still takes its token from an all-operations bucket checked before.
        """
        for index, bucket in self._buckets.items():
            fault = self.faults[index]
            if fault.operation not in (None, operation):
                continue
            if not bucket.admit():
                return fault
        return None
