"""The real daemon through every registry fault, alone and combined, killed -9 twice.

The invariant is checked on the server side: every file dropped into the spool is
completed exactly once in its repository with the right digest (``/_stats`` and
GetDownloadUrlForLayer), nothing ends in failed/ for a fault that was only
transient, nothing is lost (every file is in done/), and uploaderd's retries show in
``/metrics`` by reason.

It runs twice: with the daemon talking to the registry over loopback, and through the
benchmarks' link emulator in its "WAN" shape (a real process in between, 25 ms each
way, 16 MiB/s per connection), where the test also checks from the kernel's socket
table and the daemon's part times that the traffic did cross the emulator.

botocore's own retries are switched off (``AWS_MAX_ATTEMPTS=1``) so that every
injected fault reaches uploaderd's retry loop and its metrics; with them on, most
faults would be absorbed below uploaderd, invisibly.
"""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.calibration import Emulator
from benchmarks.linkemu import SHAPES, Shape
from tests.e2e.conftest import RegistryProcess, start_registry
from tests.e2e.daemon import DaemonProcess, start_daemon
from tests.helpers import make_layer
from tests.linkshape import PartTimes, PathWitness, running_link, url_port

pytestmark = pytest.mark.e2e

KIB, MIB = 1024, 1024 * 1024
REPOSITORIES = ("team/app", "team/base", "tools")
SIZES = (1, 700, 64 * KIB, 1 * MIB, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 11 * MIB, 16 * MIB)
PHASE_SECONDS = 4.0

# (name, fault specs).  One file per repository is dropped as each phase starts.
PHASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("throttle", ("throttle-every=3",)),
    ("server-error", ("server-error-every=3",)),
    ("drop-after-apply", ("drop-after-apply-every=3",)),
    ("latency", ("latency=0.3",)),
    ("forget-upload", ("forget-upload-after=2",)),
    ("slow-body (copes)", ("slow-body=0.1",)),
    ("slow-body (read timeout trips)", ("slow-body=3",)),
    ("refuse", ("refuse-for=3",)),
    ("non-json", ("non-json-every=4",)),
    (
        "combined",
        (
            "throttle-every=5",
            "server-error-every=4",
            "drop-after-apply-every=5",
            "forget-upload-after=3",
            "latency=0.05",
            "non-json-every=7",
        ),
    ),
)
KILL_DURING_PHASES = {"latency", "combined"}  # kill -9 mid-upload, then restart

DAEMON_OPTIONS = (
    "--part-size",
    "5MiB",
    "--concurrency",
    "4",
    "--max-attempts",
    "4",
    "--request-timeout",
    "2",
    "--retry-max-delay",
    "2",
    "--rescan-interval",
    "5",
)
DAEMON_ENV = {"AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}


#: How the daemon reaches the registry: straight over loopback, or through the link
#: emulator's "WAN" (25 ms each way, 16 MiB/s per connection). The same files, phases
#: and deadlines serve both: WAN's 50 ms round trip is small beside a 4 s phase, a
#: 5 MiB part (6.7 MiB of base64) crosses in 0.4 s, well inside the 2 s read timeout
#: that only slow-body=3 must trip, and the drain after the last phase takes seconds,
#: not the 90 allowed (both variants run in about 45 s).
LINKS = (
    pytest.param(None, id="loopback"),
    pytest.param(SHAPES["WAN"], id="WAN"),
)


@dataclass
class ChaosEndpoint:
    """The registry, and the address the daemon is told to use for it."""

    registry: RegistryProcess
    shape: Shape | None
    emulator: Emulator | None

    @property
    def url(self) -> str:
        return self.registry.url if self.emulator is None else self.emulator.url

    def witness(self) -> PathWitness:
        return PathWitness(url_port(self.registry.url), self.emulator)


@dataclass
class Dropped:
    repository: str
    name: str
    size: int
    digest: str


@dataclass
class ChaosRun:
    tmp_path: Path
    endpoint: ChaosEndpoint
    daemon: DaemonProcess
    path: PathWitness
    dropped: list[Dropped] = field(default_factory=list)
    retries: Counter[str] = field(default_factory=Counter)
    postponed: Counter[str] = field(default_factory=Counter)
    part_times: PartTimes = field(default_factory=lambda: PartTimes(0, 0.0, 0))
    kills: int = 0
    runs: int = 1
    resumed: int = 0

    def drop(self, phase: int) -> None:
        for r, repository in enumerate(REPOSITORIES):
            size = SIZES[(phase + 3 * r) % len(SIZES)]
            name = f"p{phase:02d}-{size}.layer"
            _, digest = make_layer(self.daemon.watch / repository, name, size)
            self.dropped.append(Dropped(repository, name, size, digest))

    @property
    def registry(self) -> RegistryProcess:
        return self.endpoint.registry

    def sample_path(self) -> None:
        self.path.sample(self.daemon.process.pid, self.registry.process.pid)

    def harvest(self) -> None:
        """Metrics and postponements of the current process, before it dies."""
        self.retries += retries_by_reason(self.daemon)
        self.part_times += PartTimes.scraped(self.daemon)
        self.resumed += sum(
            int(e["files"])
            for e in self.daemon.log_events()
            if e["event"] == "resuming interrupted files"
        )
        self.postponed += Counter(
            str(e.get("code"))
            for e in self.daemon.log_events()
            if e["event"] == "layer retry later"
        )

    def kill_and_restart(self) -> None:
        self.harvest()  # a retry counted between this and the kill is missed: a few ms
        wait_for_upload_in_flight(self.daemon.state_dir, timeout=10)
        self.daemon.process.send_signal(signal.SIGKILL)
        self.daemon.process.wait(timeout=10)
        self.kills += 1
        self.runs += 1
        self.daemon = start_daemon(
            self.tmp_path,
            self.endpoint.url,
            *DAEMON_OPTIONS,
            env=DAEMON_ENV,
            log_name=f"daemon-{self.runs}.log",
        )


def retries_by_reason(daemon: DaemonProcess) -> Counter[str]:
    found: Counter[str] = Counter()
    for line in daemon.metrics().splitlines():
        if line.startswith("uploaderd_retries_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            found[reason] += int(float(line.rsplit(" ", 1)[1]))
    return found


def wait_for_upload_in_flight(state_dir: Path, timeout: float) -> None:
    """Until some layer has parts confirmed but is not finished (best effort)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(state_dir / "journal.sqlite", timeout=5) as db:
            row = db.execute(
                "SELECT 1 FROM files WHERE state = 'uploading' AND next_byte > 0"
            ).fetchone()
        if row:
            return
        time.sleep(0.05)


def set_faults_when_listening(registry: RegistryProcess, specs: tuple[str, ...]) -> None:
    """POST /_faults, waiting out a refusal window that may still be open."""
    deadline = time.monotonic() + 15
    while True:
        try:
            registry.set_faults(*specs)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def chaos_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    server = start_registry(tmp_path / "registry", "--auto-create-repositories")
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture(params=LINKS)
def chaos_endpoint(
    request: pytest.FixtureRequest, chaos_registry: RegistryProcess
) -> Iterator[ChaosEndpoint]:
    """The registry straight, or behind a link emulator process stopped with the test."""
    shape: Shape | None = request.param
    if shape is None:
        yield ChaosEndpoint(chaos_registry, shape, None)
        return
    with running_link(shape, chaos_registry.url) as emulator:
        yield ChaosEndpoint(chaos_registry, shape, emulator)


def test_every_file_is_completed_exactly_once_through_faults_and_kill_9(
    chaos_endpoint: ChaosEndpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    chaos_registry = chaos_endpoint.registry
    run = ChaosRun(
        tmp_path,
        chaos_endpoint,
        start_daemon(tmp_path, chaos_endpoint.url, *DAEMON_OPTIONS, env=DAEMON_ENV),
        chaos_endpoint.witness(),
    )
    try:
        for index, (name, specs) in enumerate(PHASES):
            set_faults_when_listening(chaos_registry, specs)
            phase_started = time.monotonic()
            run.drop(index)
            if name in KILL_DURING_PHASES:
                run.kill_and_restart()
            time.sleep(max(0.0, phase_started + PHASE_SECONDS - time.monotonic()))
            run.sample_path()
        set_faults_when_listening(chaos_registry, ())
        run.daemon.wait_until(
            lambda: (
                len(run.daemon.done_files()) + len(run.daemon.failed_files()) >= len(run.dropped)
            ),
            90,
            "every dropped file to be finished",
        )
        run.sample_path()
        run.harvest()
        stats = chaos_registry.stats()
        summary = summarize(run, stats, time.monotonic() - started)
        with capsys.disabled():
            print("\n" + summary)

        assert run.daemon.failed_files() == [], summary
        for layer in run.dropped:
            key = f"{layer.repository}@{layer.digest}"
            assert stats["completed"].get(key) == 1, f"{layer.name}: {key}\n{summary}"
            done = run.daemon.state_dir / "done" / layer.repository / layer.name
            assert done.is_file(), f"{layer.name} is not in done/\n{summary}"
            fetched = chaos_registry.fetch_layer(layer.repository, layer.digest)
            assert "sha256:" + hashlib.sha256(fetched).hexdigest() == layer.digest
        assert not [p for p in run.daemon.watch.rglob("*") if p.is_file()]
        assert stats["overlapping_requests_same_upload"] == 0
        # Every kind of fault fired and every transient kind came back as a retry.
        assert set(stats["faults_injected"]) >= {
            "throttle-every",
            "server-error-every",
            "drop-after-apply-every",
            "forget-upload-after",
            "slow-body",
        }
        assert {
            "ThrottlingException",
            "ServerException",
            "ConnectionClosedError",
            "UploadNotFoundException",
            "ReadTimeoutError",
        } <= set(run.retries), summary
        assert run.resumed >= run.kills  # every kill landed while a layer was in flight
        run.path.check()  # the daemon reached the registry only the way the variant says
        if chaos_endpoint.shape is not None:
            # A part that crossed WAN took its 50 ms round trip, the daemon's first
            # part-time bucket (loopback: most parts). Timers are ms-grained: allow a tenth.
            assert run.part_times.count > 0, summary
            assert run.part_times.within_50_ms <= run.part_times.count // 10, summary
        assert run.daemon.stop() == 0
    finally:
        if run.daemon.process.poll() is None:
            run.daemon.process.kill()


def test_a_non_json_answer_to_complete_layer_upload_loses_no_layer(
    chaos_registry: RegistryProcess, tmp_path: Path
) -> None:
    daemon = start_daemon(tmp_path, chaos_registry.url, *DAEMON_OPTIONS, env=DAEMON_ENV)
    try:
        daemon.wait_until(
            lambda: any(e["event"] == "registry reachable" for e in daemon.log_events()),
            20,
            "the first reachability check",
        )
        # A 1-byte layer takes BatchCheckLayerAvailability, InitiateLayerUpload,
        # UploadLayerPart, CompleteLayerUpload: the 4th API request is the completion
        # (the next reachability ping is 15 s away).
        chaos_registry.set_faults("non-json-every=4")
        _, digest = make_layer(daemon.watch / "team/app", "tiny.layer", 1)
        daemon.wait_until(
            lambda: len(daemon.done_files()) + len(daemon.failed_files()) == 1, 30, "tiny.layer"
        )
        stats = chaos_registry.stats()
        assert stats["faults_injected"] == {"non-json-every": 1}
        assert stats["completed"].get(f"team/app@{digest}") == 1
    finally:
        assert daemon.stop() == 0


def summarize(run: ChaosRun, stats: dict[str, object], seconds: float) -> str:
    completed = stats["completed"]
    assert isinstance(completed, dict)
    counts = [completed.get(f"{d.repository}@{d.digest}", 0) for d in run.dropped]
    done = {
        (p.parent.relative_to(run.daemon.state_dir / "done").as_posix(), p.name)
        for p in run.daemon.done_files()
    }
    lost = sum(1 for d in run.dropped if (d.repository, d.name) not in done)
    rows = [
        ("files dropped", len(run.dropped)),
        ("bytes dropped", sum(d.size for d in run.dropped)),
        ("completed exactly once", sum(1 for c in counts if c == 1)),
        ("duplicated (completed > 1)", sum(1 for c in counts if c > 1)),
        ("never completed", sum(1 for c in counts if c == 0)),
        ("lost (not in done/)", lost),
        ("in failed/", len(run.daemon.failed_files())),
        ("kill -9 + restart", run.kills),
        ("files resumed after a kill", run.resumed),
        ("seconds", round(seconds, 1)),
    ]
    lines = ["chaos summary", "-" * 44]
    lines += [f"{label:<32}{value:>12}" for label, value in rows]
    lines += [f"path: {run.path.describe()}"]
    lines += [f"part uploads: {run.part_times.describe()}"]
    lines += ["retries by reason (uploaderd_retries_total)"]
    lines += [f"  {reason:<30}{n:>12}" for reason, n in sorted(run.retries.items())]
    lines += ["files put back to the queue (daemon backoff)"]
    lines += [f"  {code:<30}{n:>12}" for code, n in sorted(run.postponed.items())]
    lines += ["faults injected by the registry"]
    injected = stats["faults_injected"]
    assert isinstance(injected, dict)
    lines += [f"  {kind:<30}{n:>12}" for kind, n in sorted(injected.items())]
    return "\n".join(lines)
