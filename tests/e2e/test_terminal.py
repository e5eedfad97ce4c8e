"""``uploaderd push`` on a real pseudo-terminal: a live display that ends with every outcome."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RegistryProcess, running_registry, uploaderd_env
from tests.helpers import make_layer

MIB = 1024 * 1024
pytestmark = pytest.mark.e2e


def run_on_pty(command: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run ``command`` with a pty as stdout; everything it drew, and its exit status."""
    leader, follower = pty.openpty()
    env = uploaderd_env(TERM="xterm-256color", COLUMNS="120", LINES="40")
    process = subprocess.Popen(command, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=10), b"".join(chunks).decode(errors="replace")


@pytest.fixture
def slow_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    options = ("--auto-create-repositories", "--fault", "latency=0.1")
    with running_registry(tmp_path / "storage", *options) as server:
        yield server


def push_command(registry: RegistryProcess, *arguments: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uploaderd",
        "push",
        "--repository",
        "team/app",
        "--endpoint-url",
        registry.url,
        *arguments,
    ]


def test_live_display_updates_and_ends_with_every_outcome(
    slow_registry: RegistryProcess, tmp_path: Path
) -> None:
    layers = [make_layer(tmp_path, f"layer{i}.tar", 12 * MIB + i) for i in range(3)]
    command = push_command(slow_registry, "--part-size", "5MiB", *(str(p) for p, _ in layers))
    status, screen = run_on_pty(command)

    assert status == 0, screen
    assert "\x1b[" in screen  # drawn and redrawn in place, not printed line by line
    assert screen.count("uploading") >= 3  # the display changed while parts went out
    assert "total" in screen
    for path, digest in layers:
        assert f"uploaded sha256:{digest.removeprefix('sha256:')}" in screen.replace("  ", " ")
        assert path.name in screen


def test_no_progress_prints_plain_lines_even_on_a_terminal(
    slow_registry: RegistryProcess, tmp_path: Path
) -> None:
    path, digest = make_layer(tmp_path, "layer.tar", 1000)
    command = push_command(slow_registry, "--no-progress", str(path))
    status, screen = run_on_pty(command)
    assert status == 0, screen
    assert "\x1b[" not in screen
    assert f"uploaded {digest}" in screen
