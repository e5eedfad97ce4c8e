"""Live progress for ``uploaderd push`` and ``uploaderd status --watch`` on a terminal.

rich draws and redraws the display; this module only maps engine events to
rows: one per layer (state, bytes, rate, ETA) and a total.  When output is
not a terminal the caller prints plain lines instead, so logs and pipes
never receive escape codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from uploaderd.cli.report import result_line
from uploaderd.model import LayerJob, LayerResult


class PushProgress:
    """An ``EngineObserver`` drawing one row per layer and a total row."""

    def __init__(self, jobs: list[LayerJob], console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.progress = Progress(
            TextColumn("{task.fields[state]:<9}"),
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            refresh_per_second=8,
        )
        self._tasks: dict[Path, TaskID] = {}
        for job in jobs:
            self._tasks[job.path] = self.progress.add_task(
                job.path.name, total=None, state="queued"
            )
        self._total = self.progress.add_task("total", total=0, state="")

    def __enter__(self) -> PushProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def _task(self, job: LayerJob) -> TaskID:
        return self._tasks[job.path]

    def layer_started(self, job: LayerJob) -> None:
        self.progress.update(self._task(job), state="hashing")

    def layer_hashed(self, job: LayerJob, digest: str, size: int) -> None:
        self.progress.update(self._task(job), total=size, state="checking")
        self.progress.update(self._total, total=self._total_size() + size)

    def upload_started(self, job: LayerJob, upload_id: str, part_size: int) -> None:
        self.progress.update(self._task(job), state="uploading")

    def part_confirmed(self, job: LayerJob, next_byte: int, nbytes: int, seconds: float) -> None:
        self.progress.update(self._task(job), completed=next_byte, state="uploading")
        self.progress.advance(self._total, nbytes)

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None:
        self.progress.update(self._task(job), state="retrying")

    def layer_finished(self, result: LayerResult) -> None:
        task = self._task(result.job)
        self.progress.update(task, state=result.outcome.value, completed=result.size)
        self.progress.console.print(Text(result_line(result)))

    def _total_size(self) -> int:
        total = self.progress.tasks[self._total].total
        return int(total or 0)


def watch_refreshing(render: Callable[[], str], interval: float = 1.0) -> None:
    """Redraw ``render()`` in place until interrupted (``uploaderd status --watch``)."""
    console = Console()
    with Live(Text(render()), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(Text(render()), refresh=True)
        except KeyboardInterrupt:
            return
