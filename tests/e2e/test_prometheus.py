"""What operators' tools see of a real ``uploaderd run``: Prometheus and journald.

The Prometheus server is Debian's ``prometheus`` package (.ci/run installs it), run on a
free loopback port with its own TSDB in tmp_path, scraping every second; the queries are
the dashboard's and the alerts' kind.  A missing binary fails the test: skipping would
hide metrics that no real Prometheus can read.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import RegistryProcess
from tests.e2e.daemon import DaemonProcess, start_daemon
from tests.helpers import make_layer
from uploaderd.testing import free_port

MIB = 1024 * 1024
pytestmark = pytest.mark.e2e

BYTES_RATE = "sum(rate(uploaderd_uploaded_bytes_total[30s]))"
MEDIAN_PART_SECONDS = (
    "histogram_quantile(0.5, sum(rate(uploaderd_part_upload_seconds_bucket[1m])) by (le))"
)


@dataclass
class PrometheusServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query at "now"; the vector's samples (``metric``, ``value``)."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=10) as answer:
            body: dict[str, Any] = json.loads(answer.read())
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        """The value of a query returning at most one sample; None for an empty vector."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited waiting for {what}:\n{self.log}")
            try:
                if condition():
                    return
            except (urllib.error.URLError, ConnectionError):
                pass  # still starting
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log}")

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
            return bool(answer.status == 200)


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin:/usr/sbin")
    if found is None:
        pytest.fail(
            "the prometheus server is not installed; install it with "
            "`apt-get install -y --no-install-recommends prometheus` (.ci/run does)"
        )
    return found


def start_prometheus(directory: Path, target: str) -> PrometheusServer:
    directory.mkdir()
    config = directory / "prometheus.yml"
    # scrape_timeout defaults to 10s and must not exceed the interval.
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: uploaderd\n"
        "    static_configs:\n"
        f"      - targets: [{json.dumps(target)}]\n"
    )
    port = free_port()
    log_path = directory / "prometheus.log"
    command = [
        prometheus_binary(),
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    # cwd: whatever Prometheus writes relative to it stays in tmp_path too.
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=directory)
    server = PrometheusServer(process, f"http://127.0.0.1:{port}", log_path)
    server.wait_until(server.ready, 20, "prometheus /-/ready")
    return server


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to this PID only (Prometheus flushes its head block), SIGKILL if it hangs."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture
def daemon(registry: RegistryProcess, tmp_path: Path) -> Iterator[DaemonProcess]:
    running = start_daemon(tmp_path, registry.url, "--part-size", "5MiB")
    yield running
    assert running.stop() == 0, running.log[-5000:]


@pytest.fixture
def prometheus(daemon: DaemonProcess, tmp_path: Path) -> Iterator[PrometheusServer]:
    target = daemon.metrics_url.removeprefix("http://")
    server = start_prometheus(tmp_path / "prometheus", target)
    yield server
    stop(server.process)


def scraped_sum(prometheus: PrometheusServer, promql: str, expected: float) -> Callable[[], bool]:
    return lambda: prometheus.scalar(promql) == expected


def highest_observed_bucket(daemon: DaemonProcess, histogram: str) -> float:
    """The upper bound of the highest bucket holding an observation, from a daemon scrape."""
    for family in text_string_to_metric_families(daemon.metrics()):
        if family.name != histogram:
            continue
        buckets = sorted(
            (float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")
        )
        total = buckets[-1][1]
        return next(bound for bound, count in buckets if count == total)
    raise AssertionError(f"{histogram} is not exported")


def test_prometheus_scrapes_throughput_outcomes_and_part_latency(
    registry: RegistryProcess, daemon: DaemonProcess, prometheus: PrometheusServer
) -> None:
    up = 'up{job="uploaderd"}'
    prometheus.wait_until(lambda: prometheus.scalar(up) == 1, 15, "the first scrape")

    # rate() needs two samples of a series: the per-repository counters appear only with
    # their first confirmed part, so each repository gets a warm-up layer, scraped before
    # the measured batch.
    repositories = {"warmup-app.tar": "team/app", "warmup-base.tar": "team/base"}
    repositories |= {"a.tar": "team/app", "b.tar": "team/app", "c.tar": "team/base"}
    sizes = {"warmup-app.tar": MIB, "warmup-base.tar": 1}
    batch = {"a.tar": 6 * MIB, "b.tar": 11 * MIB, "c.tar": 2 * MIB + 1}
    digests = {}
    for name, size in sizes.items():
        _, digests[name] = make_layer(daemon.watch / repositories[name], name, size)
    bytes_total = "sum(uploaderd_uploaded_bytes_total)"
    warmup = sum(sizes.values())
    prometheus.wait_until(scraped_sum(prometheus, bytes_total, warmup), 20, "warm-up scraped")
    warmup_scraped = time.monotonic()

    for name, size in batch.items():
        _, digests[name] = make_layer(daemon.watch / repositories[name], name, size)
        sizes[name] = size
    daemon.wait_until(lambda: len(daemon.done_files()) == 5, 30, "the batch uploaded")
    # The same bytes as a.tar again: the registry has them, so no byte is sent.
    duplicate = daemon.state_dir / "done/team/app/a.tar"
    copy = daemon.watch / "team/app/.again.tar.tmp"
    copy.write_bytes(duplicate.read_bytes())
    copy.rename(daemon.watch / "team/app/again.tar")
    daemon.wait_until(lambda: len(daemon.done_files()) == 6, 30, "the duplicate done")

    uploaded = sum(sizes.values())
    assert daemon.metric_sum("uploaderd_uploaded_bytes_total") == uploaded
    prometheus.wait_until(scraped_sum(prometheus, bytes_total, uploaded), 10, "the batch scraped")
    outcomes_query = "sum by (outcome) (uploaderd_layers_total)"
    prometheus.wait_until(
        lambda: len(prometheus.query(outcomes_query)) == 2, 10, "the duplicate scraped"
    )

    outcomes = {
        s["metric"]["outcome"]: float(s["value"][1]) for s in prometheus.query(outcomes_query)
    }
    assert outcomes == {"uploaded": 5, "exists": 1}
    by_repository = {
        s["metric"]["repository"]: float(s["value"][1])
        for s in prometheus.query("sum by (repository) (uploaderd_uploaded_bytes_total)")
    }
    expected = {"team/app": 0.0, "team/base": 0.0}
    for name, size in sizes.items():
        expected[repositories[name]] += size
    assert by_repository == expected

    # Every byte of the batch went up inside the 30 s window (a warm-up sample before it, the
    # final sample after it), so the increase is at least the batch; extrapolation to the
    # window's edges only adds, by at most about one scrape interval on each side.
    rate = prometheus.scalar(BYTES_RATE)
    since_warmup = time.monotonic() - warmup_scraped
    assert rate is not None, prometheus.query("uploaderd_uploaded_bytes_total")
    batch_bytes = sum(batch.values())
    assert batch_bytes <= rate * 30 <= 3 * batch_bytes, (rate, batch_bytes, since_warmup)

    median = prometheus.scalar(MEDIAN_PART_SECONDS)
    assert median is not None
    assert math.isfinite(median), median
    assert 0 < median <= highest_observed_bucket(daemon, "uploaderd_part_upload_seconds")

    # What Prometheus counted is what the registry holds.
    for name, digest in digests.items():
        assert len(registry.fetch_layer(repositories[name], digest)) == sizes[name]


# --- journald ---------------------------------------------------------------------------------

SYSLOG_PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}


def journal_lines(daemon: DaemonProcess) -> list[tuple[int | None, dict[str, Any]]]:
    """(syslog priority prefix or None, event) for every log line."""
    found = []
    for line in daemon.log.splitlines():
        prefix = re.match(r"<(\d)>", line)
        body = line[prefix.end() :] if prefix else line
        found.append((int(prefix.group(1)) if prefix else None, json.loads(body)))
    return found


@pytest.mark.parametrize("journal_stream", ["this log file", "unset", "inherited"])
def test_journald_priority_prefixes(
    registry: RegistryProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal_stream: str
) -> None:
    """With stderr on the journal, lines start with "<N>" so that journalctl -p err works.

    systemd sets JOURNAL_STREAM to the device:inode of the stream it connects to stderr;
    pointing it at the log file makes the daemon believe its stderr is the journal.  A
    daemon started by a shell inside a service (a CI runner) inherits a JOURNAL_STREAM
    that names someone else's stream, and must log plain lines like without one.
    """
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    log_path = tmp_path / "daemon.log"
    log_path.touch()
    stat = log_path.stat()
    env = {
        "this log file": {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"},
        "unset": {},
        "inherited": {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino + 1}"},
    }[journal_stream]
    daemon = start_daemon(tmp_path, registry.url, env=env)
    try:
        (daemon.watch / "team/app").mkdir(parents=True)
        (daemon.watch / "team/app/empty.tar").touch()
        make_layer(daemon.watch / "team/app", "layer.tar", 1000)
        daemon.wait_until(
            lambda: len(daemon.done_files()) == 1 and len(daemon.failed_files()) == 1,
            30,
            "one layer done, the empty one failed",
        )
    finally:
        assert daemon.stop() == 0
    lines = journal_lines(daemon)
    assert len(lines) >= 4, daemon.log
    empty = [p for p, e in lines if e.get("code") == "EmptyLayer" and e["level"] == "error"]
    assert len(empty) == 1, daemon.log
    if journal_stream == "this log file":
        assert empty == [3]
        for priority, event in lines:
            assert priority == SYSLOG_PRIORITY[event["level"]], (priority, event)
    else:
        assert {priority for priority, _ in lines} == {None}, daemon.log
