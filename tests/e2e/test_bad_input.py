"""Bad input to a real ``uploaderd run``: each case has one specific outcome.

Either the file ends in ``failed/<repo>/<name>`` with ``<name>.error.json`` and a log
line naming it, or it is skipped for a stated reason, or (for a file that changes
under the daemon) the content finally in the spool is what reaches the registry,
never a mix.  In every case the daemon keeps going: a good file dropped afterwards
is still uploaded.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RegistryProcess, start_registry, uploaderd_env
from tests.e2e.daemon import DaemonProcess, start_daemon
from tests.helpers import digest_of, write_renamed

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


# --- helpers --------------------------------------------------------------------------


def events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    return [e for e in daemon.log_events() if e["event"] == name]


def error_details(daemon: DaemonProcess, relpath: str) -> dict[str, Any]:
    path = daemon.state_dir / "failed" / (relpath + ".error.json")
    details: dict[str, Any] = json.loads(path.read_text())
    return details


def journal_row(state_dir: Path, relpath: str) -> dict[str, Any] | None:
    with sqlite3.connect(state_dir / "journal.sqlite", timeout=5) as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            "SELECT * FROM files WHERE relpath = ? ORDER BY id DESC", (relpath,)
        ).fetchone()
        return dict(row) if row else None


def uploading(daemon: DaemonProcess, relpath: str) -> Any:
    def check() -> bool:
        row = journal_row(daemon.state_dir, relpath)
        return bool(row and row["state"] == "uploading" and row["next_byte"] > 0)

    return check


def still_works(daemon: DaemonProcess, registry: RegistryProcess) -> None:
    """The daemon keeps going: a good file dropped now is uploaded."""
    digest = write_renamed(daemon.watch / "team/ok", "after.tar", os.urandom(1000))
    daemon.wait_until((daemon.state_dir / "done/team/ok/after.tar").is_file, 30, "the good file")
    assert registry.stats()["completed"][f"team/ok@{digest}"] == 1


@pytest.fixture
def slow_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """Every request waits 0.2 s, so a test can act while a layer is on the wire."""
    server = start_registry(
        tmp_path / "registry", "--auto-create-repositories", "--fault", "latency=0.2"
    )
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture
def daemon(registry: RegistryProcess, tmp_path: Path) -> Iterator[DaemonProcess]:
    running = start_daemon(tmp_path, registry.url)
    yield running
    assert running.stop() == 0


@pytest.fixture
def slow_daemon(slow_registry: RegistryProcess, tmp_path: Path) -> Iterator[DaemonProcess]:
    running = start_daemon(tmp_path, slow_registry.url, "--part-size", "5MiB", "--concurrency", "1")
    yield running
    assert running.stop() == 0


# --- files that change under the daemon -------------------------------------------------


def test_file_truncated_while_being_read_is_pushed_as_it_now_is(
    slow_registry: RegistryProcess, slow_daemon: DaemonProcess
) -> None:
    original = os.urandom(30 * MIB)
    path = slow_daemon.watch / "team/app/cut.tar"
    write_renamed(path.parent, path.name, original)
    slow_daemon.wait_until(uploading(slow_daemon, "team/app/cut.tar"), 30, "upload under way")
    os.truncate(path, 7 * MIB)

    slow_daemon.wait_until(lambda: slow_daemon.done_files() != [], 60, "cut.tar done")
    retry = [e for e in events(slow_daemon, "layer retry later") if e["file"] == "team/app/cut.tar"]
    assert retry
    assert retry[0]["code"] == "FileChanged"
    completed = slow_registry.stats()["completed"]
    assert completed == {f"team/app@{digest_of(original[: 7 * MIB])}": 1}
    assert (
        slow_registry.fetch_layer("team/app", digest_of(original[: 7 * MIB])) == original[: 7 * MIB]
    )
    assert slow_daemon.failed_files() == []


def test_file_growing_during_upload_is_pushed_once_it_stops(
    slow_registry: RegistryProcess, slow_daemon: DaemonProcess
) -> None:
    first = os.urandom(16 * MIB)
    path = slow_daemon.watch / "team/app/grow.tar"
    write_renamed(path.parent, path.name, first)
    slow_daemon.wait_until(uploading(slow_daemon, "team/app/grow.tar"), 30, "upload under way")
    appended = b""
    with path.open("ab") as out:
        for _ in range(3):
            chunk = os.urandom(MIB)
            out.write(chunk)
            out.flush()
            appended += chunk
            time.sleep(0.2)
    final = first + appended

    slow_daemon.wait_until(lambda: slow_daemon.done_files() != [], 60, "grow.tar done")
    assert any(
        e["code"] == "FileChanged" and e["file"] == "team/app/grow.tar"
        for e in events(slow_daemon, "layer retry later")
    )
    assert slow_registry.stats()["completed"] == {f"team/app@{digest_of(final)}": 1}
    assert (slow_daemon.state_dir / "done/team/app/grow.tar").read_bytes() == final


def test_file_replaced_while_queued_is_hashed_again(
    slow_registry: RegistryProcess, slow_daemon: DaemonProcess
) -> None:
    write_renamed(slow_daemon.watch / "team/app", "busy.tar", os.urandom(15 * MIB))
    slow_daemon.wait_until(uploading(slow_daemon, "team/app/busy.tar"), 30, "busy.tar on the wire")
    old_digest = write_renamed(slow_daemon.watch / "team/app", "swap.tar", os.urandom(3 * MIB))
    slow_daemon.wait_until(
        lambda: (
            (journal_row(slow_daemon.state_dir, "team/app/swap.tar") or {}).get("state") == "queued"
        ),
        30,
        "swap.tar queued",
    )
    new = os.urandom(3 * MIB)
    new_digest = write_renamed(slow_daemon.watch / "team/app", "swap.tar", new)  # new inode

    slow_daemon.wait_until(lambda: len(slow_daemon.done_files()) == 2, 60, "both done")
    completed = slow_registry.stats()["completed"]
    assert completed[f"team/app@{new_digest}"] == 1
    assert f"team/app@{old_digest}" not in completed
    assert slow_registry.fetch_layer("team/app", new_digest) == new


def test_file_replaced_mid_upload_never_completes_a_mix(
    slow_registry: RegistryProcess, slow_daemon: DaemonProcess
) -> None:
    old_digest = write_renamed(slow_daemon.watch / "team/app", "swap.tar", os.urandom(20 * MIB))
    slow_daemon.wait_until(uploading(slow_daemon, "team/app/swap.tar"), 30, "upload under way")
    new = os.urandom(20 * MIB)
    new_digest = write_renamed(slow_daemon.watch / "team/app", "swap.tar", new)

    slow_daemon.wait_until(lambda: slow_daemon.done_files() != [], 60, "swap.tar done")
    assert any(e["code"] == "FileChanged" for e in events(slow_daemon, "layer retry later"))
    assert slow_registry.stats()["completed"] == {f"team/app@{new_digest}": 1}
    assert old_digest != new_digest
    assert slow_registry.fetch_layer("team/app", new_digest) == new


# --- files that can never be layers -----------------------------------------------------


@pytest.fixture
def without_dac_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the daemon as root but without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH.

    The tests run as root, and root reads a mode-000 file anyway.  Dropping those two
    capabilities from the daemon's bounding set gives it the permission checks of an
    ordinary user while it keeps uid 0 (so it can still use the root-owned tmp dirs).
    """
    if os.geteuid() != 0:
        return  # an ordinary user meets permission checks already
    if subprocess.run(["setpriv", "--bounding-set=-dac_override", "true"], check=False).returncode:
        pytest.skip("setpriv cannot drop capabilities here")
    wrapper = tmp_path / "python-without-dac-override"
    wrapper.write_text(
        "#!/bin/sh\nexec setpriv --bounding-set=-dac_override,-dac_read_search "
        f'{sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(wrapper))


def test_unreadable_file_fails_with_file_unreadable(
    registry: RegistryProcess, tmp_path: Path, without_dac_override: None
) -> None:
    daemon = start_daemon(tmp_path, registry.url)
    try:
        path = daemon.watch / "team/app/locked.tar"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"secret layer")
        path.chmod(0o000)
        daemon.wait_until(lambda: daemon.failed_files() != [], 30, "locked.tar failed")
        details = error_details(daemon, "team/app/locked.tar")
        assert details["code"] == "FileUnreadable"
        assert "permission denied" in details["message"]
        failed = [e for e in events(daemon, "layer failed") if e["file"] == "team/app/locked.tar"]
        assert failed
        assert failed[0]["code"] == "FileUnreadable"
        still_works(daemon, registry)
    finally:
        assert daemon.stop() == 0


def test_directory_is_a_repository_path_and_a_socket_is_rejected(
    registry: RegistryProcess, daemon: DaemonProcess
) -> None:
    (daemon.watch / "team/app/empty.d").mkdir(parents=True)
    nested = write_renamed(daemon.watch / "team/app/nested", "layer.tar", os.urandom(500))
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(daemon.watch / "team/app/sock"))
        daemon.wait_until(
            lambda: len(daemon.failed_files()) == 1 and len(daemon.done_files()) == 1,
            30,
            "socket failed, nested layer done",
        )
    assert error_details(daemon, "team/app/sock")["code"] == "NotARegularFile"
    assert registry.stats()["completed"] == {f"team/app/nested@{nested}": 1}
    assert (daemon.watch / "team/app/empty.d").is_dir()  # left alone: not a layer


def test_invalid_repository_paths_are_rejected_with_the_rule(
    registry: RegistryProcess, daemon: DaemonProcess
) -> None:
    too_long = "/".join(["a" * 100, "b" * 100, "c" * 100])  # 302 characters
    cases = {
        "Team/App/upper.tar": "InvalidRepository",
        f"{too_long}/long.tar": "InvalidRepository",
        "a/short.tar": "InvalidRepository",
        "team/a..b/dots.tar": "InvalidRepository",
        "team/-x/dash.tar": "InvalidRepository",
        "top.tar": "NoRepository",
    }
    # A directory cannot be named "..": the name always means the parent.
    (daemon.watch / "team").mkdir()
    with pytest.raises(FileExistsError):
        os.mkdir(daemon.watch / "team/..")
    for relpath in cases:
        directory, _, name = relpath.rpartition("/")
        write_renamed(daemon.watch / directory if directory else daemon.watch, name, b"x")
    write_renamed(daemon.watch / ".cache/team", "hidden.tar", b"x")

    daemon.wait_until(lambda: len(daemon.failed_files()) == len(cases), 30, "all rejected")
    for relpath, code in cases.items():
        details = error_details(daemon, relpath)
        assert details["code"] == code, relpath
        assert details["file"] == relpath
    assert (
        "2 to 256 characters long, not 302"
        in error_details(daemon, f"{too_long}/long.tar")["message"]
    )
    logged = {e["file"]: e["code"] for e in events(daemon, "file rejected")}
    assert logged == cases
    assert (daemon.watch / ".cache/team/hidden.tar").is_file()  # hidden: a writer's, skipped
    assert registry.stats()["completed"] == {}
    still_works(daemon, registry)


def test_name_with_a_newline_is_rejected(registry: RegistryProcess, daemon: DaemonProcess) -> None:
    write_renamed(daemon.watch / "team/app", "two\nlines.tar", b"x" * 10)
    daemon.wait_until(lambda: daemon.failed_files() != [], 30, "rejected")
    details = error_details(daemon, "team/app/two\nlines.tar")
    assert details["code"] == "InvalidFileName"
    assert "newline" in details["message"]
    assert [e["file"] for e in events(daemon, "file rejected")] == ["team/app/two\nlines.tar"]
    # The log stays one event per line: the newline is escaped, not written.
    assert all(line.startswith("{") for line in daemon.log.splitlines())
    still_works(daemon, registry)


def test_name_that_is_not_utf8_is_rejected(
    registry: RegistryProcess, daemon: DaemonProcess
) -> None:
    directory = os.fsencode(daemon.watch / "team/app")
    os.makedirs(directory)
    temporary = directory + b"/.latin1.tmp"
    with open(temporary, "wb") as out:
        out.write(b"x" * 10)
    os.rename(temporary, directory + b"/caf\xe9.tar")  # Latin-1, not UTF-8

    daemon.wait_until(lambda: daemon.failed_files() != [], 30, "rejected")
    failed_dir = os.fsencode(daemon.state_dir / "failed/team/app")
    assert sorted(os.listdir(failed_dir)) == [b"caf\xe9.tar", b"caf\xe9.tar.error.json"]
    details = json.loads(Path(os.fsdecode(failed_dir + b"/caf\xe9.tar.error.json")).read_text())
    assert details["code"] == "InvalidFileName"
    assert "UTF-8" in details["message"]
    assert len(events(daemon, "file rejected")) == 1
    still_works(daemon, registry)


# --- load -------------------------------------------------------------------------------


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


TINY_FILES = 10_000


def test_ten_thousand_tiny_files_drain_in_bounded_memory(
    registry: RegistryProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = start_daemon(tmp_path, registry.url, "--concurrency", "16")
    try:
        staging = tmp_path / "staging"
        staging.mkdir()
        repositories = ("team/app", "team/base", "tools")
        for repository in repositories:
            (daemon.watch / repository).mkdir(parents=True)
        started = time.monotonic()
        for i in range(TINY_FILES):
            # One byte each: 768 distinct (repository, content) pairs are pushed in full,
            # the rest are found present by BatchCheckLayerAvailability and skipped.
            (staging / f"t{i}").write_bytes(bytes([i % 256]))
        written = time.monotonic()
        for i in range(TINY_FILES):
            os.rename(staging / f"t{i}", daemon.watch / repositories[i % 3] / f"t{i}.tar")
        dropped = time.monotonic()

        done_root = daemon.state_dir / "done"

        def done_count() -> int:
            return sum(len(files) for _, _, files in os.walk(done_root))

        daemon.wait_until(lambda: done_count() == TINY_FILES, 90, "10,000 files in done/")
        drained = time.monotonic()
        hwm_mib = vm_hwm_kib(daemon.process.pid) / 1024
        stats = registry.stats()
        with capsys.disabled():
            print(
                f"\n10,000 tiny files: written in {written - started:.1f} s, renamed in "
                f"{dropped - written:.1f} s, drained {drained - dropped:.1f} s after the "
                f"renames ({TINY_FILES / (drained - dropped):.0f} files/s); daemon VmHWM "
                f"{hwm_mib:.0f} MiB; {sum(stats['requests'].values())} API requests"
            )
        assert len(stats["completed"]) == 3 * 256
        assert set(stats["completed"].values()) == {1}
        outcomes = [e["outcome"] for e in daemon.log_events() if e["event"].startswith("layer ")]
        assert len(outcomes) == TINY_FILES
        assert set(outcomes) == {"uploaded", "exists"}
        assert daemon.failed_files() == []
        assert hwm_mib < 300
    finally:
        assert daemon.stop() == 0


# --- the state dir and the settings -----------------------------------------------------


@contextlib.contextmanager
def read_only_bind_mount(directory: Path) -> Iterator[None]:
    """The directory read-only for everyone, root included, until the block ends."""
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(directory), str(directory)], check=True
        )
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def can_bind_mount(tmp_path: Path) -> bool:
    probe = tmp_path / "mount-probe"
    probe.mkdir()
    try:
        with read_only_bind_mount(probe):
            return True
    except (subprocess.CalledProcessError, FileNotFoundError):
        return False


def readyz(daemon: DaemonProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"{daemon.metrics_url}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_read_only_state_dir_at_start_refuses_to_start_saying_so(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    if not can_bind_mount(tmp_path):
        pytest.skip("a read-only bind mount needs root with CAP_SYS_ADMIN")
    first = start_daemon(tmp_path, registry.url)  # creates the journal
    assert first.stop() == 0
    with read_only_bind_mount(first.state_dir):
        done = run_uploaderd(
            "--watch",
            str(first.watch),
            "--state-dir",
            str(first.state_dir),
            "--endpoint-url",
            registry.url,
        )
    assert done.returncode == 1
    assert str(first.state_dir) in done.stderr
    assert "writable" in done.stderr
    assert "read-only" in done.stderr
    assert "corrupt" not in done.stderr  # the journal is fine: no advice to move it aside


def test_state_dir_read_only_while_running_pauses_and_loses_nothing(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    """The state dir turns read-only under a running daemon.

    A bind mount only affects files opened after it: sqlite keeps writing the journal
    through the descriptors it already has, so what fails first is moving the uploaded
    file into done/.  The daemon pauses there, says why, reports not ready, and takes
    no further file; after a restart with a writable state dir nothing is lost and
    nothing is pushed twice.
    """
    if not can_bind_mount(tmp_path):
        pytest.skip("a read-only bind mount needs root with CAP_SYS_ADMIN")
    daemon = start_daemon(tmp_path, registry.url)
    try:
        write_renamed(daemon.watch / "team/app", "before.tar", os.urandom(100))
        daemon.wait_until(lambda: len(daemon.done_files()) == 1, 30, "before.tar done")
        with read_only_bind_mount(daemon.state_dir):
            first = write_renamed(daemon.watch / "team/app", "first.tar", os.urandom(100))
            daemon.wait_until(
                lambda: bool(events(daemon, "intake paused")), 30, "the intake to pause"
            )
            paused = events(daemon, "intake paused")[0]
            assert paused["level"] == "error"
            assert "done/" in paused["reason"]
            assert "Read-only file system" in paused["reason"]
            status, text = readyz(daemon)
            assert status == 503
            assert "intake paused" in text
            second = write_renamed(daemon.watch / "team/app", "second.tar", os.urandom(100))
            time.sleep(1.5)
            assert (daemon.watch / "team/app/first.tar").is_file()  # not lost, not moved
            assert (daemon.watch / "team/app/second.tar").is_file()
            assert f"team/app@{second}" not in registry.stats()["completed"]  # not taken
            assert daemon.stop() == 0
        restarted = start_daemon(tmp_path, registry.url, log_name="restart.log")
        restarted.wait_until(lambda: len(restarted.done_files()) == 3, 30, "all three done")
        completed = registry.stats()["completed"]
        assert completed[f"team/app@{first}"] == 1
        assert completed[f"team/app@{second}"] == 1
        assert events(restarted, "finished interrupted move")
        assert restarted.stop() == 0
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()


def run_uploaderd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uploaderd", "run", *args],
        capture_output=True,
        text=True,
        env=uploaderd_env(),
        timeout=30,
        check=False,
    )


def test_corrupt_journal_refuses_to_start_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    watch, state = tmp_path / "spool", tmp_path / "state"
    watch.mkdir()
    state.mkdir(mode=0o700)
    journal = state / "journal.sqlite"
    journal.write_bytes(b"this is not a database, just garbage\x00\xff" * 100)

    done = run_uploaderd(
        "--watch", str(watch), "--state-dir", str(state), "--endpoint-url", "http://127.0.0.1:9"
    )
    assert done.returncode == 1
    assert str(journal) in done.stderr
    assert "corrupt" in done.stderr
    assert "move" in done.stderr
    assert "aside" in done.stderr
    assert journal.read_bytes().startswith(b"this is not a database")  # left for inspection


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("concurrancy = 4", "'concurrancy' in "),
        ('concurrency = "many"', "'concurrency' in "),
        ("memory_budget = [1, 2]", "'memory_budget' in "),
        ("settle_seconds = -1", "'settle_seconds' in "),
        ("metrics_address = 9464", "'metrics_address' in "),
    ],
)
def test_config_file_with_unknown_key_or_wrong_type_exits_2(
    tmp_path: Path, line: str, named: str
) -> None:
    config = tmp_path / "uploaderd.toml"
    config.write_text(f'watch = "{tmp_path}"\nstate_dir = "{tmp_path / "state"}"\n{line}\n')
    done = run_uploaderd("--config", str(config))
    assert done.returncode == 2, done.stderr
    assert f"{named}{config}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was created


def test_config_file_that_is_not_toml_or_not_readable_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_bytes(b"watch = \xff\xfe\n")
    for config in (broken, tmp_path):  # invalid UTF-8; a directory
        done = run_uploaderd("--config", str(config))
        assert done.returncode == 2, done.stderr
        assert str(config) in done.stderr
        assert "Traceback" not in done.stderr
