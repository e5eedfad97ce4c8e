"""``push``: how much CPU does one ``uploaderd push`` spend, against what ECR's wire format forces?

Four incompressible layers are pushed at concurrency 4 to a fresh local registry,
``ROUNDS`` times.  The headline is the **CPU ratio**: the CPU-seconds one thread needs for
the work ECR's protocol forces on any client over the same bytes (wirelimit.py), divided
by the push process's own user+sys seconds (``wait4`` of that process only: the registry
that shares the cores is not counted).  CPU is what a push takes from the builds on a
build host; a wall-clock ratio on two cores shared with the registry measures the
registry as much as the push, so it is recorded without a target.

The ratio is also given with start-up excluded: the CPU of an interpreter importing
everything a push to ECR imports (``START_UP_IMPORTS``; at least that of
``uploaderd push --help``), measured in the same run, subtracted from the push's.
Every figure is the median of the rounds.  Peak RSS is the push process's own, against
the memory budget it was given.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import harness, measure, record, servers
from benchmarks.harness import MIB
from benchmarks.record import Figure
from benchmarks.wirelimit import STDLIB_BASE64, WireLimit, wire_limit

NAME = "push"
LAYERS = 4
FULL_LAYER_SIZE = 256 * MIB
QUICK_LAYER_SIZE = 32 * MIB
CONCURRENCY = 4
BUDGET_MIB = 256
ROUNDS = 3
CPU_TARGET = 0.65
CPU_TARGET_WITHOUT_START_UP = 0.75
RSS_ALLOWANCE_MIB = 80


@dataclass(frozen=True, slots=True)
class Round:
    """One push and the wire limit measured right beside it."""

    push: measure.ChildRun
    limit: WireLimit


def _push_once(files: Sequence[Path], round_number: int) -> Round:
    """A push to a registry of its own, so every round uploads every byte."""
    with servers.local_registry() as registry:
        argv = harness.push_argv(
            files,
            repository=f"bench/push-{round_number}",
            endpoint_url=registry.url,
            concurrency=CONCURRENCY,
            memory_budget=f"{BUDGET_MIB}MiB",
        )
        child = measure.run_measured(argv, harness.push_environment())
        completed = servers.completed_layers(registry.stats())
    outcomes = harness.push_outcomes(child.stdout)
    if child.returncode != 0 or outcomes.count("uploaded") != LAYERS or completed != LAYERS:
        raise harness.BenchmarkError(
            f"push failed: rc {child.returncode}, outcomes {outcomes}, "
            f"registry completed {completed}\n{child.stderr}"
        )
    return Round(child, wire_limit(files))


START_UP_IMPORTS = "import uploaderd.cli.main, uploaderd.cli.push, uploaderd.registry.ecr"
"""What a push to ECR loads before its first byte.  ``push --help`` no longer loads the
backend (it is imported when the push runs), so its CPU alone would understate start-up."""


def _median_cpu(argv: Sequence[str]) -> float:
    runs = [measure.run_measured(argv, harness.push_environment()) for _ in range(ROUNDS * 2)]
    return statistics.median(run.cpu_seconds for run in runs)


def _start_up_cpu() -> tuple[float, float]:
    """The CPU of ``push --help``, and of the interpreter with everything a push imports."""
    help_cpu = _median_cpu([harness.uploaderd_executable(), "push", "--help"])
    imports_cpu = _median_cpu([sys.executable, "-c", START_UP_IMPORTS])
    return help_cpu, max(help_cpu, imports_cpu)


def run(*, quick: bool) -> list[Figure]:
    layer_size = QUICK_LAYER_SIZE if quick else FULL_LAYER_SIZE
    total_mib = LAYERS * layer_size / MIB
    with harness.temporary_layers(LAYERS, layer_size) as files:
        wire_limit(files)  # warm the page cache, as a build host's fresh layers are
        rounds = [_push_once(files, number) for number in range(ROUNDS)]
        old_reference = wire_limit(files, encode=STDLIB_BASE64)
    help_cpu, start_up = _start_up_cpu()
    push_cpu = statistics.median(r.push.cpu_seconds for r in rounds)
    push_wall = statistics.median(r.push.wall_seconds for r in rounds)
    limit_cpu = statistics.median(r.limit.cpu_seconds for r in rounds)
    limit_wall = statistics.median(r.limit.wall_seconds for r in rounds)
    rss_mib = max(r.push.peak_rss_bytes for r in rounds) / MIB
    push_rate, wire_rate = total_mib / push_wall, total_mib / limit_wall
    old_wire_rate = total_mib / old_reference.wall_seconds
    record.print_table(
        f"push: {LAYERS} x {layer_size // MIB} MiB, concurrency {CONCURRENCY}, medians of {ROUNDS}",
        [
            (
                "push CPU s",
                f"{push_cpu:.2f} (rounds: "
                + ", ".join(f"{r.push.cpu_seconds:.2f}" for r in rounds)
                + f"); start-up {start_up:.2f} s (push --help {help_cpu:.2f} s)",
            ),
            ("wire-limit CPU s", f"{limit_cpu:.2f} (one thread)"),
            ("CPU ratio", f"{limit_cpu / push_cpu:.2f} (target >= {CPU_TARGET})"),
            (
                "CPU ratio, start-up excluded",
                f"{limit_cpu / (push_cpu - start_up):.2f} "
                f"(target >= {CPU_TARGET_WITHOUT_START_UP})",
            ),
            ("push MiB/s", f"{push_rate:.1f} ({push_wall:.2f} s wall)"),
            ("wire-limit MiB/s", f"{wire_rate:.1f}; wall ratio {push_rate / wire_rate:.2f}"),
            ("old reference", f"{old_wire_rate:.1f} MiB/s with stdlib base64 (rows to d78564c)"),
            ("peak RSS MiB", f"{rss_mib:.1f} (budget {BUDGET_MIB}, the highest round)"),
        ],
    )
    return [
        Figure(
            NAME,
            "CPU ratio: wire-limit CPU-s vs push CPU-s (user+sys)",
            limit_cpu,
            push_cpu,
            f">= {CPU_TARGET}",
            limit_cpu >= CPU_TARGET * push_cpu,
        ),
        Figure(
            NAME,
            "CPU ratio without start-up: wire-limit CPU-s vs push CPU-s - start-up CPU-s",
            limit_cpu,
            push_cpu - start_up,
            f">= {CPU_TARGET_WITHOUT_START_UP}",
            limit_cpu >= CPU_TARGET_WITHOUT_START_UP * (push_cpu - start_up),
        ),
        Figure(NAME, "push MiB/s vs wire-limit MiB/s (wall)", push_rate, wire_rate, "-", True),
        Figure(
            NAME,
            "push MiB/s vs old wire limit (stdlib base64) MiB/s",
            push_rate,
            old_wire_rate,
            "-",
            True,
        ),
        Figure(
            NAME,
            "peak RSS MiB vs budget MiB",
            rss_mib,
            BUDGET_MIB,
            f"<= budget + {RSS_ALLOWANCE_MIB} MiB",
            rss_mib <= BUDGET_MIB + RSS_ALLOWANCE_MIB,
        ),
    ]
