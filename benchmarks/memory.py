"""``memory``: does the daemon's peak RSS stay within its budget whatever the layers?

The budget (``--memory-budget 256MiB``) is a promise about the process, not about the
engine's own buffers, so the figure is the daemon's peak RSS (wait4 after SIGTERM,
drain included), not the engine's accounting. Three shapes: one layer, the same one
layer eight times larger (memory must not grow with the layer: the 8x run's peak is
compared with the 1x run's), and many layers at once at concurrency 8 (memory must not
grow with the layers in flight). Each shape gets a fresh registry, spool and state dir,
and its layers and the registry's copy are deleted before the next one is written.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import daemon, harness, record, servers
from benchmarks.daemon import DaemonExit
from benchmarks.harness import GIB, MIB, BenchmarkError
from benchmarks.record import Figure

NAME = "memory"
BUDGET_MIB = 256
RSS_ALLOWANCE_MIB = 80
#: The larger single layer may cost at most this much more peak RSS than the smaller.
SIZE_GROWTH_TARGET = 1.10
#: A generous floor on throughput, so the deadline only catches a run that is stuck.
SLOWEST_MIB_PER_S = 4.0


@dataclass(frozen=True, slots=True)
class Shape:
    count: int
    size: int
    concurrency: int

    @property
    def label(self) -> str:
        return f"{self.count} x {self.size // MIB} MiB"

    @property
    def total(self) -> int:
        return self.count * self.size


@dataclass(frozen=True, slots=True)
class Measured:
    shape: Shape
    exit: DaemonExit
    seconds: float

    @property
    def rss_mib(self) -> float:
        return self.exit.peak_rss_bytes / MIB


FULL_SHAPES = (Shape(1, 1 * GIB, 4), Shape(1, 8 * GIB, 4), Shape(16, 256 * MIB, 8))
QUICK_SHAPES = (Shape(1, 64 * MIB, 4), Shape(1, 256 * MIB, 4), Shape(4, 32 * MIB, 8))


def run(*, quick: bool) -> list[Figure]:
    shapes = QUICK_SHAPES if quick else FULL_SHAPES
    results = [_measure(index, shape) for index, shape in enumerate(shapes)]
    small, large = results[0], results[1]
    record.print_table(
        f"memory: daemon peak RSS with --memory-budget {BUDGET_MIB}MiB",
        [
            (
                f"{m.shape.label}, concurrency {m.shape.concurrency}",
                f"{m.rss_mib:.1f} MiB peak (wait4; VmHWM before SIGTERM "
                f"{m.exit.hwm_before_stop_bytes / MIB:.1f}), budget "
                f"{m.rss_mib - BUDGET_MIB:+.1f} MiB (target <= +{RSS_ALLOWANCE_MIB}); "
                f"{m.seconds:.1f} s, {m.shape.total / MIB / m.seconds:.1f} MiB/s",
            )
            for m in results
        ]
        + [
            (
                f"{large.shape.label} vs {small.shape.label}",
                f"{large.rss_mib / small.rss_mib:.3f}x (target <= {SIZE_GROWTH_TARGET:.2f})",
            )
        ],
    )
    figures = [
        Figure(
            NAME,
            f"daemon peak RSS MiB, {m.shape.label} at concurrency {m.shape.concurrency}, "
            "vs budget MiB",
            m.rss_mib,
            BUDGET_MIB,
            f"<= budget + {RSS_ALLOWANCE_MIB} MiB",
            m.rss_mib <= BUDGET_MIB + RSS_ALLOWANCE_MIB,
        )
        for m in results
    ]
    figures.append(
        Figure(
            NAME,
            f"daemon peak RSS MiB, {large.shape.label} vs {small.shape.label}",
            large.rss_mib,
            small.rss_mib,
            f"<= {SIZE_GROWTH_TARGET:.2f}",
            large.rss_mib <= SIZE_GROWTH_TARGET * small.rss_mib,
        )
    )
    return figures


def _measure(index: int, shape: Shape) -> Measured:
    # The layers plus the registry's copy of them, and room for everything else.
    harness.require_free_disk(2 * shape.total + GIB)
    repository = f"bench/memory-{index}"
    options = ("--concurrency", str(shape.concurrency), "--memory-budget", f"{BUDGET_MIB}MiB")
    timeout = 120 + shape.total / MIB / SLOWEST_MIB_PER_S
    print(f"memory: writing {shape.label} of random data ...", flush=True)
    with (
        servers.local_registry() as registry,
        tempfile.TemporaryDirectory(prefix="uploaderd-bench-memory-") as directory,
    ):
        root = Path(directory)
        staged = daemon.stage_random_files(root / "staging", shape.count, shape.size)
        print(f"memory: the daemon pushes {shape.label} ...", flush=True)
        with daemon.running_daemon(root, registry.url, *options) as process:
            started = time.monotonic()
            daemon.rename_into(staged, process.watch / repository)
            process.wait_until(
                lambda: process.done_count(repository) == shape.count,
                what=f"pushing {shape.label}",
                timeout=timeout,
                interval=0.1,
                progress=lambda: (process.done_count(repository), registry.stats()),
            )
            seconds = time.monotonic() - started
            ended = process.stop()
        completed = servers.completed_layers(registry.stats())
    if ended.returncode != 0 or completed != shape.count:
        raise BenchmarkError(
            f"memory {shape.label}: daemon rc {ended.returncode}, registry completed "
            f"{completed} of {shape.count} layers"
        )
    return Measured(shape, ended, seconds)
