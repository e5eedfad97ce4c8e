"""A real ``uploaderd run`` process, and the ways tests look at it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.conftest import uploaderd_env
from uploaderd.testing import free_port


@dataclass
class DaemonProcess:
    process: subprocess.Popen[bytes]
    watch: Path
    state_dir: Path
    metrics_url: str
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.splitlines() if line.startswith("{")]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=10) as answer:
            text: str = answer.read().decode()
            return text

    def metric_sum(self, name: str, **labels: str) -> float:
        total = 0.0
        for line in self.metrics().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_until(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited ({self.process.returncode}) waiting for {what}:\n{self.log}"
                )
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log[-5000:]}")

    def done_files(self) -> list[Path]:
        return sorted(p for p in (self.state_dir / "done").rglob("*") if p.is_file())

    def failed_files(self) -> list[Path]:
        root = self.state_dir / "failed"
        found = []
        for directory, _, names in os.walk(root):
            found += [Path(directory, n) for n in names if not n.endswith(".error.json")]
        return sorted(found)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def start_daemon(
    tmp_path: Path,
    endpoint: str,
    *options: str,
    env: dict[str, str] | None = None,
    watch: Path | None = None,
    state_dir: Path | None = None,
    log_name: str = "daemon.log",
) -> DaemonProcess:
    watch = watch or tmp_path / "spool"
    state_dir = state_dir or tmp_path / "state"
    watch.mkdir(exist_ok=True)
    port = free_port()
    log_path = tmp_path / log_name
    command = [
        sys.executable,
        "-m",
        "uploaderd",
        "run",
        "--watch",
        str(watch),
        "--state-dir",
        str(state_dir),
        "--endpoint-url",
        endpoint,
        "--metrics-address",
        f"127.0.0.1:{port}",
        "--log-format",
        "json",
        "--settle-seconds",
        "0.3",
        *options,
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=log, env=uploaderd_env(**(env or {}))
        )
    daemon = DaemonProcess(process, watch, state_dir, f"http://127.0.0.1:{port}", log_path)
    daemon.wait_until(daemon_is_healthy(daemon), 30, "the daemon to serve /healthz")
    return daemon


def daemon_is_healthy(daemon: DaemonProcess) -> Any:
    def check() -> bool:
        try:
            with urllib.request.urlopen(f"{daemon.metrics_url}/healthz", timeout=2):
                return True
        except (urllib.error.URLError, ConnectionError):
            return False

    return check
