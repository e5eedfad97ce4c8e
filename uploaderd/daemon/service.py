"""``uploaderd run``: the spool, the journal and the engine, kept running.

Data flows one way: the watcher and the rescans find files, the intake puts
them in the journal, workers claim them from the journal and push them
through the engine, and the archiver moves them out of the spool.  Every
transition is committed before the next step, so kill -9 at any point loses
nothing: the next start continues from the journal.

This module is the work loop; the daemon's signs of life (systemd's status
line and watchdog, the published limit, the registry's reachability behind
``/readyz``) beat beside it in ``heartbeat``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from uploaderd.daemon import http, logs
from uploaderd.daemon.ahead import CheckAhead
from uploaderd.daemon.filepush import FilePush
from uploaderd.daemon.finished import Archiver
from uploaderd.daemon.heartbeat import Heartbeats
from uploaderd.daemon.intake import Intake
from uploaderd.daemon.journal import JOURNAL_NAME, FileRecord, Journal
from uploaderd.daemon.metrics import DaemonMetrics, DaemonStateCollector
from uploaderd.daemon.observer import DaemonObserver
from uploaderd.daemon.spool import IMAGE, walk
from uploaderd.daemon.systemd import SystemdNotifier
from uploaderd.daemon.watcher import Seen, Settler, SpoolWatcher
from uploaderd.engine.scheduler import UploadEngine
from uploaderd.errors import ConfigurationError, ErrorCode, UploaderError
from uploaderd.registry.base import Registry
from uploaderd.registry.choice import open_registry
from uploaderd.settings import DaemonSettings, plan_reload


@dataclass
class _Wakeup:
    """Wakes idle workers when the intake adds work."""

    event: anyio.Event = field(default_factory=anyio.Event)

    def set(self) -> None:
        self.event.set()
        self.event = anyio.Event()

    async def wait_at_most(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self.event.wait()


class Daemon:
    def __init__(
        self,
        settings: DaemonSettings,
        *,
        registry: Registry,
        journal: Journal,
        metrics: DaemonMetrics,
        notifier: SystemdNotifier,
        reload: Callable[[], DaemonSettings],
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.journal = journal
        self._reload = reload
        self.metrics = metrics
        self.notifier = notifier
        self.archiver = Archiver(
            settings.watch, settings.state_dir, delete_uploaded=settings.delete_uploaded
        )
        self.intake = Intake(journal, self.archiver)
        self.settler = Settler(settings.watch, settings.settle_seconds, self._admit)
        self.watcher = SpoolWatcher(settings.watch, self.settler, self.rescan)
        self.observer = DaemonObserver(journal, metrics)
        self.engine = UploadEngine(registry, settings.engine_settings(), self.observer)
        registry.client_retries.listen(metrics.client_retries.inc)
        DaemonStateCollector(
            journal,
            self.engine.budget,
            self.watcher,
            limit=self.engine.limit,
            registry=metrics.registry,
        )
        self.file_push = FilePush(
            journal=journal,
            engine=self.engine,
            observer=self.observer,
            metrics=metrics,
            archiver=self.archiver,
            registry=registry,
            settings=lambda: self.settings,
            pause=self._pause,
            ahead=CheckAhead(
                journal, self.engine.availability, self.engine.budget, lambda: self.settings.watch
            ),
        )
        self.heartbeats = Heartbeats(
            journal=journal,
            limit=self.engine.limit,
            registry=registry,
            metrics=metrics,
            notifier=notifier,
            settings=lambda: self.settings,
        )
        self.draining = False
        self.paused_reason: str | None = None
        self._wakeup = _Wakeup()

    # --- intake -----------------------------------------------------------------------

    def _admit(self, relpath: str) -> None:
        try:
            if self.intake.admit(relpath):
                self._wakeup.set()
        except OSError as exc:
            self._pause(f"cannot move {relpath} aside: {exc}")
        except UploaderError as exc:
            self._pause(str(exc))

    def rescan(self) -> None:
        """Report every spool file to the settler: catches what inotify missed."""
        for relpath in walk(self.settings.watch):
            self.settler.observe(relpath, Seen.FOUND)

    # --- workers ------------------------------------------------------------------------

    async def _worker(self) -> None:
        """Claims a file only once it holds a layer slot, so the journal's in-flight
        files are the layers the limit let start."""
        while not self.draining:
            if self.paused_reason is not None:
                await self._wakeup.wait_at_most(1.0)
                continue
            record = await self._push_next_layer()
            if record is None:
                await self._wakeup.wait_at_most(1.0)
            elif record.kind == IMAGE:
                # Outside the slot: each of its blobs takes one of its own
                # (engine.push_all), so an image holding a slot never waits
                # for its own blobs.
                await self.file_push.run(record)

    async def _push_next_layer(self) -> FileRecord | None:
        """Claim the next file within a slot and push it if it is a layer; the claimed record."""
        async with self.engine.limit.slot():
            if self.draining:
                return None
            record = self.journal.claim_next(time.time())
            if record is not None and record.kind != IMAGE:
                await self.file_push.run(record)
            return record

    def _pause(self, reason: str) -> None:
        """The state dir cannot take more: stop taking files rather than lose state."""
        if self.paused_reason is None:
            logs.event(
                "intake paused",
                level=logging.ERROR,
                reason=reason,
                action="free space or fix permissions in the state dir",
            )
        self.paused_reason = reason

    # --- services -------------------------------------------------------------------------

    async def run(self) -> None:
        released = self.journal.release_claims()
        if released:
            logs.event("resuming interrupted files", files=released)
        async with anyio.create_task_group() as services:
            app = http.metrics_app(self.metrics, self.readiness)
            host, port = self.settings.metrics_host, self.settings.metrics_port
            metrics_urls: list[str] = await services.start(http.serve, app, host, port)
            await services.start(self.watcher.run)
            self.rescan()
            services.start_soon(self.settler.run)
            services.start_soon(self._rescan_loop)
            services.start_soon(self.heartbeats.run)
            try:
                await self._work_until_signalled(metrics_urls)
            finally:
                self.heartbeats.unpublish_limit()
            services.cancel_scope.cancel()
        self.notifier.status("stopped")
        logs.event("stopped")

    async def _work_until_signalled(self, metrics_urls: list[str]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with anyio.create_task_group() as workers:
                # One worker per slot the limit could ever grant; the limit
                # decides how many push at once.
                for _ in range(self.engine.limit.ceiling):
                    workers.start_soon(self._worker)
                self.notifier.ready(self.heartbeats.status_line())
                logs.event(
                    "ready",
                    watch=str(self.settings.watch),
                    metrics=",".join(f"{url}/metrics" for url in metrics_urls),
                )
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        self.reload()
                        continue
                    self._start_drain(signum, workers.cancel_scope)
                    break

    def _start_drain(self, signum: int, workers: anyio.CancelScope) -> None:
        self.draining = True
        self._wakeup.set()
        workers.deadline = anyio.current_time() + self.settings.drain_timeout
        self.notifier.stopping("draining: finishing uploads in flight")
        logs.event(
            "draining",
            signal=signal.Signals(signum).name,
            timeout_seconds=self.settings.drain_timeout,
        )

    def reload(self) -> None:
        """SIGHUP: reloadable settings take effect; every other change is named, not applied."""
        try:
            fresh = self._reload()
        except ConfigurationError as exc:
            logs.event("reload refused", level=logging.ERROR, reason=exc.message)
            return
        plan = plan_reload(self.settings, fresh)
        self.settings = plan.settings
        self.settler.settle_seconds = plan.settings.settle_seconds
        self.archiver.delete_uploaded = plan.settings.delete_uploaded
        logs.configure(plan.settings.log_format)
        retuned = plan.settings.engine_settings()
        self.engine.retune(part_size=retuned.part_size, retry=retuned.retry)
        logs.event(
            "reloaded",
            applied=",".join(plan.applied) or "none",
            needs_restart=",".join(plan.needs_restart) or "none",
        )

    def readiness(self) -> str | None:
        if not self.watcher.running:
            return "the spool watcher is not running"
        if self.heartbeats.registry_reachable is not True:
            return "the registry has not answered"
        if self.paused_reason is not None:
            return f"intake paused: {self.paused_reason}"
        return None

    async def _rescan_loop(self) -> None:
        while True:
            await anyio.sleep(self.settings.rescan_interval)
            self.rescan()


def _check_directories(settings: DaemonSettings) -> None:
    watch, state = settings.watch.resolve(), settings.state_dir.resolve()
    if not watch.is_dir():
        raise ConfigurationError(
            f"the watch directory {settings.watch} does not exist or is not a directory; create it",
            code=ErrorCode.WATCH_DIR_MISSING,
        )
    if watch == state or watch in state.parents or state in watch.parents:
        raise ConfigurationError(
            f"the state dir {settings.state_dir} and the watch directory {settings.watch} "
            "must not contain one another; done/ and failed/ would be watched",
            code=ErrorCode.STATE_DIR_IN_SPOOL,
        )


async def run_daemon(settings: DaemonSettings, reload: Callable[[], DaemonSettings]) -> int:
    """Start everything ``uploaderd run`` needs and run until SIGTERM; the exit status."""
    _check_directories(settings)
    os.umask(0o077)  # state, done/ and failed/ are the owner's only
    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    journal = Journal.open(settings.state_dir / JOURNAL_NAME)
    registry_context = open_registry(settings.registry_choice())
    try:
        async with registry_context as registry:
            daemon = Daemon(
                settings,
                registry=registry,
                journal=journal,
                metrics=DaemonMetrics(),
                notifier=SystemdNotifier.from_environment(),
                reload=reload,
            )
            await daemon.run()
    finally:
        journal.close()
    return 0
