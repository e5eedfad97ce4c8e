"""Counters that let client tests see what the registry saw.

A client's correctness is often only visible server-side: that parts of one layer were
never in flight together (``overlapping_requests_same_upload`` stays 0), that layers
really went up in parallel (``max_concurrent_uploads``), that each layer was completed
exactly once (``completed``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from .protocol import JsonObject


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
        }


def _decrement(counter: Counter[str], key: str) -> None:
    """Drops keys at zero so ``len(counter)`` counts uploads actually in progress."""
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
