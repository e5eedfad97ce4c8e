"""``throttling``: how often does a push meet ThrottlingException, and what does it cost?

The local registry throttles UploadLayerPart above ``PART_RATE`` per second
(``throttle-above=UploadLayerPart:RATE``: a token bucket on its side, one second's
burst, as ECR's per-action quotas), and every request waits ``LATENCY_SECONDS``, as a
far-away region would make it.  The same layers (``--part-size 5MiB``, so each has two
parts) are pushed to a fresh registry each time:

* ``--concurrency 16``: a fixed limit well above what the rate allows;
* ``--concurrency auto``: AIMD, which halves the layers in flight on every throttle;
* ``--concurrency 16`` and ``--concurrency auto`` with ``AWS_RETRY_MODE=standard``:
  without botocore's adaptive mode, which uploaderd asks for when the AWS chain names
  no retry mode (``registry/ecr.py``), recorded without a target, to show what that
  default is worth;
* ``--concurrency 16 --ecr-quota-share SHARE``: UploadLayerPart at 500 x SHARE per
  second, under the registry's rate (the other actions' shares bind no harder here).

For each: the throttles the registry answered (``/_stats`` ``faults_injected``,
botocore's own retries included) and the push's MiB/s (process wall time).  Figures
are medians of ``ROUNDS``.  Targets (issue 14): auto meets at most half the throttles
of fixed 16 at no less throughput; with the share, none.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import harness, measure, record, servers
from benchmarks.harness import MIB
from benchmarks.record import Figure

NAME = "throttling"
FULL_LAYERS = 32
QUICK_LAYERS = 12
LAYER_SIZE = 8 * MIB
PART_SIZE = "5MiB"
PART_RATE = 8.0
LATENCY_SECONDS = 0.05
FIXED = 16
SHARE = 0.015
"""UploadLayerPart at 7.5/s, under the registry's 8; InitiateLayerUpload and
CompleteLayerUpload at 1.5/s, which binds first for layers of two parts (ECR's own
quotas do the same: 100 initiations against 500 parts a second)."""
ROUNDS = 5
"""Throttles come a few at a time (the starting layers' second parts; each time botocore's
adaptive rate probes above the registry's), so one round's count swings: with 3 rounds, the
same code's auto/fixed ratio came out 0.41 and 0.64 (bcae5d6, back to back)."""
QUICK_ROUNDS = 1


@dataclass(frozen=True, slots=True)
class Variant:
    label: str
    options: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


FIXED_16 = Variant(f"--concurrency {FIXED}", ("--concurrency", str(FIXED)))
AUTO = Variant("--concurrency auto", ("--concurrency", "auto", "--max-concurrency", str(FIXED)))
STANDARD = Variant(
    f"--concurrency {FIXED}, AWS_RETRY_MODE=standard",
    ("--concurrency", str(FIXED)),
    (("AWS_RETRY_MODE", "standard"),),
)
AUTO_STANDARD = Variant(
    "--concurrency auto, AWS_RETRY_MODE=standard",
    AUTO.options,
    (("AWS_RETRY_MODE", "standard"),),
)
SHARED = Variant(
    f"--concurrency {FIXED} --ecr-quota-share {SHARE}",
    ("--concurrency", str(FIXED), "--ecr-quota-share", str(SHARE)),
)
VARIANTS = (FIXED_16, AUTO, STANDARD, AUTO_STANDARD, SHARED)


@dataclass(frozen=True, slots=True)
class Result:
    throttles: float
    mib_per_s: float


def _push_once(files: Sequence[Path], variant: Variant, number: int) -> tuple[int, float]:
    faults = ("--fault", f"throttle-above=UploadLayerPart:{PART_RATE:g}")
    with servers.local_registry(*faults, "--fault", f"latency={LATENCY_SECONDS}") as registry:
        argv = [
            harness.uploaderd_executable(),
            "push",
            "--repository",
            f"bench/throttling-{number}",
            "--endpoint-url",
            registry.url,
            "--part-size",
            PART_SIZE,
            "--memory-budget",
            "512MiB",
            "--json",
            *variant.options,
            *(str(path) for path in files),
        ]
        env = {**harness.push_environment(), **dict(variant.env)}
        child = measure.run_measured(argv, env)
        stats = registry.stats()
    outcomes = harness.push_outcomes(child.stdout)
    completed = servers.completed_layers(stats)
    if child.returncode != 0 or outcomes.count("uploaded") != len(files) or completed != len(files):
        raise harness.BenchmarkError(
            f"push ({variant.label}) failed: rc {child.returncode}, outcomes {outcomes}, "
            f"registry completed {completed}\n{child.stderr[-4000:]}"
        )
    throttles = int(stats.get("faults_injected", {}).get("throttle-above", 0))
    return throttles, len(files) * LAYER_SIZE / MIB / child.wall_seconds


def run(*, quick: bool) -> list[Figure]:
    count = QUICK_LAYERS if quick else FULL_LAYERS
    rounds = QUICK_ROUNDS if quick else ROUNDS
    runs: dict[Variant, list[tuple[int, float]]] = {v: [] for v in VARIANTS}
    with harness.temporary_layers(count, LAYER_SIZE) as files:
        number = 0
        for _ in range(rounds):  # interleaved, so a noisy spell hits every variant alike
            for variant in VARIANTS:
                runs[variant].append(_push_once(files, variant, number))
                number += 1
    results = {
        v: Result(statistics.median(t for t, _ in rs), statistics.median(rate for _, rate in rs))
        for v, rs in runs.items()
    }
    record.print_table(
        f"throttling: {count} x {LAYER_SIZE // MIB} MiB, parts of {PART_SIZE}, registry "
        f"throttles UploadLayerPart above {PART_RATE:g}/s, {LATENCY_SECONDS * 1000:.0f} ms "
        f"per request, medians of {rounds}",
        [
            (
                v.label,
                f"{r.throttles:g} ThrottlingExceptions, {r.mib_per_s:.1f} MiB/s (rounds: "
                + ", ".join(f"{t}/{rate:.1f}" for t, rate in runs[v])
                + ")",
            )
            for v, r in results.items()
        ],
    )
    fixed, auto, standard, auto_standard, shared = (results[v] for v in VARIANTS)
    return [
        Figure(
            NAME,
            f"ThrottlingExceptions: auto vs fixed {FIXED} ({count} x 8 MiB, "
            f"UploadLayerPart above {PART_RATE:g}/s)",
            auto.throttles,
            fixed.throttles,
            "<= 0.5",
            auto.throttles <= 0.5 * fixed.throttles,
        ),
        Figure(
            NAME,
            f"MiB/s: auto vs fixed {FIXED}",
            auto.mib_per_s,
            fixed.mib_per_s,
            ">= 1.0",
            auto.mib_per_s >= fixed.mib_per_s,
        ),
        Figure(
            NAME,
            f"ThrottlingExceptions: fixed {FIXED} with AWS_RETRY_MODE=standard vs the default",
            standard.throttles,
            fixed.throttles,
            "-",
            True,
        ),
        Figure(
            NAME,
            f"MiB/s: fixed {FIXED} with AWS_RETRY_MODE=standard vs the default",
            standard.mib_per_s,
            fixed.mib_per_s,
            "-",
            True,
        ),
        Figure(
            NAME,
            "ThrottlingExceptions: auto with AWS_RETRY_MODE=standard vs the default",
            auto_standard.throttles,
            auto.throttles,
            "-",
            True,
        ),
        Figure(
            NAME,
            "MiB/s: auto with AWS_RETRY_MODE=standard vs the default",
            auto_standard.mib_per_s,
            auto.mib_per_s,
            "-",
            True,
        ),
        Figure(
            NAME,
            f"ThrottlingExceptions: --ecr-quota-share {SHARE} (UploadLayerPart "
            f"{500 * SHARE:g}/s) vs fixed {FIXED}",
            shared.throttles,
            fixed.throttles,
            "value 0",
            shared.throttles == 0,
        ),
        Figure(
            NAME,
            f"MiB/s: --ecr-quota-share {SHARE} vs fixed {FIXED}",
            shared.mib_per_s,
            fixed.mib_per_s,
            "-",
            True,
        ),
    ]
