"""What every benchmark needs: layers on disk, the ``uploaderd`` it runs and how.

Beside it: ``measure`` runs a child and measures it, ``servers`` starts the local
registry, ``record`` prints the figures and appends them to RESULTS.md.

The benchmarks drive the real ``uploaderd`` processes rather than calling the engine
in-process, because what an operator gets is the process: its start-up, its event loop,
its botocore serialisation and its resident memory all count. The figures are always
ratios against a reference measured in the same run, since two noisy cores make
absolute numbers from different runs incomparable.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

# Offered here for daemon.py and skopeo.py: one free_port for the product, tests and benchmarks.
from uploaderd.testing import free_port  # noqa: F401

MIB = 1024 * 1024
GIB = 1024 * MIB
#: os.urandom is called per chunk so generating a 256 MiB layer never holds 256 MiB.
GENERATE_CHUNK = 4 * MIB


class BenchmarkError(RuntimeError):
    """A run that produced no trustworthy figure: the message says what went wrong."""


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


def push_outcomes(stdout: str) -> list[str]:
    """The outcome of each layer from ``uploaderd push --json`` (one object a line)."""
    return [json.loads(line)["outcome"] for line in stdout.splitlines() if line.strip()]
