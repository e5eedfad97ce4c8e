"""The servers the pushes are measured against: ``uploaderd local-registry`` as a child process."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.harness import BenchmarkError, uploaderd_executable

REGISTRY_START_TIMEOUT = 30.0


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
            stop(process)


def _await_listening(process: subprocess.Popen[str]) -> str:
    return await_line(process, r"listening on (http://\S+)", "local registry")[1]


def await_line(
    process: subprocess.Popen[str],
    pattern: str,
    what: str,
    timeout: float = REGISTRY_START_TIMEOUT,
) -> re.Match[str]:
    """The first line of ``process``'s output matching ``pattern`` (a server's "listening").

    Fails if the process exits first or says nothing matching within ``timeout`` seconds.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise BenchmarkError(f"{what} exited before listening (rc {process.wait()})")
        match = re.search(pattern, line)
        if match:
            return match
    raise BenchmarkError(f"{what} did not say it was listening in time")


def stop(process: subprocess.Popen[str]) -> None:
    """Terminate a server process, killing it if it takes more than 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def completed_layers(stats: dict[str, Any]) -> int:
    completed: dict[str, int] = stats.get("completed", {})
    return sum(completed.values())
