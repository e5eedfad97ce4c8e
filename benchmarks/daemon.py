"""A real ``uploaderd run`` process for benchmarks: started, fed, watched, stopped, measured.

The daemon is the console script itself (no ``python -m`` launcher), so os.wait4 after
SIGTERM reports the daemon's own peak RSS, drain included. Every wait has a deadline
and a stall check, and the daemon is always stopped (SIGTERM, then SIGKILL) however a
benchmark ends, so a crashed or hung run fails with its log instead of hanging.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.harness import BenchmarkError

READY_TIMEOUT = 30.0
#: SIGTERM gives uploads in flight --drain-timeout (set below) to finish; then we kill.
DRAIN_SECONDS = 10.0
STOP_TIMEOUT = DRAIN_SECONDS + 20.0
#: No file finished and no byte reached the registry for this long: the run is stuck.
STALL_TIMEOUT = 120.0
PROGRESS_CHECK_INTERVAL = 2.0
LOG_TAIL_CHARS = 4000


@dataclass(frozen=True, slots=True)
class DaemonExit:
    returncode: int
    #: ru_maxrss from wait4: the daemon's peak over its whole life, drain included.
    peak_rss_bytes: int
    #: VmHWM read from /proc just before SIGTERM: the peak while it was pushing.
    hwm_before_stop_bytes: int


class LogFollower:
    """Reads the daemon's JSON log lines as they are written, keeping a partial line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""

    def new_events(self) -> list[dict[str, Any]]:
        with self.path.open("r", encoding="utf-8", errors="replace") as log:
            log.seek(self._offset)
            text = log.read()
            self._offset = log.tell()
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return events


def event_time(event: dict[str, Any]) -> float:
    """The event's ``ts`` (UTC, millisecond resolution, truncated) as time.time() seconds."""
    stamp = datetime.strptime(str(event["ts"]), "%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.replace(tzinfo=UTC).timestamp()


class DaemonProcess:
    def __init__(
        self, process: subprocess.Popen[bytes], root: Path, metrics_url: str, log_path: Path
    ) -> None:
        self.process = process
        self.watch = root / "spool"
        self.state_dir = root / "state"
        self.metrics_url = metrics_url
        self.log_path = log_path
        self.log = LogFollower(log_path)
        self.exit: DaemonExit | None = None

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def done_count(self, repository: str) -> int:
        try:
            return sum(1 for entry in os.scandir(self.state_dir / "done" / repository))
        except FileNotFoundError:
            return 0

    def failures(self) -> list[str]:
        """The .error.json of every failed file, so a failed run says why."""
        root = self.state_dir / "failed"
        if not root.exists():
            return []
        return [p.read_text(errors="replace") for p in sorted(root.rglob("*.error.json"))]

    def check_alive(self, what: str) -> None:
        if self.process.poll() is not None:
            raise BenchmarkError(
                f"the daemon exited (rc {self.process.returncode}) while {what}; "
                f"log tail:\n{self.log_tail()}"
            )
        failed = self.failures()
        if failed:
            raise BenchmarkError(f"the daemon failed files while {what}:\n" + "\n".join(failed))

    def wait_until(
        self,
        condition: Callable[[], bool],
        *,
        what: str,
        timeout: float,
        interval: float = 0.05,
        progress: Callable[[], object] | None = None,
    ) -> None:
        """Polls ``condition``; fails on a crash, a failed file, a stall or the deadline."""
        started = time.monotonic()
        last_progress, last_change, last_check = None, started, started
        while not condition():
            now = time.monotonic()
            self.check_alive(what)
            if now - started > timeout:
                raise BenchmarkError(
                    f"timed out after {timeout:.0f} s {what}; log tail:\n{self.log_tail()}"
                )
            if progress is not None and now - last_check >= PROGRESS_CHECK_INTERVAL:
                last_check = now
                current = progress()
                if current != last_progress:
                    last_progress, last_change = current, now
                elif now - last_change > STALL_TIMEOUT:
                    raise BenchmarkError(
                        f"no progress for {STALL_TIMEOUT:.0f} s {what} (at {current}); "
                        f"log tail:\n{self.log_tail()}"
                    )
            time.sleep(interval)

    def stop(self) -> DaemonExit:
        """SIGTERM, then reap with wait4 for the peak RSS; SIGKILL if the drain hangs."""
        if self.exit is not None:
            return self.exit
        hwm = _vm_hwm(self.process.pid)
        if self.process.returncode is not None:
            raise BenchmarkError(f"the daemon had already exited (rc {self.process.returncode})")
        # os.kill, not Popen.send_signal: that polls first and could reap the child,
        # losing its rusage to Popen.
        os.kill(self.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        while pid == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        killed = pid == 0
        if killed:
            os.kill(self.process.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        # ru_maxrss is in KiB on Linux.
        self.exit = DaemonExit(self.process.returncode, usage.ru_maxrss * 1024, hwm)
        if killed:
            raise BenchmarkError(
                f"the daemon did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM and was "
                f"killed; log tail:\n{self.log_tail()}"
            )
        return self.exit


def _vm_hwm(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@contextmanager
def running_daemon(root: Path, endpoint_url: str, *options: str) -> Iterator[DaemonProcess]:
    """``uploaderd run`` on ``root/spool`` and ``root/state``, ready (watcher up, registry
    answered) when yielded, and stopped on the way out whatever happened."""
    (root / "spool").mkdir(parents=True, exist_ok=True)
    port = harness.free_port()
    log_path = root / "daemon.log"
    argv = [
        harness.uploaderd_executable(),
        "run",
        "--watch",
        str(root / "spool"),
        "--state-dir",
        str(root / "state"),
        "--endpoint-url",
        endpoint_url,
        "--metrics-address",
        f"127.0.0.1:{port}",
        "--log-format",
        "json",
        "--settle-seconds",
        "0.2",
        "--drain-timeout",
        str(DRAIN_SECONDS),
        *options,
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=harness.push_environment()
        )
    daemon = DaemonProcess(process, root, f"http://127.0.0.1:{port}", log_path)
    try:
        daemon.wait_until(
            lambda: _answers(f"{daemon.metrics_url}/readyz"),
            what="waiting for the daemon's /readyz",
            timeout=READY_TIMEOUT,
            interval=0.1,
        )
        yield daemon
    finally:
        if daemon.exit is None and process.poll() is None:
            try:
                daemon.stop()
            except BenchmarkError as exc:
                print(f"while cleaning up: {exc}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def stage_random_files(directory: Path, count: int, size: int) -> list[Path]:
    """Writes layers outside the spool, on the same file system, as a build system does
    before renaming them in (a rename is atomic; a copy would be seen half written)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"layer-{index:05d}.tar" for index in range(count)]
    for path in paths:
        harness.write_random(path, size)
    return paths


def rename_into(paths: list[Path], destination: Path) -> float:
    """Renames every file into ``destination``; returns time.time() just before the first."""
    destination.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for path in paths:
        os.rename(path, destination / path.name)
    return started
