"""Running one child process and measuring it: wall time, CPU time, peak resident memory.

The child is reaped with ``wait4``, so the peak RSS is the child's own, not ours
and not a shell's in between.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from benchmarks.harness import BenchmarkError

#: A push child still running after this long is killed: a hung run must not hang us.
RUN_TIMEOUT = 1800.0


@dataclass(frozen=True, slots=True)
class ChildRun:
    """A finished child process: how long it took and how much memory it held at most."""

    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    stdout: str
    stderr: str


def run_measured(
    argv: Sequence[str],
    env: dict[str, str],
    timeout: float = RUN_TIMEOUT,
    cwd: Path | None = None,
) -> ChildRun:
    """Runs a child and reaps it with wait4, so the peak RSS is that child's own.

    Output goes to files, not pipes: a pipe nobody reads while we block in wait4 could
    fill and stall the child, which would show up as a slow push. A child still running
    after ``timeout`` is killed and the run fails, rather than hanging the benchmark.
    ``cwd`` matters to ``python -m``/``-c`` children, which put it first on sys.path.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        # A timer kills the child rather than polling, so the wall time stays exact.
        killer = threading.Timer(timeout, os.kill, (process.pid, signal.SIGKILL))
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C, say: leave no orphan behind
            process.kill()
            process.wait()
            raise
        finally:
            killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        if time.perf_counter() - started >= timeout:
            raise BenchmarkError(
                f"{argv[1]} did not finish within {timeout:.0f} s and was killed; "
                f"stderr tail:\n{_read_all(err)[-4000:]}"
            )
        wall = time.perf_counter() - started
        cpu = usage.ru_utime + usage.ru_stime
        # ru_maxrss is in KiB on Linux.
        return ChildRun(
            process.returncode, wall, cpu, usage.ru_maxrss * 1024, _read_all(out), _read_all(err)
        )


def _read_all(stream: TextIO) -> str:
    stream.seek(0)
    return stream.read()
