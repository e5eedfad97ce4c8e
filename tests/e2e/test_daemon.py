"""``uploaderd run`` as a real process: files dropped in, layers checked on the server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import RegistryProcess, start_registry, uploaderd_env
from tests.e2e.daemon import DaemonProcess, start_daemon
from tests.helpers import make_layer

MIB = 1024 * 1024
pytestmark = pytest.mark.e2e


def write_slowly_in_place(directory: Path, name: str, size: int, steps: int = 4) -> str:
    """Write the file where it will be taken, in pauses longer than nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    with (directory / name).open("wb") as out:
        for i in range(steps):
            out.write(data[i * size // steps : (i + 1) * size // steps])
            out.flush()
            time.sleep(0.15)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_twelve_files_in_three_repositories_are_uploaded_and_moved(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    daemon = start_daemon(tmp_path, registry.url, "--part-size", "5MiB")
    try:
        expected: dict[tuple[str, str], str] = {}
        sizes: list[int] = []
        for i in range(12):
            repository = ["team/app", "team/base", "tools"][i % 3]
            size = [1, 3 * MIB, 5 * MIB + 1, 11 * MIB][i % 4]
            sizes.append(size)
            directory, name = daemon.watch / repository, f"layer{i}.tar"
            if i % 2 == 0:
                _, expected[(repository, name)] = make_layer(directory, name, size)
            else:
                expected[(repository, name)] = write_slowly_in_place(directory, name, size)

        daemon.wait_until(lambda: len(daemon.done_files()) == 12, 120, "12 files in done/")

        for (repository, name), digest in expected.items():
            done = daemon.state_dir / "done" / repository / name
            assert done.is_file()
            fetched = registry.fetch_layer(repository, digest)
            assert fetched == done.read_bytes()
        assert not any(p.is_file() for p in daemon.watch.rglob("*"))
        assert daemon.failed_files() == []
        assert daemon.metric_sum("uploaderd_uploaded_bytes_total") == sum(sizes)
        assert daemon.metric_sum("uploaderd_layers_total", outcome="uploaded") == 12
        outcomes = [e for e in daemon.log_events() if e["event"] == "layer uploaded"]
        assert len(outcomes) == 12
        assert {"repository", "file", "digest", "size", "seconds", "mib_per_s"} <= set(outcomes[0])
    finally:
        assert daemon.stop() == 0


def journal_row(state_dir: Path, name: str) -> dict[str, object] | None:
    with sqlite3.connect(state_dir / "journal.sqlite", timeout=5) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM files WHERE relpath LIKE ?", (f"%{name}",)).fetchone()
        return dict(row) if row else None


@pytest.mark.parametrize(
    "options",
    [
        ("--part-size", "5MiB"),
        # The big layers hashed beside their upload (engine/alongside.py).
        ("--part-size", "5MiB", "--overlap-threshold", "1MiB"),
    ],
    ids=["hash-first", "hash-alongside"],
)
def test_kill_9_mid_layer_then_restart_completes_each_layer_exactly_once(
    tmp_path: Path, options: tuple[str, ...]
) -> None:
    server = start_registry(
        tmp_path / "storage", "--auto-create-repositories", "--fault", "latency=0.15"
    )
    try:
        daemon = start_daemon(tmp_path, server.url, *options)
        digests = {
            f"big{i}.tar": make_layer(daemon.watch / "team/app", f"big{i}.tar", 36 * MIB)[1]
            for i in range(2)
        }
        _, digests["small.tar"] = make_layer(daemon.watch / "team/app", "small.tar", 1000)

        def mid_upload() -> bool:
            row = journal_row(daemon.state_dir, "big0.tar")
            return bool(
                row and row["state"] == "uploading" and 0 < int(row["next_byte"]) < 36 * MIB
            )

        daemon.wait_until(mid_upload, 60, "big0.tar half uploaded")
        daemon.process.kill()
        daemon.process.wait(timeout=10)
        interrupted = journal_row(daemon.state_dir, "big0.tar")
        assert interrupted is not None
        assert interrupted["state"] == "uploading"

        restarted = start_daemon(tmp_path, server.url, *options, log_name="restart.log")
        restarted.wait_until(lambda: len(restarted.done_files()) == 3, 120, "all 3 files in done/")
        assert restarted.failed_files() == []
        stats = server.stats()
        for name, digest in digests.items():
            assert stats["completed"][f"team/app@{digest}"] == 1, name
            assert (
                server.fetch_layer("team/app", digest)
                == (restarted.state_dir / "done/team/app" / name).read_bytes()
            )
        resumed = [e for e in restarted.log_events() if e["event"] == "resuming interrupted files"]
        assert resumed
        # The interrupted upload continued: fewer parts than two full uploads of big0.
        assert stats["parts_received"] < 2 * 8 + 8 + 1
        assert restarted.stop() == 0
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_sigterm_drains_exits_0_and_a_restart_finishes_the_rest(tmp_path: Path) -> None:
    server = start_registry(
        tmp_path / "storage", "--auto-create-repositories", "--fault", "latency=0.1"
    )
    try:
        daemon = start_daemon(
            tmp_path,
            server.url,
            "--part-size",
            "5MiB",
            "--concurrency",
            "2",
            "--drain-timeout",
            "5",
        )
        digests = {
            f"l{i}.tar": make_layer(daemon.watch / "team/app", f"l{i}.tar", 21 * MIB)[1]
            for i in range(6)
        }
        daemon.wait_until(lambda: server.stats()["parts_received"] >= 2, 60, "uploads under way")
        started = time.monotonic()
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
        assert time.monotonic() - started < 5 + 5
        assert any(e["event"] == "draining" for e in daemon.log_events())

        restarted = start_daemon(
            tmp_path, server.url, "--part-size", "5MiB", log_name="restart.log"
        )
        restarted.wait_until(lambda: len(restarted.done_files()) == 6, 120, "all 6 files in done/")
        stats = server.stats()
        for digest in digests.values():
            assert stats["completed"][f"team/app@{digest}"] == 1
        assert restarted.stop() == 0
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_sd_notify_ready_and_watchdog(registry: RegistryProcess, tmp_path: Path) -> None:
    socket_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(socket_path))
    listener.settimeout(0.5)
    received: list[str] = []
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            try:
                received.append(listener.recv(4096).decode())
            except TimeoutError:
                continue

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    env = {"NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "1000000"}
    daemon = start_daemon(tmp_path, registry.url, env=env)
    try:
        daemon.wait_until(
            lambda: sum("WATCHDOG=1" in m for m in received) >= 3, 20, "watchdog pings"
        )
        ready = [m for m in received if "READY=1" in m]
        assert ready
        assert "STATUS=queue" in ready[0]
    finally:
        assert daemon.stop() == 0
        stop.set()
        thread.join()
        listener.close()
    assert any("STOPPING=1" in m for m in received)


def test_bad_files_end_in_failed_with_reasons_and_the_rest_upload(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    daemon = start_daemon(tmp_path, registry.url)
    try:
        (daemon.watch / "team/app").mkdir(parents=True)
        (daemon.watch / "team/app/empty.tar").touch()
        make_layer(daemon.watch / "Team/App", "upper.tar", 100)
        outside = tmp_path / "outside-secret"
        outside.write_text("not a layer")
        os.symlink(outside, daemon.watch / "team/app/link.tar")
        os.mkfifo(daemon.watch / "team/app/pipe")
        _, good = make_layer(daemon.watch / "team/app", "good.tar", 2 * MIB)

        daemon.wait_until(
            lambda: len(daemon.failed_files()) == 4 and len(daemon.done_files()) == 1,
            60,
            "4 failed, 1 done",
        )

        reasons = {}
        for failed in daemon.failed_files():
            details = json.loads(failed.with_name(failed.name + ".error.json").read_text())
            reasons[failed.name] = details["code"]
            assert details["message"]
        assert reasons == {
            "empty.tar": "EmptyLayer",
            "upper.tar": "InvalidRepository",
            "link.tar": "SymlinkOutsideSpool",
            "pipe": "NotARegularFile",
        }
        assert outside.read_text() == "not a layer"  # the link was moved, its target untouched
        assert (daemon.state_dir / "failed/team/app/link.tar").is_symlink()
        assert (
            registry.fetch_layer("team/app", good)
            == (daemon.state_dir / "done/team/app/good.tar").read_bytes()
        )
        mode = (daemon.state_dir / "failed/team/app/empty.tar.error.json").stat().st_mode & 0o777
        assert mode == 0o600
    finally:
        assert daemon.stop() == 0


def test_file_vanishing_before_upload_is_skipped_with_a_log_line(tmp_path: Path) -> None:
    server = start_registry(
        tmp_path / "storage", "--auto-create-repositories", "--fault", "latency=0.2"
    )
    try:
        daemon = start_daemon(tmp_path, server.url, "--concurrency", "1", "--part-size", "5MiB")
        make_layer(daemon.watch / "team/app", "first.tar", 15 * MIB)
        daemon.wait_until(
            lambda: server.stats()["parts_received"] >= 1, 30, "first upload under way"
        )
        make_layer(daemon.watch / "team/app", "second.tar", 1000)
        daemon.wait_until(
            lambda: (journal_row(daemon.state_dir, "second.tar") or {}).get("state") == "queued",
            30,
            "second queued",
        )
        (daemon.watch / "team/app/second.tar").unlink()
        daemon.wait_until(
            lambda: any(e["event"] == "file vanished" for e in daemon.log_events()),
            60,
            "vanished log line",
        )
        daemon.wait_until(lambda: len(daemon.done_files()) == 1, 60, "first done")
        assert daemon.failed_files() == []
        assert daemon.stop() == 0
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_retry_failed_puts_files_back_and_they_upload(tmp_path: Path) -> None:
    server = start_registry(tmp_path / "storage")  # no auto-create: RepositoryNotFound
    try:
        daemon = start_daemon(tmp_path, server.url)
        _, digest = make_layer(daemon.watch / "team/app", "layer.tar", 1000)
        daemon.wait_until(lambda: len(daemon.failed_files()) == 1, 30, "a permanent failure")
        details = json.loads(
            (daemon.state_dir / "failed/team/app/layer.tar.error.json").read_text()
        )
        assert details["code"] == "RepositoryNotFoundException"
        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "uploaderd",
                "status",
                "--state-dir",
                str(daemon.state_dir),
                "--json",
            ],
            capture_output=True,
            text=True,
            env=uploaderd_env(),
            check=True,
        )
        assert (
            json.loads(status.stdout)["recent_failures"][0]["code"] == "RepositoryNotFoundException"
        )

        server.create_repository("team/app")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "uploaderd",
                "retry-failed",
                "--state-dir",
                str(daemon.state_dir),
                "--watch",
                str(daemon.watch),
            ],
            capture_output=True,
            text=True,
            env=uploaderd_env(),
            check=True,
        )
        daemon.wait_until(lambda: len(daemon.done_files()) == 1, 30, "the retried file uploaded")
        assert daemon.failed_files() == []
        assert server.stats()["completed"][f"team/app@{digest}"] == 1
        assert daemon.stop() == 0
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


def test_sighup_reloads_the_config_file_and_refuses_a_bad_one(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("delete_uploaded = false\n")
    daemon = start_daemon(tmp_path, registry.url, "--config", str(config))
    try:
        make_layer(daemon.watch / "team/app", "kept.tar", 100)
        daemon.wait_until(lambda: len(daemon.done_files()) == 1, 30, "kept.tar in done/")

        config.write_text("delete_uploaded = true\n")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_until(
            lambda: any(e["event"] == "reloaded" for e in daemon.log_events()), 10, "reload"
        )
        _, digest = make_layer(daemon.watch / "team/app", "deleted.tar", 100)
        daemon.wait_until(
            lambda: registry.stats()["completed"].get(f"team/app@{digest}") == 1, 30, "upload"
        )
        daemon.wait_until(
            lambda: not (daemon.watch / "team/app/deleted.tar").exists(), 10, "deletion"
        )
        assert [p.name for p in daemon.done_files()] == ["kept.tar"]

        config.write_text("concurrency = 'many'\n")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_until(
            lambda: any(e["event"] == "reload refused" for e in daemon.log_events()), 10, "refusal"
        )
        refused = next(e for e in daemon.log_events() if e["event"] == "reload refused")
        assert f"'concurrency' in {config}" in refused["reason"]
        assert daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0


def test_ready_line_names_the_port_bound_for_port_0(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """Port 0 asks the kernel for any free port; the log line is how an operator learns it."""
    watch, state_dir, log_path = tmp_path / "spool", tmp_path / "state", tmp_path / "daemon.log"
    watch.mkdir()
    command = [
        *(sys.executable, "-m", "uploaderd", "run", "--watch", str(watch)),
        *("--state-dir", str(state_dir), "--endpoint-url", registry.url),
        *("--metrics-address", "127.0.0.1:0", "--log-format", "json", "--settle-seconds", "0.3"),
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, env=uploaderd_env())
    daemon = DaemonProcess(process, watch, state_dir, "", log_path)
    try:
        daemon.wait_until(
            lambda: any(e["event"] == "ready" for e in daemon.log_events()), 30, "ready"
        )
        ready = next(e for e in daemon.log_events() if e["event"] == "ready")
        bound = re.fullmatch(r"(http://127\.0\.0\.1:(\d+))/metrics", ready["metrics"])
        assert bound, ready
        assert int(bound[2]) != 0
        daemon.metrics_url = bound[1]
        assert daemon.metric_sum("uploaderd_watcher_up") == 1

        make_layer(watch / "team/app", "layer.tar", 1000)
        daemon.wait_until(lambda: len(daemon.done_files()) == 1, 30, "layer.tar in done/")
        assert daemon.metric_sum("uploaderd_layers_total", outcome="uploaded") == 1
        assert daemon.metric_sum("uploaderd_queue_files") == 0
    finally:
        assert daemon.stop() == 0


def test_a_burst_of_small_layers_is_checked_a_hundred_at_a_time(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """Queued layers of one repository share BatchCheckLayerAvailability calls (daemon/ahead)."""
    staging = tmp_path / "staging"
    layers = {f"l{i:03d}.tar": make_layer(staging, f"l{i:03d}.tar", 4096 + i) for i in range(150)}
    registry.create_repository("team/app")
    daemon = start_daemon(tmp_path, registry.url, "--concurrency", "4")
    try:
        target = daemon.watch / "team/app"
        target.mkdir(parents=True)
        for name, (path, _) in layers.items():
            os.rename(path, target / name)
        daemon.wait_until(lambda: len(daemon.done_files()) == 150, 120, "150 layers in done/")
        assert daemon.failed_files() == []
        stats = registry.stats()
        for name, (_, digest) in layers.items():
            assert stats["completed"][f"team/app@{digest}"] == 1, name
        # A few calls (the first claims may come before every file is queued), never
        # one per layer.
        assert stats["requests"]["BatchCheckLayerAvailability"] <= 10, stats["requests"]
        assert stats["requests"]["InitiateLayerUpload"] == 150
        assert daemon.stop() == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
