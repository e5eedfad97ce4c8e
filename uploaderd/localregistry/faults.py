"""Injected failures, so client retry and resume logic can be tested on purpose.

A fault spec is ``NAME=VALUE``:

* ``throttle-every=N``: every Nth API request answers 400 ``ThrottlingException``,
  not applied.
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
faults are tried in the order throttle, non-json, server-error, drop-after-apply, and
the first that fires answers the request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    THROTTLE = "throttle-every"
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
    """One parsed spec; ``value`` is a count (N or K) or a number of seconds."""

    kind: FaultKind
    value: float

    @property
    def spec(self) -> str:
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


class FaultPlan:
    """The active faults and their counters; replaced whole at run time."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self.faults = tuple(faults)
        self._seen = [0] * len(self.faults)

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
