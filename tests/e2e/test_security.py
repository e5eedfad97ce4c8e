"""What the daemon must never expose: credentials, a public metrics port, readable
state, or a write outside the state dir driven by a file name."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import CREDENTIALS, RegistryProcess, start_registry, uploaderd_env
from tests.e2e.daemon import start_daemon
from tests.helpers import write_renamed
from uploaderd.daemon.finished import PathEscapeError, contained
from uploaderd.settings import DaemonSettings, default_of, specs

pytestmark = pytest.mark.e2e
SESSION_TOKEN = "uploaderd-test-session-token-never-logged-FQoGZXIvYXdzEJr"


def test_secret_key_and_session_token_never_reach_logs_error_files_or_state(
    tmp_path: Path,
) -> None:
    # No auto-create: pushes to an unknown repository fail for good (error files);
    # throttling and server errors make retries and "retry later" lines.
    server = start_registry(
        tmp_path / "registry", "--fault", "throttle-every=2", "--fault", "server-error-every=2"
    )
    try:
        server.create_repository("team/app")
        daemon = start_daemon(
            tmp_path,
            server.url,
            "--max-attempts",
            "2",
            "--retry-max-delay",
            "1",
            env={"AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_MAX_ATTEMPTS": "1"},
        )
        write_renamed(daemon.watch / "team/missing", "a.tar", os.urandom(1000))
        write_renamed(daemon.watch / "team/app", "b.tar", os.urandom(6 * 1024 * 1024))
        write_renamed(daemon.watch / "Bad/Name", "c.tar", b"x")
        (daemon.watch / "team/app/empty.tar").touch()
        daemon.wait_until(
            lambda: len(daemon.failed_files()) == 3 and len(daemon.done_files()) == 1,
            60,
            "3 failed, 1 done",
        )
        status = subprocess.run(
            [sys.executable, "-m", "uploaderd", "status", "--state-dir", str(daemon.state_dir)],
            capture_output=True,
            text=True,
            env=uploaderd_env(AWS_SESSION_TOKEN=SESSION_TOKEN),
            check=True,
        )
        injected = server.stats()["faults_injected"]
        assert daemon.stop() == 0
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)

    error_files = list((daemon.state_dir / "failed").rglob("*.error.json"))
    assert len(error_files) == 3
    codes = {json.loads(p.read_text())["code"] for p in error_files}
    assert codes == {"RepositoryNotFoundException", "InvalidRepository", "EmptyLayer"}
    assert injected.get("throttle-every", 0) > 0  # error paths were taken, not just success
    texts = {
        "daemon log": daemon.log_path.read_bytes(),
        "status output": status.stdout.encode() + status.stderr.encode(),
        **{str(p): p.read_bytes() for p in error_files},
        **{p.name: p.read_bytes() for p in daemon.state_dir.glob("journal.sqlite*")},
    }
    secrets = {
        "secret key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode(),
        "session token": SESSION_TOKEN.encode(),
        # a fragment catches a secret that was cut or wrapped
        "token fragment": SESSION_TOKEN[-16:].encode(),
    }
    for where, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in {where}"


def listening_addresses(pid: int) -> list[str]:
    """The local addresses of ``pid``'s listening TCP sockets, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # LISTEN
                address, port = local.split(":")
                if len(address) == 8:
                    host = socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1])
                else:
                    words = bytes.fromhex(address)
                    raw = b"".join(words[i : i + 4][::-1] for i in range(0, 16, 4))
                    host = socket.inet_ntop(socket.AF_INET6, raw)
                found.append(f"{host}:{int(port, 16)}")
    return found


def test_metrics_listen_on_loopback_by_default(registry: RegistryProcess, tmp_path: Path) -> None:
    assert default_of(specs(DaemonSettings)["metrics_address"]) == "127.0.0.1:9464"
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 9464))
        except OSError:
            pytest.skip("port 9464 is in use; the default cannot be started here")
    (tmp_path / "spool").mkdir()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uploaderd",
            "run",
            "--watch",
            str(tmp_path / "spool"),
            "--state-dir",
            str(tmp_path / "state"),
            "--endpoint-url",
            registry.url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=uploaderd_env(),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:9464/healthz", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, "the daemon exited"
                assert time.monotonic() < deadline, "no /healthz on 127.0.0.1:9464"
                time.sleep(0.1)
        assert listening_addresses(process.pid) == ["127.0.0.1:9464"]
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_state_is_private_to_its_owner(registry: RegistryProcess, tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path, registry.url)
    try:
        write_renamed(daemon.watch / "team/app", "good.tar", os.urandom(100))
        (daemon.watch / "team/app").mkdir(parents=True, exist_ok=True)
        (daemon.watch / "team/app/empty.tar").touch()
        daemon.wait_until(
            lambda: daemon.done_files() != [] and daemon.failed_files() != [], 30, "done, failed"
        )
        state = daemon.state_dir
        assert mode(state) == 0o700
        for journal_file in state.glob("journal.sqlite*"):
            assert mode(journal_file) == 0o600, journal_file
        for directory in (state / "done", state / "failed"):
            for sub in [directory, *(p for p in directory.rglob("*") if p.is_dir())]:
                assert mode(sub) == 0o700, sub
        assert mode(state / "failed/team/app/empty.tar.error.json") == 0o600
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize(
    "relpath",
    [
        "../escape.tar",
        "team/../../escape.tar",
        "team/app/../../../escape.tar",
        "/etc/passwd",
        "//etc/passwd",
        "team//app.tar",
        "./team/app.tar",
        "team/./app.tar",
        "team/app/..",
        "..",
        ".",
        "",
        "team/app/",
    ],
)
def test_contained_refuses_hostile_relpaths(tmp_path: Path, relpath: str) -> None:
    with pytest.raises(PathEscapeError):
        contained(tmp_path / "done", relpath)


def test_contained_refuses_a_path_through_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "done"
    (root / "team").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "team/app").symlink_to(outside)
    with pytest.raises(PathEscapeError):
        contained(root, "team/app/layer.tar")


@pytest.mark.parametrize(
    "relpath",
    ["team/app/layer.tar", "a/..b/c", "team/app/...", "team/app/..tar", "te\\..\\am/x"],
)
def test_contained_allows_plain_names_that_only_look_odd(tmp_path: Path, relpath: str) -> None:
    root = tmp_path / "done"
    root.mkdir()
    destination = contained(root, relpath)
    assert destination.is_relative_to(root)
    assert destination == root.joinpath(*relpath.split("/"))
