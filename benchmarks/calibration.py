"""The link emulator as a child process, and what its link can carry, measured with curl.

A figure measured through the emulator means something only against what the link itself
carries in the same run: the cap is nominal, the delay costs a ramp per request, and on
two shared cores the proxy may itself become the limit. So every run first sends N
parallel ``curl -T`` PUT streams through the emulator to a discard sink (``linkemu
--sink``, its own process) and times them, for each number of connections the run uses.
Those ceilings are the references the push figures are divided by.

Each count is timed twice, with streams of S and of 2S bytes: the difference is S bytes
per stream at the link's steady rate, whatever a transfer's fixed cost (the handshake's
round trip, the request's and the answer's trips, curl's start). That steady rate is the
ceiling; the fixed cost, the intercept, is reported beside it. A ceiling taken from one
transfer would fold its ramp into the rate and flatter a long push measured against it.
An uncapped link ("region") is bound by the CPU of curl, proxy and sink on shared cores,
whose noise a difference of two times amplifies; there the ceiling is the longer
transfer's own average rate, ramp included, so it errs low.

The emulator runs as its own process so its CPU is not the measured process's; its
user+sys seconds are read from /proc, so a figure can say whether the proxy was busy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks import harness, servers
from benchmarks.harness import MIB, BenchmarkError
from benchmarks.linkemu import Shape

START_TIMEOUT = 20.0
#: A capped stream's shorter transfer carries this many seconds of its cap (the longer
#: twice that): long enough for a steady slope, short enough for every run.
CALIBRATION_SECONDS = 2.0
#: An uncapped link's shorter transfer is this much in all, split over its streams.
UNCAPPED_TOTAL = 256 * MIB
CURL_TIMEOUT = 300.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Emulator:
    """A running ``benchmarks.linkemu`` child: where it listens and how busy it has been."""

    port: int
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """user+sys so far, from /proc (the child is still running, so wait4 cannot say)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextmanager
def emulator(shape: Shape | None, target: str | None = None) -> Iterator[Emulator]:
    """The link to ``target`` (host:port), or with ``target`` None the discard sink."""
    argv = [sys.executable, "-m", "benchmarks.linkemu", "--listen", "0"]
    if target is None:
        argv.append("--sink")
    else:
        assert shape is not None
        argv += ["--target", target, "--shape", shape.name]
    # The benchmarks package must be importable whatever the working directory.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(_python_path()))
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = int(
            servers.await_line(
                process, r"listening on 127\.0\.0\.1:(\d+)", "linkemu", START_TIMEOUT
            )[1]
        )
        yield Emulator(port, process)
    finally:
        servers.stop(process)


def _python_path() -> list[str]:
    root = str(Path(__file__).resolve().parent.parent)
    inherited = os.environ.get("PYTHONPATH", "")
    return [root, *(part for part in inherited.split(os.pathsep) if part)]


@dataclass(frozen=True, slots=True)
class Ceiling:
    """What ``streams`` parallel curl PUTs carried through the link, in all."""

    streams: int
    #: The steady rate, from the slope between the two sizes.
    mib_per_s: float
    #: What one transfer costs beyond its bytes at that rate (the intercept).
    fixed_seconds: float
    #: The emulator's CPU seconds over the calibration's wall seconds: near 1.0, the
    #: proxy itself was the limit.
    emulator_busy: float


def stream_bytes(shape: Shape, streams: int) -> int:
    if shape.rate:
        return int(shape.rate * CALIBRATION_SECONDS) // MIB * MIB
    return max(32 * MIB, UNCAPPED_TOTAL // streams)


def calibrate(shape: Shape, stream_counts: Sequence[int]) -> dict[int, Ceiling]:
    """The link's ceiling for each number of parallel connections."""
    curl = shutil.which("curl")
    if curl is None:
        raise BenchmarkError("curl is not installed; apt-get install curl")
    ceilings = {}
    with (
        tempfile.TemporaryDirectory(prefix="uploaderd-bench-calibration-") as scratch,
        emulator(None) as sink,
        emulator(shape, f"127.0.0.1:{sink.port}") as link,
    ):
        samples: dict[int, Path] = {}

        def sample(size: int) -> Path:
            if size not in samples:
                samples[size] = Path(scratch) / f"sample-{size}"
                harness.write_random(samples[size], size)
            return samples[size]

        for streams in sorted(set(stream_counts)):
            size = stream_bytes(shape, streams)
            short_wall, short_busy = _parallel_puts(curl, link, sample(size), size, streams)
            long_wall, long_busy = _parallel_puts(curl, link, sample(2 * size), 2 * size, streams)
            if long_wall <= short_wall:
                raise BenchmarkError(
                    f"calibration of {shape.name} with {streams} streams: {2 * size} bytes took "
                    f"{long_wall:.2f} s, no longer than {size} bytes ({short_wall:.2f} s)"
                )
            steady = streams * size / MIB / (long_wall - short_wall)
            average = streams * 2 * size / MIB / long_wall
            ceilings[streams] = Ceiling(
                streams,
                steady if shape.rate else average,
                2 * short_wall - long_wall,
                max(short_busy, long_busy),
            )
    return ceilings


def _parallel_puts(
    curl: str, link: Emulator, sample: Path, size: int, streams: int
) -> tuple[float, float]:
    """The wall seconds of ``streams`` parallel PUTs of ``sample``, and the emulator's share."""
    argv = [
        curl,
        "--silent",
        "--show-error",
        "--fail",
        "--output",
        "/dev/null",
        # No 100-continue: the sink never sends one, and curl would wait a second for it.
        "--header",
        "Expect:",
        "--write-out",
        "%{size_upload}",
        "--upload-file",
        str(sample),
    ]
    busy_before = link.cpu_seconds()
    started = time.perf_counter()
    children = [
        subprocess.Popen(
            [*argv, f"{link.url}/calibration/{index}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(streams)
    ]
    answers = [child.communicate(timeout=CURL_TIMEOUT) for child in children]
    wall = time.perf_counter() - started
    busy = (link.cpu_seconds() - busy_before) / wall
    for child, (out, err) in zip(children, answers, strict=True):
        if child.returncode != 0 or int(float(out or 0)) != size:
            raise BenchmarkError(
                f"calibration curl failed (rc {child.returncode}, sent {out!r} of {size}): {err}"
            )
    return wall, busy
