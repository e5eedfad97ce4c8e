"""Prometheus metrics and the HTTP endpoints operators scrape.

Names follow the Prometheus naming guide (unit suffixes, ``_total`` for
counters).  Labels have small fixed value sets: repository, outcome, reason,
error code.  Never a digest, file name or upload id: those would make a new
series per layer.  Histogram buckets reach an hour because a multi-GiB layer
takes minutes, far past the library's default 10 s ceiling.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from uploaderd import __version__
from uploaderd.engine.observer import SilentObserver
from uploaderd.errors import RegistryError
from uploaderd.model import LayerJob, LayerResult

PART_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
LAYER_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class DaemonMetrics(SilentObserver):
    """Every metric the daemon exports, on a registry of its own."""

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
        self.queue_files = Gauge("uploaderd_queue_files", "Files queued or in flight", registry=r)
        self.queue_bytes = Gauge(
            "uploaderd_queue_bytes", "Bytes of files queued or in flight", registry=r
        )
        self.readahead_bytes = Gauge(
            "uploaderd_readahead_bytes", "Layer bytes held in memory (read-ahead)", registry=r
        )
        self.oldest_age = Gauge(
            "uploaderd_oldest_queued_file_age_seconds",
            "Age of the oldest queued file",
            registry=r,
        )
        self.last_progress = Gauge(
            "uploaderd_last_progress_timestamp_seconds",
            "Unix time of the last confirmed part or finished layer",
            registry=r,
        )
        self.watcher_up = Gauge(
            "uploaderd_watcher_up", "1 while the spool watcher runs", registry=r
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


Readiness = Callable[[], str | None]
"""Returns None when ready, else what is not."""


def metrics_app(metrics: DaemonMetrics, readiness: Readiness) -> web.Application:
    async def scrape(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        problem = readiness()
        if problem is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {problem}\n")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
