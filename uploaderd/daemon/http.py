"""The daemon's HTTP endpoints: /metrics for Prometheus, /healthz and /readyz for probes.

Serving is kept apart from what is measured (``uploaderd.daemon.metrics``), as
prometheus-client keeps its exposition apart from its collectors: a scrape
here only renders the registry, and every value is read or counted there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
from aiohttp import web
from anyio.abc import TaskStatus
from prometheus_client import CONTENT_TYPE_LATEST

from uploaderd.daemon.metrics import DaemonMetrics
from uploaderd.errors import ConfigurationError, ErrorCode

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


async def serve(
    app: web.Application, host: str, port: int, *, task_status: TaskStatus[list[str]]
) -> None:
    """Listen until cancelled; started with the URL of every socket bound.

    The URLs carry the ports the kernel gave, so asking for port 0 (any free
    port) still tells the operator, and a test, where to scrape.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on {host_port(host, port)} for metrics: "
                f"{exc.strerror}; choose another --metrics-address",
                code=ErrorCode.METRICS_ADDRESS_IN_USE,
            ) from None
        task_status.started(bound_urls(runner.addresses))
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


def bound_urls(addresses: Sequence[Any]) -> list[str]:
    """``http://HOST:PORT`` for each TCP socket name (IPv4 pairs, IPv6 quadruples)."""
    return [f"http://{host_port(str(name[0]), int(name[1]))}" for name in addresses]


def host_port(host: str, port: int) -> str:
    """``HOST:PORT``, with an IPv6 host in brackets as URLs and --metrics-address write it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
