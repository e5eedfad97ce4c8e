"""Running the registry inside the caller's event loop, and its refusal windows.

The registry runs in the current event loop rather than a thread or a process so a
test can start one in a fixture and inspect it directly. Refusal windows close the
listening socket itself, so new connections meet ECONNREFUSED as they would with a
registry that is down, then listen again on the same port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from .config import LocalRegistryConfig
from .server import RegistryApp
from .stats import RequestLog

log = logging.getLogger(__name__)


class LocalRegistry:
    """An ECR-compatible registry on loopback, as an async context manager.

    After ``__aenter__``, ``url`` is the endpoint to give botocore (``endpoint_url``)
    and ``port`` the port actually bound (the config's port 0 picks a free one).
    """

    def __init__(self, config: LocalRegistryConfig) -> None:
        self.config = config
        self.url = ""
        self.port = 0
        self._app: RegistryApp | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._refusals = 0
        # Refusal windows are the only background work; each task is owned here and
        # cancelled and awaited on exit, so none outlives the registry.
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def app(self) -> RegistryApp:
        """The running application, for tests that want its stats or faults directly."""
        if self._app is None:
            raise RuntimeError("the local registry is not running")
        return self._app

    @property
    def request_log(self) -> RequestLog:
        """Each operation's calls counted by the ``registryId`` they carried (None: none)."""
        return self.app.stats.request_log

    async def __aenter__(self) -> LocalRegistry:
        self.config.storage.mkdir(parents=True, exist_ok=True)
        self._app = RegistryApp(self.config, self.refuse)
        # A short shutdown timeout: idle keep-alive connections must not hold exit.
        self._runner = web.AppRunner(self._app.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        try:
            await self._listen(self.config.port)
        except BaseException:
            await self._runner.cleanup()
            raise
        host = self.config.host
        self.url = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"
        for seconds in self._app.faults.refusals:
            self.refuse(seconds)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._site = None

    def refuse(self, seconds: float) -> None:
        """Stops accepting connections for ``seconds``; overlapping windows merge."""
        task = asyncio.get_running_loop().create_task(self._refusal(seconds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refusal(self, seconds: float) -> None:
        self._refusals += 1
        self.app.refusing = True
        if self._refusals == 1 and self._site is not None:
            await self._site.stop()
            self._site = None
        try:
            await asyncio.sleep(seconds)
        finally:
            self._refusals -= 1
        if self._refusals == 0:
            self.app.refusing = False
            try:
                await self._listen(self.port)
            except OSError:
                log.exception("local registry could not listen again on port %d", self.port)

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self.config.host, port, reuse_address=True)
        await site.start()
        self._site = site
        self.port = self._runner.addresses[0][1]


async def serve_forever(config: LocalRegistryConfig, announce: Callable[[str], None]) -> None:
    """Runs until cancelled; calls ``announce(url)`` once listening (the CLI prints it)."""
    async with LocalRegistry(config) as registry:
        announce(registry.url)
        await asyncio.Event().wait()
