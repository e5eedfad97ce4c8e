"""``pickup``: how soon after a build system renames a layer into the spool does the
daemon start on it?

One file at a time is renamed in, and the next only once the previous is in done/, so
each pickup is measured on an idle daemon. The clock starts just before ``os.rename``
(time.time()) and stops at the ``ts`` of the daemon's "file queued" log event for that
file: same clock, same machine. The registry does not timestamp requests; the event is
logged when the file enters the journal, and for a layer this small the worker hashes it
and sends BatchCheckLayerAvailability at once, so the event stands in for the first
request. ``ts`` has millisecond resolution and is truncated, so the true time lies in
[ts, ts + 1 ms): the figures use ts + 1 ms, an upper bound, since on an idle daemon a
pickup takes well under a millisecond and rounding down would flatter it. The first
file is a warm-up (the first push also creates the ECR client) and is reported apart.
The reference is the target itself: there is no same-run measurement to compare a
latency with.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import daemon, record, servers
from benchmarks.daemon import DaemonProcess, event_time
from benchmarks.harness import BenchmarkError
from benchmarks.record import Figure

NAME = "pickup"
FILES = 30
FILE_SIZE = 16 * 1024
TARGET_MS = 50.0
REPOSITORY = "bench/pickup"
PER_FILE_TIMEOUT = 30.0
#: Log timestamps are truncated to the millisecond; adding it gives an upper bound.
TS_RESOLUTION = 0.001


def run(*, quick: bool) -> list[Figure]:
    del quick  # thirty 16 KiB files take seconds either way
    with (
        servers.local_registry() as registry,
        tempfile.TemporaryDirectory(prefix="uploaderd-bench-pickup-") as directory,
    ):
        root = Path(directory)
        staged = daemon.stage_random_files(root / "staging", FILES + 1, FILE_SIZE)
        # Made before the daemon starts, so no pickup includes watching a new directory.
        (root / "spool" / REPOSITORY).mkdir(parents=True)
        with daemon.running_daemon(root, registry.url) as process:
            timings = [_pickup(process, path) for path in staged]
            ended = process.stop()
    if ended.returncode != 0:
        raise BenchmarkError(f"pickup: the daemon exited with rc {ended.returncode}")
    warmup, measured = timings[0], timings[1:]
    queued_ms = [queued for queued, _ in measured]
    uploaded_ms = [uploaded for _, uploaded in measured]
    median, p90 = statistics.median(queued_ms), _p90(queued_ms)
    record.print_table(
        f"pickup: {FILES} files of {FILE_SIZE // 1024} KiB renamed in one at a time",
        [
            (
                "rename -> 'file queued' median ms",
                f"{median:.1f} (upper bound: log ts + 1 ms; target < {TARGET_MS:.0f})",
            ),
            ("rename -> 'file queued' p90 ms", f"{p90:.1f}"),
            ("rename -> 'file queued' max ms", f"{max(queued_ms):.1f}"),
            ("rename -> 'layer uploaded' median ms", f"{statistics.median(uploaded_ms):.1f}"),
            ("warm-up file (not counted)", f"queued {warmup[0]:.1f} ms, uploaded {warmup[1]:.1f}"),
        ],
    )
    return [
        Figure(
            NAME,
            "rename -> 'file queued' median ms vs target ms",
            median,
            TARGET_MS,
            f"< {TARGET_MS:.0f} ms",
            median < TARGET_MS,
        ),
        Figure(NAME, "rename -> 'file queued' p90 ms vs target ms", p90, TARGET_MS, "-", True),
    ]


def _pickup(process: DaemonProcess, staged: Path) -> tuple[float, float]:
    """Milliseconds from the rename to the file's "file queued" and "layer uploaded"
    (upper bounds: see TS_RESOLUTION)."""
    relpath = f"{REPOSITORY}/{staged.name}"
    seen: dict[str, float] = {}

    def finished() -> bool:
        for event in process.log.new_events():
            if event.get("file") == relpath and event.get("event") in (
                "file queued",
                "layer uploaded",
            ):
                seen[str(event["event"])] = event_time(event)
        done = process.state_dir / "done" / REPOSITORY / staged.name
        return len(seen) == 2 and done.exists()

    renamed_at = time.time()
    os.rename(staged, process.watch / relpath)
    process.wait_until(
        finished, what=f"waiting for {relpath} to be done", timeout=PER_FILE_TIMEOUT, interval=0.01
    )
    return (
        (seen["file queued"] + TS_RESOLUTION - renamed_at) * 1000,
        (seen["layer uploaded"] + TS_RESOLUTION - renamed_at) * 1000,
    )


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1]
