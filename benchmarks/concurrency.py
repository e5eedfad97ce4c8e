"""``concurrency``: do layers in flight hide a slow registry's latency?

Every request to the registry waits 50 ms, as a far-away ECR region would make it.
A layer's parts must go strictly in order, so one layer at a time pays that latency
on every part; only layers in parallel can hide it. The reference is the same push
at concurrency 1 in the same run. Each level gets a fresh registry, so no layer is
ever skipped as already present.

The target is judged on the process's wall time, start-up included (~0.9 s here: the
imports and the client), because that is what a user of ``push`` waits for. The same
ratios timed by the push itself (its summary line: from opening the registry client to
the last layer) are recorded beside them, without a target, to show how much of the
gap that fixed cost is; a daemon pays it once, at boot.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from pathlib import Path

from benchmarks import harness, measure, record, servers
from benchmarks.harness import MIB
from benchmarks.record import Figure

NAME = "concurrency"
LAYERS = 8
FULL_LAYER_SIZE = 64 * MIB
QUICK_LAYER_SIZE = 16 * MIB
LEVELS = (1, 2, 4, 8)
LATENCY_SECONDS = 0.05
TARGET_LEVEL = 4
TARGET_SPEEDUP = 3.5
PLOT_PATH = Path(__file__).with_name("concurrency.png")
SUMMARY_SECONDS = re.compile(r"MiB sent in ([0-9.]+)s")


def run(*, quick: bool) -> list[Figure]:
    layer_size = QUICK_LAYER_SIZE if quick else FULL_LAYER_SIZE
    total_mib = LAYERS * layer_size / MIB
    rates: dict[int, float] = {}
    own_rates: dict[int, float] = {}
    with harness.temporary_layers(LAYERS, layer_size) as files:
        for level in LEVELS:
            wall, own = _push_seconds(files, level)
            rates[level], own_rates[level] = total_mib / wall, total_mib / own
    base, own_base = rates[LEVELS[0]], own_rates[LEVELS[0]]
    record.print_table(
        f"concurrency: {LAYERS} x {layer_size // MIB} MiB, {LATENCY_SECONDS * 1000:.0f} ms "
        "per request (without start-up: as the push times itself)",
        [
            (
                f"concurrency {level}",
                f"{rate:.1f} MiB/s, {rate / base:.2f}x concurrency 1 "
                f"(without start-up {own_rates[level]:.1f} MiB/s, "
                f"{own_rates[level] / own_base:.2f}x)",
            )
            for level, rate in rates.items()
        ]
        + [("plot", _plot(rates, own_rates))],
    )
    return [
        Figure(
            NAME,
            f"MiB/s at concurrency {level} vs concurrency 1",
            rate,
            base,
            f">= {TARGET_SPEEDUP}" if level == TARGET_LEVEL else "-",
            rate >= TARGET_SPEEDUP * base if level == TARGET_LEVEL else True,
        )
        for level, rate in rates.items()
    ] + [
        Figure(
            NAME,
            f"MiB/s at concurrency {level} vs concurrency 1, timed by the push (no start-up)",
            rate,
            own_base,
            "-",
            True,
        )
        for level, rate in own_rates.items()
        if level != LEVELS[0]
    ]


def _push_seconds(files: Sequence[Path], level: int) -> tuple[float, float]:
    """The push's wall time, and its own timing from its summary line."""
    with servers.local_registry("--fault", f"latency={LATENCY_SECONDS}") as registry:
        argv = harness.push_argv(
            files,
            repository=f"bench/concurrency-{level}",
            endpoint_url=registry.url,
            concurrency=level,
            memory_budget="256MiB",
        )
        child = measure.run_measured(argv, harness.push_environment())
        completed = servers.completed_layers(registry.stats())
    outcomes = harness.push_outcomes(child.stdout)
    if child.returncode != 0 or outcomes.count("uploaded") != LAYERS or completed != LAYERS:
        raise harness.BenchmarkError(
            f"push at concurrency {level} failed: rc {child.returncode}, outcomes {outcomes}, "
            f"registry completed {completed}\n{child.stderr}"
        )
    own = SUMMARY_SECONDS.search(child.stderr)
    if own is None:
        raise harness.BenchmarkError(
            f"push at concurrency {level} printed no summary line:\n{child.stderr}"
        )
    return child.wall_seconds, float(own.group(1))


def _plot(rates: dict[int, float], own_rates: dict[int, float]) -> str:
    """Draws the curve only if matplotlib is already there: benchmarks add no dependency."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return "skipped: matplotlib is not installed"
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    figure, axes = pyplot.subplots()
    axes.plot(list(rates), list(rates.values()), marker="o", label="process wall time")
    axes.plot(
        list(own_rates),
        list(own_rates.values()),
        marker="s",
        linestyle="--",
        label="as the push times itself (no start-up)",
    )
    axes.legend()
    axes.set_xlabel("layers in flight (--concurrency)")
    axes.set_ylabel("aggregate MiB/s")
    axes.set_title(f"uploaderd push, {LATENCY_SECONDS * 1000:.0f} ms per request")
    figure.savefig(PLOT_PATH)
    pyplot.close(figure)
    return f"written to {PLOT_PATH}"
