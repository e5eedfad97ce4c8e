"""What every benchmark needs: layers on disk, a registry process, a measured push, a record.

The benchmarks drive the real ``uploaderd`` processes rather than calling the engine
in-process, because what an operator gets is the process: its start-up, its event loop,
its botocore serialisation and its resident memory all count. The figures are always
ratios against a reference measured in the same run, since two noisy cores make
absolute numbers from different runs incomparable.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

MIB = 1024 * 1024
GIB = 1024 * MIB
#: os.urandom is called per chunk so generating a 256 MiB layer never holds 256 MiB.
GENERATE_CHUNK = 4 * MIB
REGISTRY_START_TIMEOUT = 30.0
#: A push child still running after this long is killed: a hung run must not hang us.
RUN_TIMEOUT = 1800.0
RESULTS_PATH = Path(__file__).with_name("RESULTS.md")
#: The checkout these benchmarks belong to (and measure, unless told otherwise).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Files the benchmarks write themselves, relative to the repository root.
OUTPUTS = ("benchmarks/RESULTS.md", "benchmarks/concurrency.png")
RESULTS_INTRO = """\
# Benchmark results

Appended by `python -m benchmarks`, one row per figure, never edited by hand.

- **date**: when the run ended (UTC); **machine**: `uname -m` and the CPU count.
- **figure**: what was measured; **value**: the measurement.
- **reference**: what it is compared with, measured in the same run (a wire limit,
  a budget, the concurrency-1 throughput); **ratio**: value / reference.
- **target**: what the design promises; **met?**: whether this run met it.
- **command**: exactly what was run, from the repository root with the venv's python.
"""
#: Rows written before the commit was recorded have no commit column; rather than
#: rewrite them, a file that has only the old table gets this second table appended.
COMMIT_COLUMNS = "| date (UTC) | commit | machine |"
COMMIT_TABLE = f"""
## Rows that name the commit measured

From here on each row also names the commit measured (`git rev-parse --short HEAD`),
with `+dirty` when tracked files had uncommitted changes: such a figure cannot be
reproduced from the commit alone. The other columns are as above.

{COMMIT_COLUMNS} benchmark | figure | value | reference | ratio | target | met? | command |
|---|---|---|---|---|---|---|---|---|---|---|
"""


class BenchmarkError(RuntimeError):
    """A run that produced no trustworthy figure: the message says what went wrong."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure and the same-run reference it is judged against."""

    benchmark: str
    name: str
    value: float
    reference: float
    target: str
    met: bool

    @property
    def ratio(self) -> float:
        return self.value / self.reference if self.reference else float("nan")


@dataclass(frozen=True, slots=True)
class ChildRun:
    """A finished child process: how long it took and how much memory it held at most."""

    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    stdout: str
    stderr: str


def uploaderd_executable() -> str:
    """The venv's console script; it is a Python script, so exec makes the child Python
    itself (no shell or launcher in between whose memory we would measure instead)."""
    beside = Path(sys.executable).with_name("uploaderd")
    found = str(beside) if beside.exists() else shutil.which("uploaderd")
    if found is None:
        raise SystemExit("uploaderd is not installed in this environment")
    return found


def push_environment() -> dict[str, str]:
    """Dummy credentials and no config files, so nothing on this host changes the run."""
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="benchmark",
        AWS_SECRET_ACCESS_KEY="benchmark",
        AWS_REGION="us-east-1",
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    return env


def require_free_disk(needed_bytes: int, directory: str | None = None) -> None:
    """Fails before writing anything rather than filling the disk halfway through."""
    where = directory or tempfile.gettempdir()
    free = shutil.disk_usage(where).free
    if free < needed_bytes:
        raise BenchmarkError(
            f"{where} has {free / GIB:.1f} GiB free; this benchmark needs "
            f"{needed_bytes / GIB:.1f} GiB (layers and the registry's copy); free some space "
            "or point TMPDIR elsewhere"
        )


@contextmanager
def temporary_layers(count: int, size: int) -> Iterator[list[Path]]:
    """Incompressible layers on disk, deleted afterwards however the benchmark ends."""
    with tempfile.TemporaryDirectory(prefix="uploaderd-bench-layers-") as directory:
        paths = []
        for index in range(count):
            path = Path(directory) / f"layer-{index}.tar"
            write_random(path, size)
            paths.append(path)
        yield paths


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as out:
        remaining = size
        while remaining:
            chunk = min(GENERATE_CHUNK, remaining)
            out.write(os.urandom(chunk))
            remaining -= chunk


def free_port() -> int:
    """A loopback port nothing listens on right now, for a child server to take."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RegistryProcess:
    """A ``uploaderd local-registry`` child process with its own fresh storage."""

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=10) as answer:
            stats: dict[str, Any] = json.load(answer)
        return stats


@contextmanager
def local_registry(*extra_args: str) -> Iterator[RegistryProcess]:
    """Starts the registry on a free port and waits for its 'listening on' line."""
    with tempfile.TemporaryDirectory(prefix="uploaderd-bench-registry-") as storage:
        argv = [
            uploaderd_executable(),
            "local-registry",
            "--storage",
            storage,
            "--port",
            "0",
            "--auto-create-repositories",
            *extra_args,
        ]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        try:
            yield RegistryProcess(_await_listening(process), process)
        finally:
            _stop(process)


def _await_listening(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + REGISTRY_START_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"local registry exited before listening (rc {process.wait()})")
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return match.group(1)
    raise RuntimeError("local registry did not say it was listening in time")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def push_argv(
    files: Sequence[Path],
    *,
    repository: str,
    endpoint_url: str,
    concurrency: int,
    memory_budget: str,
) -> list[str]:
    return [
        uploaderd_executable(),
        "push",
        "--repository",
        repository,
        "--endpoint-url",
        endpoint_url,
        "--concurrency",
        str(concurrency),
        "--memory-budget",
        memory_budget,
        "--json",
        *(str(path) for path in files),
    ]


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


def push_outcomes(stdout: str) -> list[str]:
    """The outcome of each layer from ``uploaderd push --json`` (one object a line)."""
    return [json.loads(line)["outcome"] for line in stdout.splitlines() if line.strip()]


def completed_layers(stats: dict[str, Any]) -> int:
    completed: dict[str, int] = stats.get("completed", {})
    return sum(completed.values())


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs"


def print_table(title: str, rows: Sequence[tuple[str, str]], out: TextIO = sys.stdout) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}", file=out)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}", file=out)
    out.flush()


def git_commit(root: Path = REPO_ROOT) -> str:
    """The commit measured, ``+dirty`` if tracked files differ from it.

    Untracked files are ignored (scratch files beside the checkout do not change what
    was measured), and so are the benchmarks' own outputs, RESULTS.md and the plot:
    rows appended by an earlier run must not mark the next run's code as changed.
    ``root`` is another checkout when a benchmark measures that checkout's code."""
    try:
        head = _git(root, "rev-parse", "--short", "HEAD").strip()
        dirty = _git(
            root,
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            *(f":(exclude){output}" for output in OUTPUTS),
        ).strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
    ).stdout


def append_results(
    figures: Sequence[Figure], command: str, commit: str, path: Path = RESULTS_PATH
) -> None:
    """Appends one row per figure, starting the table with the commit column if needed."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    lines = [
        f"| {date} | {commit} | {machine()} | {f.benchmark} | {f.name} | {f.value:.1f} | "
        f"{f.reference:.1f} | {f.ratio:.2f} | {f.target} | {'yes' if f.met else 'NO'} | "
        f"`{command}` |\n"
        for f in figures
    ]
    existing = path.read_text(encoding="utf-8") if path.exists() else None
    with path.open("a", encoding="utf-8") as results:
        if existing is None:
            results.write(RESULTS_INTRO + COMMIT_TABLE)
        elif COMMIT_COLUMNS not in existing:
            results.write(COMMIT_TABLE)
        results.writelines(lines)
