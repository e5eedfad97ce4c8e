"""``push``: does one ``uploaderd push`` get near ECR's wire limit, within its memory budget?

Four incompressible layers are pushed at concurrency 4 to a fresh local registry. Its
throughput is compared with the wire limit (see wirelimit.py) measured on the same
files in the same run, before and after the push; the faster of the two is the
reference, so a noisy moment cannot flatter the ratio. Peak RSS is the push process's
own (wait4), compared with the memory budget it was given.
"""

from __future__ import annotations

from benchmarks import harness, measure, record, servers
from benchmarks.harness import MIB
from benchmarks.record import Figure
from benchmarks.wirelimit import STDLIB_BASE64, wire_limit_seconds

NAME = "push"
LAYERS = 4
FULL_LAYER_SIZE = 256 * MIB
QUICK_LAYER_SIZE = 32 * MIB
CONCURRENCY = 4
BUDGET_MIB = 256
THROUGHPUT_TARGET = 0.8
RSS_ALLOWANCE_MIB = 80


def run(*, quick: bool) -> list[Figure]:
    layer_size = QUICK_LAYER_SIZE if quick else FULL_LAYER_SIZE
    total_mib = LAYERS * layer_size / MIB
    with harness.temporary_layers(LAYERS, layer_size) as files, servers.local_registry() as reg:
        before = wire_limit_seconds(files)
        argv = harness.push_argv(
            files,
            repository="bench/push",
            endpoint_url=reg.url,
            concurrency=CONCURRENCY,
            memory_budget=f"{BUDGET_MIB}MiB",
        )
        child = measure.run_measured(argv, harness.push_environment())
        after = wire_limit_seconds(files)
        old_reference = wire_limit_seconds(files, encode=STDLIB_BASE64)
        completed = servers.completed_layers(reg.stats())
    outcomes = harness.push_outcomes(child.stdout)
    uploaded = outcomes.count("uploaded")
    if child.returncode != 0 or uploaded != LAYERS or completed != LAYERS:
        raise SystemExit(
            f"push failed: rc {child.returncode}, outcomes {outcomes}, "
            f"registry completed {completed}\n{child.stderr}"
        )
    push_rate = total_mib / child.wall_seconds
    wire_rate = total_mib / min(before, after)
    old_wire_rate = total_mib / old_reference
    rss_mib = child.peak_rss_bytes / MIB
    record.print_table(
        f"push: {LAYERS} x {layer_size // MIB} MiB, concurrency {CONCURRENCY}",
        [
            (
                "push MiB/s",
                f"{push_rate:.1f} ({child.wall_seconds:.2f} s wall, "
                f"{child.cpu_seconds:.2f} s CPU in the push process)",
            ),
            (
                "wire-limit MiB/s",
                f"{wire_rate:.1f} (before {total_mib / before:.1f}, after {total_mib / after:.1f})",
            ),
            ("ratio", f"{push_rate / wire_rate:.2f} (target >= {THROUGHPUT_TARGET})"),
            (
                "old reference",
                f"{old_wire_rate:.1f} MiB/s with stdlib base64 (rows up to d78564c): "
                f"ratio {push_rate / old_wire_rate:.2f}",
            ),
            ("peak RSS MiB", f"{rss_mib:.1f}"),
            ("budget MiB", f"{BUDGET_MIB}"),
            ("RSS - budget MiB", f"{rss_mib - BUDGET_MIB:.1f} (target <= {RSS_ALLOWANCE_MIB})"),
            ("layers uploaded", f"{uploaded}/{LAYERS}; registry completed {completed}"),
        ],
    )
    return [
        Figure(
            NAME,
            "push MiB/s vs wire-limit MiB/s",
            push_rate,
            wire_rate,
            f">= {THROUGHPUT_TARGET}",
            push_rate >= THROUGHPUT_TARGET * wire_rate,
        ),
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
        Figure(NAME, "layers uploaded vs layers", uploaded, LAYERS, "= 1.00", True),
    ]
