"""SIGHUP, one setting at a time: each change is either applied or named as needing a restart.

The real daemon reads every setting from its config file (no flags, which
would win over the file); the test rewrites the file with one setting
changed, sends SIGHUP, and reads the ``reloaded`` log line.  Every setting
the daemon has is covered: a new setting without a value here fails the test.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import RegistryProcess, uploaderd_env
from tests.e2e.daemon import DaemonProcess, daemon_is_healthy
from uploaderd.settings import DaemonSettings, spec_of, specs
from uploaderd.testing import free_port

LOGFMT_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def toml(values: dict[str, object]) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def reload_events(log: str) -> list[dict[str, Any]]:
    """The ``reloaded`` lines, in JSON or in logfmt (log_format is one of the settings)."""
    events = []
    for line in log.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
        else:
            event = {k: v.strip('"') for k, v in LOGFMT_FIELD.findall(line)}
        if event.get("event") == "reloaded":
            events.append(event)
    return events


def names(field: str) -> set[str]:
    return set() if field == "none" else set(field.split(","))


def test_sighup_applies_or_names_every_setting(registry: RegistryProcess, tmp_path: Path) -> None:
    watch, state_dir = tmp_path / "spool", tmp_path / "state"
    watch.mkdir()
    port = free_port()
    base: dict[str, object] = {
        "watch": str(watch),
        "state_dir": str(state_dir),
        "endpoint_url": registry.url,
        "metrics_address": f"127.0.0.1:{port}",
        "log_format": "json",
    }
    changed: dict[str, object] = {
        "registry": "https://registry.example.com",
        "insecure_registry": True,
        "registry_username": "builder",
        "endpoint_url": "http://127.0.0.1:9",
        "region": "eu-west-1",
        "registry_id": "123456789012",
        "ecr_public": True,
        "ecr_quota_share": 0.25,
        "concurrency": 3,
        "max_concurrency": 8,
        "memory_budget": "128MiB",
        "part_size": "6MiB",
        "max_attempts": 3,
        "request_timeout": 30.0,
        "overlap_threshold": "128MiB",
        "watch": str(tmp_path / "elsewhere"),
        "state_dir": str(tmp_path / "other-state"),
        "metrics_address": f"127.0.0.1:{port + 1}",
        "settle_seconds": 0.5,
        "image_settle_timeout": 120.0,
        "rescan_interval": 30.0,
        "delete_uploaded": True,
        "drain_timeout": 10.0,
        "log_format": "logfmt",
        "retry_max_delay": 60.0,
    }
    declared = specs(DaemonSettings)
    assert set(changed) == set(declared), "give every setting a changed value here"
    reloadable = {name for name, item in declared.items() if spec_of(item).reload}
    config, log_path = tmp_path / "config.toml", tmp_path / "daemon.log"
    config.write_text(toml(base))
    command = [sys.executable, "-m", "uploaderd", "run", "--config", str(config)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env=uploaderd_env())
    daemon = DaemonProcess(process, watch, state_dir, f"http://127.0.0.1:{port}", log_path)
    try:
        daemon.wait_until(daemon_is_healthy(daemon), 30, "the daemon to serve /healthz")
        previous: str | None = None
        for step, (name, value) in enumerate(changed.items(), start=1):
            config.write_text(toml({**base, name: value}))
            process.send_signal(signal.SIGHUP)
            daemon.wait_until(
                lambda step=step: len(reload_events(daemon.log)) == step, 10, f"reload of {name}"
            )
            event = reload_events(daemon.log)[-1]
            expected_applied = {name} & reloadable
            if previous in reloadable:
                expected_applied.add(previous)  # this step put it back
            assert names(event["applied"]) == expected_applied, (name, event)
            assert names(event["needs_restart"]) == {name} - reloadable, (name, event)
            previous = name
            time.sleep(0.05)  # one signal at a time: a second would merge into the first
        assert process.poll() is None
    finally:
        assert daemon.stop() == 0
