"""The layer limit, as an operator sees it: the gauge on /metrics and the line in ``status``.

The rules that move the limit are unit-tested with an injected clock
(tests/unit/test_limiter.py); here the real daemon shows what it runs with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.conftest import RegistryProcess, uploaderd_env
from tests.e2e.daemon import DaemonProcess, start_daemon
from tests.helpers import make_layer


def status(daemon: DaemonProcess, *options: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "uploaderd",
            "status",
            "--state-dir",
            str(daemon.state_dir),
            *options,
        ],
        capture_output=True,
        text=True,
        env=uploaderd_env(),
        check=True,
    )
    return done.stdout


def status_json(daemon: DaemonProcess) -> dict[str, Any]:
    view: dict[str, Any] = json.loads(status(daemon, "--json"))
    return view


def test_auto_limit_is_a_gauge_and_a_status_line(registry: RegistryProcess, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, registry.url)
    try:
        _, digest = make_layer(daemon.watch / "team/app", "layer.tar", 12 * 1024 * 1024)
        daemon.wait_until(lambda: len(daemon.done_files()) == 1, 60, "the layer uploaded")
        limit = daemon.metric_sum("uploaderd_concurrency_limit")
        assert 1 <= limit <= 16
        daemon.wait_until(
            lambda: (status_json(daemon)["concurrency"] or {}).get("limit") == limit,
            10,
            "status to show the limit",
        )
        concurrency = status_json(daemon)["concurrency"]
        assert (concurrency["mode"], concurrency["max"]) == ("auto", 16)
        line = f"concurrency limit: {int(limit)} layers (auto, max 16"
        assert line in status(daemon), status(daemon)
        assert registry.stats()["completed"][f"team/app@{digest}"] == 1
    finally:
        assert daemon.stop() == 0
    # A stopped daemon has no limit: status says so instead of showing a stale one.
    assert status_json(daemon)["concurrency"] is None
    assert "concurrency limit: - (no running daemon published one)" in status(daemon)


def test_a_fixed_limit_is_exported_as_given(registry: RegistryProcess, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, registry.url, "--concurrency", "2")
    try:
        assert daemon.metric_sum("uploaderd_concurrency_limit") == 2
        daemon.wait_until(
            lambda: status_json(daemon)["concurrency"] is not None, 10, "the limit published"
        )
        assert "concurrency limit: 2 layers (fixed)" in status(daemon)
    finally:
        assert daemon.stop() == 0
