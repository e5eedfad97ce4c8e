"""Prometheus metrics: what the daemon exports, and where each value comes from.

Names follow the Prometheus naming guide (unit suffixes, ``_total`` for
counters).  Labels have small fixed value sets: repository, outcome, reason,
error code.  Never a digest, file name or upload id: those would make a new
series per layer.  Histogram buckets reach an hour because a multi-GiB layer
takes minutes, far past the library's default 10 s ceiling.

Events (a part confirmed, a layer finished, a ping answered) are counted as
they happen.  State (the queue, the read-ahead bytes, the watcher) is read
when Prometheus scrapes, by ``DaemonStateCollector``, the way
prometheus-client's ``ProcessCollector`` reads /proc: a scrape never sees a
value older than itself, and no loop has to stay alive to keep it fresh.
Serving the registry over HTTP is ``uploaderd.daemon.http``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from uploaderd import __version__
from uploaderd.daemon.journal import QueueFigures
from uploaderd.engine.observer import SilentObserver
from uploaderd.errors import JournalError, RegistryError
from uploaderd.model import LayerJob, LayerResult

PART_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
LAYER_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class DaemonMetrics(SilentObserver):
    """The metrics events update, on a registry of the daemon's own.

    The state gauges join the same registry as a ``DaemonStateCollector``
    once the daemon has the journal, the engine and the watcher to read.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.uploaded_bytes = Counter(
            "uploaderd_uploaded_bytes", "Bytes the registry confirmed", ["repository"], registry=r
        )
        self.layers = Counter(
            "uploaderd_layers", "Layers finished, by outcome", ["repository", "outcome"], registry=r
        )
        self.retries = Counter("uploaderd_retries", "Retries, by reason", ["reason"], registry=r)
        self.client_retries = Counter(
            "uploaderd_client_retries",
            "Requests the AWS client retried on its own before it answered (throttling, 5xx)",
            registry=r,
        )
        self.registry_errors = Counter(
            "uploaderd_registry_errors", "Registry errors, by error code", ["code"], registry=r
        )
        self.part_seconds = Histogram(
            "uploaderd_part_upload_seconds",
            "Time to send one part",
            buckets=PART_BUCKETS,
            registry=r,
        )
        self.layer_seconds = Histogram(
            "uploaderd_layer_upload_seconds",
            "Time to push one layer, hashing included",
            buckets=LAYER_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("uploaderd_layers_in_flight", "Layers being pushed", registry=r)
        self.last_progress = Gauge(
            "uploaderd_last_progress_timestamp_seconds",
            "Unix time of the last confirmed part or finished layer",
            registry=r,
        )
        self.registry_reachable = Gauge(
            "uploaderd_registry_reachable", "1 when the registry answered lately", registry=r
        )
        Gauge("uploaderd_build_info", "Version", ["version"], registry=r).labels(__version__).set(1)
        self.last_progress.set(time.time())

    # --- EngineObserver (the events metrics count; SilentObserver ignores the rest) -------

    def part_confirmed(self, job: LayerJob, next_byte: int, nbytes: int, seconds: float) -> None:
        if nbytes:
            self.uploaded_bytes.labels(job.repository).inc(nbytes)
            self.part_seconds.observe(seconds)
        self.last_progress.set(time.time())

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None:
        self.retries.labels(reason).inc()
        self.registry_errors.labels(reason).inc()

    def layer_finished(self, result: LayerResult) -> None:
        self.layers.labels(result.job.repository, result.outcome.value).inc()
        self.layer_seconds.observe(result.seconds)
        if isinstance(result.error, RegistryError):
            self.registry_errors.labels(result.error.code).inc()
        self.last_progress.set(time.time())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class QueueSource(Protocol):
    """The journal, as the collector reads it."""

    def queue_figures(self) -> QueueFigures: ...


class HeldBytes(Protocol):
    """The engine's byte budget, as the collector reads it."""

    @property
    def held(self) -> int: ...


class Running(Protocol):
    """The spool watcher, as the collector reads it."""

    @property
    def running(self) -> bool: ...


class CurrentLimit(Protocol):
    """The engine's layer limit, as the collector reads it."""

    @property
    def current(self) -> int: ...


STATE_GAUGES = {
    "uploaderd_queue_files": "Files queued or in flight",
    "uploaderd_queue_bytes": "Bytes of files queued or in flight",
    "uploaderd_oldest_queued_file_age_seconds": "Age of the oldest queued file",
    "uploaderd_readahead_bytes": "Layer bytes held in memory (read-ahead)",
    "uploaderd_watcher_up": "1 while the spool watcher runs",
    "uploaderd_concurrency_limit": "Layers allowed in flight now (fixed, or adapted by AIMD)",
}
"""The gauges read at scrape time, name and help; dashboards and alerts are written against them."""


class DaemonStateCollector:
    """The daemon's state gauges, read from their owners on every scrape.

    A journal that cannot be read leaves the queue gauges out of that scrape
    instead of failing it: a failed scrape would hide every other metric and
    look like a daemon that is down.  The daemon's own writes to that journal
    fail too, and those pause intake and log what to fix.
    """

    def __init__(
        self,
        journal: QueueSource,
        budget: HeldBytes,
        watcher: Running,
        *,
        limit: CurrentLimit | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.journal = journal
        self.budget = budget
        self.watcher = watcher
        self.limit = limit
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Lets the registry refuse a second metric of the same name at registration."""
        for name, documentation in STATE_GAUGES.items():
            yield GaugeMetricFamily(name, documentation)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, value in self._values().items():
            yield GaugeMetricFamily(name, STATE_GAUGES[name], value=value)

    def _values(self) -> dict[str, float]:
        values: dict[str, float] = {
            "uploaderd_readahead_bytes": self.budget.held,
            "uploaderd_watcher_up": 1 if self.watcher.running else 0,
        }
        if self.limit is not None:
            values["uploaderd_concurrency_limit"] = self.limit.current
        try:
            figures = self.journal.queue_figures()
        except JournalError:
            return values
        oldest = figures.oldest_queued_at
        return values | {
            "uploaderd_queue_files": figures.files,
            "uploaderd_queue_bytes": figures.bytes,
            "uploaderd_oldest_queued_file_age_seconds": time.time() - oldest if oldest else 0,
        }
