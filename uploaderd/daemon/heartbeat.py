"""The running daemon's signs of life, beside the work loop and never in its way.

systemd shows a ``STATUS=`` line of the queue and the layer limit, and may
kill a daemon that stops sending ``WATCHDOG=1``; ``uploaderd status`` reads
the layer limit from the state dir (``limitfile``); ``/readyz`` answers
ready only while the registry answers.  Each is a loop that reads state and
reports it, so none of them can hold up a push.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import anyio

from uploaderd.daemon import logs
from uploaderd.daemon.journal import Journal
from uploaderd.daemon.limitfile import PublishedLimit, remove_limit, write_limit
from uploaderd.daemon.metrics import DaemonMetrics
from uploaderd.daemon.systemd import SystemdNotifier
from uploaderd.engine.limiter import LayerLimit
from uploaderd.errors import JournalError, TransientRegistryError
from uploaderd.registry.base import Registry
from uploaderd.settings import DaemonSettings
from uploaderd.sizes import MIB

REACHABILITY_INTERVAL = 15.0
STATUS_INTERVAL = 1.0
"""How often systemd's STATUS= line is refreshed; metrics are read at scrape time."""


class Heartbeats:
    """The status line and published limit, the watchdog, and the registry's reachability."""

    def __init__(
        self,
        *,
        journal: Journal,
        limit: LayerLimit,
        registry: Registry,
        metrics: DaemonMetrics,
        notifier: SystemdNotifier,
        settings: Callable[[], DaemonSettings],
    ) -> None:
        self.journal = journal
        self.limit = limit
        self.registry = registry
        self.metrics = metrics
        self.notifier = notifier
        self._settings = settings
        self.registry_reachable: bool | None = None
        """None until the first ping is over: not ready before then."""
        self._published: PublishedLimit | None = None

    async def run(self) -> None:
        """Every heartbeat, until cancelled with the daemon's services."""
        async with anyio.create_task_group() as beats:
            beats.start_soon(self._status_loop)
            beats.start_soon(self._watchdog_loop)
            beats.start_soon(self._reachability_loop)

    # --- status line and published limit --------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            self.notifier.status(self.status_line())
            self._publish_limit()
            await anyio.sleep(STATUS_INTERVAL)

    def _publish_limit(self) -> None:
        """The layer limit for ``uploaderd status``, rewritten only when it changed."""
        published = PublishedLimit.of(self.limit.statistics())
        if published.same_limit(self._published):
            return
        try:
            write_limit(self._settings().state_dir, published)
        except OSError:
            return  # advisory: the journal's own writes report a state dir in trouble
        self._published = published

    def unpublish_limit(self) -> None:
        """The daemon stops: ``status`` must not show a limit nobody applies."""
        with contextlib.suppress(OSError):
            remove_limit(self._settings().state_dir)

    def status_line(self) -> str:
        try:
            figures = self.journal.queue_figures()
        except JournalError as exc:
            return f"journal unreadable: {exc.message}"
        return (
            f"queue {figures.waiting_files} waiting ({figures.waiting_bytes / MIB:.1f} MiB), "
            f"{figures.in_flight_files} in flight ({figures.in_flight_bytes / MIB:.1f} MiB), "
            f"limit {self.limit.current}"
        )

    # --- watchdog and reachability ---------------------------------------------------------

    async def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await anyio.sleep(interval)

    async def _reachability_loop(self) -> None:
        while True:
            try:
                with anyio.fail_after(self._settings().request_timeout):
                    await self.registry.ping()
                reachable = True
            except (TransientRegistryError, TimeoutError):
                reachable = False
            if reachable != self.registry_reachable:
                logs.event(
                    "registry reachable" if reachable else "registry unreachable",
                    level=logging.INFO if reachable else logging.WARNING,
                )
            self.registry_reachable = reachable
            self.metrics.registry_reachable.set(1 if reachable else 0)
            await anyio.sleep(REACHABILITY_INTERVAL)
