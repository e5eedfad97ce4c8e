"""Counters that let client tests see what the registry saw.

A client's correctness is often only visible server-side: that parts of one layer were
never in flight together (``overlapping_requests_same_upload`` stays 0), that layers
really went up in parallel (``max_concurrent_uploads``), that each layer was completed
exactly once (``completed``), that every request carried the central account's
``registryId`` (``request_log``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from .protocol import JsonObject

#: Distinct (operation, registryId) pairs kept apart; past it, new ids count as OTHER.
MAX_LOGGED_KEYS = 1000
OTHER_REGISTRY_ID = "<other>"


class RequestLog:
    """How many API calls of each operation carried each ``registryId`` (None: absent).

    Counts rather than a list of requests, so a long-running demo's log stays small:
    operations are a fixed set and registry ids a handful, and a client inventing ids
    is folded into ``OTHER_REGISTRY_ID`` past :data:`MAX_LOGGED_KEYS` pairs.
    """

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str | None]] = Counter()

    def record(self, operation: str, registry_id: object) -> None:
        logged = None if registry_id is None else str(registry_id)
        key = (operation, logged)
        if key not in self._counts and len(self._counts) >= MAX_LOGGED_KEYS:
            key = (operation, OTHER_REGISTRY_ID)
        self._counts[key] += 1

    @property
    def counts(self) -> dict[tuple[str, str | None], int]:
        """(operation, registryId or None) -> number of calls, a copy."""
        return dict(self._counts)

    def registry_ids(self, operation: str | None = None) -> set[str | None]:
        """The registry ids calls carried (None for calls without one), of one operation or all."""
        return {r for (op, r) in self._counts if operation is None or op == operation}

    def to_json(self) -> list[JsonObject]:
        return [
            {"operation": op, "registryId": registry_id, "count": count}
            for (op, registry_id), count in sorted(
                self._counts.items(), key=lambda item: (item[0][0], item[0][1] or "")
            )
        ]


class RegistryStats:
    def __init__(self) -> None:
        # Requests in progress per upload id survive reset(): they describe live
        # requests, and forgetting them would corrupt the counts after the reset.
        self._requests_in_progress: Counter[str] = Counter()
        self._parts_in_progress: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.parts_received = 0
        self.bytes_received = 0
        self.completed: Counter[str] = Counter()
        self.max_concurrent_uploads = 0
        self.overlapping_requests_same_upload = 0
        self.faults_injected: Counter[str] = Counter()
        self.request_log = RequestLog()

    @contextmanager
    def upload_request(self, operation: str, upload_id: str) -> Iterator[None]:
        """Brackets the processing of a request that names an upload id."""
        if self._requests_in_progress[upload_id] > 0:
            self.overlapping_requests_same_upload += 1
        self._requests_in_progress[upload_id] += 1
        is_part = operation == "UploadLayerPart"
        if is_part:
            self._parts_in_progress[upload_id] += 1
            self.max_concurrent_uploads = max(
                self.max_concurrent_uploads, len(self._parts_in_progress)
            )
        try:
            yield
        finally:
            _decrement(self._requests_in_progress, upload_id)
            if is_part:
                _decrement(self._parts_in_progress, upload_id)

    def part_received(self, size: int) -> None:
        self.parts_received += 1
        self.bytes_received += size

    def to_json(self) -> JsonObject:
        return {
            "requests": dict(self.requests),
            "parts_received": self.parts_received,
            "bytes_received": self.bytes_received,
            "completed": dict(self.completed),
            "max_concurrent_uploads": self.max_concurrent_uploads,
            "overlapping_requests_same_upload": self.overlapping_requests_same_upload,
            "faults_injected": dict(self.faults_injected),
            "request_log": self.request_log.to_json(),
        }


def _decrement(counter: Counter[str], key: str) -> None:
    """Drops keys at zero so ``len(counter)`` counts uploads actually in progress."""
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
