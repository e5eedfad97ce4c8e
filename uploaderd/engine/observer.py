"""What the engine tells the outside world while it works.

Metrics, the journal, log lines and terminal progress all watch the same
events; the engine calls an ``EngineObserver`` and never imports any of them,
so data flows one way: engine -> observers.
"""

from __future__ import annotations

from typing import Protocol

from uploaderd.model import LayerJob, LayerResult


class EngineObserver(Protocol):
    """Hooks called from the event loop; they must not block."""

    def layer_started(self, job: LayerJob) -> None:
        """The engine took the layer: it is being checked and hashed."""

    def layer_hashed(self, job: LayerJob, digest: str, size: int) -> None: ...

    def upload_started(self, job: LayerJob, upload_id: str, part_size: int) -> None: ...

    def part_confirmed(self, job: LayerJob, next_byte: int, nbytes: int, seconds: float) -> None:
        """The registry holds bytes up to ``next_byte - 1``; ``nbytes`` of them were just sent."""

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None: ...

    def layer_finished(self, result: LayerResult) -> None: ...


class SilentObserver:
    """The observer for callers that only want the results."""

    def layer_started(self, job: LayerJob) -> None:
        pass

    def layer_hashed(self, job: LayerJob, digest: str, size: int) -> None:
        pass

    def upload_started(self, job: LayerJob, upload_id: str, part_size: int) -> None:
        pass

    def part_confirmed(self, job: LayerJob, next_byte: int, nbytes: int, seconds: float) -> None:
        pass

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None:
        pass

    def layer_finished(self, result: LayerResult) -> None:
        pass
