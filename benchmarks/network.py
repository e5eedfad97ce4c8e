"""``network``: how close does ``uploaderd push`` come to what a slow, far link can carry?

Every push goes through the link emulator (``linkemu``), as its own process, to a registry
on loopback: the CNCF distribution registry (``--registry``, the OCI backend) and the
local ECR registry (``--endpoint-url``, the ECR backend), each fresh for each shape. For
each shape the run first measures the link's ceiling with parallel curl PUTs
(``calibration``), then pushes ``LAYERS`` random layers at each ``--concurrency`` level
(``auto`` too, if the uploaderd measured accepts it; tried once per run). A push's MiB/s
is the layers' bytes over the push's own time (its summary line: from opening the client
to the last layer, so the ~0.3 s of process start-up is not charged to the link), divided
by the ceiling over as many connections as the push can use (one per layer in flight).
ECR's figures include its wire format: each part travels as base64 in JSON, 4/3 of its
bytes, so 0.75 of the ceiling is all an ECR push can reach.

The chunk cost: one 256 MiB layer pushed at concurrency 1 over "far", against the ideal of
its bytes over the one-connection ceiling plus three round trips (HEAD, POST, final PUT;
curl's own handshake and request round trip are already in the ceiling). Each chunk the
OCI backend sends as its own PATCH waits for its answer, so the link idles one round trip
per chunk; the percentage lost is what that costs.

``python -m benchmarks network`` runs everything; ``python -m benchmarks.network`` takes
flags to choose shapes, levels, registries and repeats (``--help``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import calibration, harness, measure, record, servers, skopeo
from benchmarks.calibration import Ceiling, Emulator
from benchmarks.harness import MIB, BenchmarkError
from benchmarks.linkemu import SHAPES, Shape, shape_named
from benchmarks.record import Figure

NAME = "network"
LEVELS: tuple[str, ...] = ("1", "2", "4", "8", "16", "auto")
KINDS = ("oci", "ecr")
#: Layers per shape: (count, MiB each). "far" at concurrency 1 carries 8 MiB/s, so its
#: layers are half the size, to keep a full run within about 20 minutes.
SIZES = {"region": (8, 64), "WAN": (8, 64), "far": (8, 32)}
QUICK_SIZES = {"region": (8, 16), "WAN": (8, 8), "far": (8, 4)}
CHUNK_LAYER_MIB = 256
QUICK_CHUNK_LAYER_MIB = 32
CHUNK_REPEATS = 3
CHUNK_TARGET_LOST = 0.05
#: Room for 16 layers' parts in flight, so the budget never caps the concurrency measured.
BUDGET = "1GiB"
SUMMARY_SECONDS = re.compile(r"MiB sent in ([0-9.]+)s")


@dataclass(frozen=True, slots=True)
class Plan:
    """What one run measures: the shapes, the levels, the registries, the repeats."""

    shapes: tuple[Shape, ...]
    levels: tuple[str, ...]
    kinds: tuple[str, ...]
    repeats: int
    quick: bool
    chunk_cost: bool

    def size(self, shape: Shape) -> tuple[int, int]:
        count, mib = (QUICK_SIZES if self.quick else SIZES)[shape.name]
        return count, mib * MIB


@dataclass(slots=True)
class Sweep:
    """One shape and registry kind: each level's push seconds, as the push timed itself."""

    shape: Shape
    kind: str
    layers: int
    layer_size: int
    seconds: dict[str, list[float]] = field(default_factory=dict)
    busy: dict[str, list[float]] = field(default_factory=dict)

    def rate(self, level: str) -> float:
        return self.layers * self.layer_size / MIB / statistics.median(self.seconds[level])

    def connections(self, level: str) -> int:
        return connections(level, self.layers)


def connections(level: str, layers: int) -> int:
    """How many connections a push can keep busy: one per layer in flight."""
    return layers if level == "auto" else min(int(level), layers)


def run(*, quick: bool) -> list[Figure]:
    return measure_plan(
        Plan(tuple(SHAPES.values()), LEVELS, KINDS, repeats=1, quick=quick, chunk_cost=True)
    )


def measure_plan(plan: Plan) -> list[Figure]:
    check_measured_code()
    levels = plan.levels
    if "auto" in levels and not accepts_auto():
        print("note: this uploaderd refuses --concurrency auto; fixed levels only")
        levels = tuple(level for level in levels if level != "auto")
    figures: list[Figure] = []
    far_ceiling: Ceiling | None = None
    for shape in plan.shapes:
        count, size = plan.size(shape)
        streams = sorted({1, *(connections(level, count) for level in levels)})
        ceilings = calibration.calibrate(shape, streams)
        figures += ceiling_figures(shape, ceilings)
        if shape.name == "far":
            far_ceiling = ceilings[1]
        with harness.temporary_layers(count, size) as files:
            for kind in plan.kinds:
                sweep = push_sweep(shape, kind, files, levels, plan.repeats)
                figures += sweep_figures(sweep, ceilings)
    if plan.chunk_cost:
        far = SHAPES["far"]
        if far_ceiling is None:
            far_ceiling = calibration.calibrate(far, [1])[1]
        figures += chunk_cost(far, far_ceiling, plan.quick)
    return figures


def check_measured_code() -> None:
    """The pushes must run this checkout's uploaderd, not another in the environment."""
    found = subprocess.run(
        [sys.executable, "-c", "import uploaderd; print(uploaderd.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env=harness.push_environment(),
        cwd=tempfile.gettempdir(),
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(record.REPO_ROOT):
        raise BenchmarkError(
            f"the pushes would import {found}, not {record.REPO_ROOT}/uploaderd; "
            f"run with PYTHONPATH={record.REPO_ROOT}"
        )


def measured_commit(default: str) -> str:
    """The commit of the uploaderd measured; the benchmarks' own files may be newer."""
    del default
    root = record.REPO_ROOT
    head = _git(root, "rev-parse", "--short", "HEAD")
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no", "--", "uploaderd")
    return f"{head}+dirty" if dirty else head


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def accepts_auto() -> bool:
    """Tries ``--concurrency auto`` on a 1 KiB layer, straight to a loopback registry."""
    with tempfile.TemporaryDirectory() as scratch, servers.local_registry() as registry:
        layer = Path(scratch) / "probe.tar"
        harness.write_random(layer, 1024)
        argv = push_argv("ecr", registry.url, "bench/auto-probe", "auto", [layer])
        return measure.run_measured(argv, harness.push_environment()).returncode == 0


@contextlib.contextmanager
def registry(kind: str) -> Iterator[str]:
    """A fresh registry of ``kind`` on loopback; yields its host:port."""
    if kind == "oci":
        with skopeo.distribution_registry() as host:
            yield host
    else:
        with servers.local_registry() as process:
            yield process.url.removeprefix("http://")


def push_argv(kind: str, url: str, repository: str, level: str, files: Sequence[Path]) -> list[str]:
    where = ["--registry", url, "--insecure-registry"] if kind == "oci" else ["--endpoint-url", url]
    return [
        harness.uploaderd_executable(),
        "push",
        *where,
        "--repository",
        repository,
        "--concurrency",
        level,
        "--memory-budget",
        BUDGET,
        "--json",
        *(str(path) for path in files),
    ]


def timed_push(
    kind: str, link: Emulator, repository: str, level: str, files: Sequence[Path]
) -> tuple[float, float]:
    """One push through ``link``: its own seconds and the emulator's CPU share meanwhile."""
    before = link.cpu_seconds()
    child = measure.run_measured(
        push_argv(kind, link.url, repository, level, files), harness.push_environment()
    )
    busy = (link.cpu_seconds() - before) / child.wall_seconds
    outcomes = harness.push_outcomes(child.stdout)
    own = SUMMARY_SECONDS.search(child.stderr)
    if child.returncode != 0 or outcomes.count("uploaded") != len(files) or own is None:
        raise BenchmarkError(
            f"{kind} push at concurrency {level} failed: rc {child.returncode}, "
            f"outcomes {outcomes}\n{child.stderr[-3000:]}"
        )
    return float(own.group(1)), busy


def push_sweep(
    shape: Shape, kind: str, files: Sequence[Path], levels: Sequence[str], repeats: int
) -> Sweep:
    sweep = Sweep(shape, kind, len(files), files[0].stat().st_size)
    with registry(kind) as host, calibration.emulator(shape, host) as link:
        for repeat in range(repeats):  # round-robin, so a noisy minute falls on every level
            for level in levels:
                repository = f"bench/{shape.name.lower()}-c{level}-{repeat}"
                seconds, busy = timed_push(kind, link, repository, level, files)
                sweep.seconds.setdefault(level, []).append(seconds)
                sweep.busy.setdefault(level, []).append(busy)
                print(
                    f"  {shape.name} {kind} concurrency {level}: {seconds:.2f} s, "
                    f"emulator CPU {busy:.0%}",
                    flush=True,
                )
    return sweep


def ceiling_figures(shape: Shape, ceilings: dict[int, Ceiling]) -> list[Figure]:
    single = ceilings[1]
    nominal = shape.rate / MIB if shape.rate else single.mib_per_s
    record.print_table(
        f"network: the {shape.describe()} link, curl PUTs through it",
        [
            (
                f"{n} connection{'s' if n > 1 else ''}",
                f"{c.mib_per_s:.1f} MiB/s ({c.mib_per_s / n:.1f} each; fixed cost "
                f"{c.fixed_seconds:.2f} s a transfer; emulator CPU {c.emulator_busy:.0%})",
            )
            for n, c in ceilings.items()
        ],
    )
    return [
        Figure(
            NAME,
            f"{shape.name}: curl ceiling MiB/s, 1 connection vs nominal cap",
            single.mib_per_s,
            nominal,
            "-",
            True,
        )
    ] + [
        Figure(
            NAME,
            f"{shape.name}: curl ceiling MiB/s, {n} connections vs 1",
            c.mib_per_s,
            single.mib_per_s,
            "-",
            True,
        )
        for n, c in ceilings.items()
        if n > 1
    ]


def sweep_figures(sweep: Sweep, ceilings: dict[int, Ceiling]) -> list[Figure]:
    shape, kind = sweep.shape, sweep.kind
    what = f"{sweep.layers} x {sweep.layer_size // MIB} MiB"
    rows, figures = [], []
    for level, seconds in sweep.seconds.items():
        ceiling = ceilings[sweep.connections(level)].mib_per_s
        rate = sweep.rate(level)
        rows.append(
            (
                f"concurrency {level}",
                f"{rate:.1f} MiB/s = {rate / ceiling:.2f} x ceiling {ceiling:.1f} "
                f"({sweep.connections(level)} conn.); runs "
                + ", ".join(f"{s:.2f}" for s in seconds)
                + f" s; emulator CPU {statistics.median(sweep.busy[level]):.0%}",
            )
        )
        figures.append(
            Figure(
                NAME,
                f"{shape.name} {kind}: {what} at concurrency {level}, MiB/s (as the push "
                f"times itself) vs curl ceiling over {sweep.connections(level)} connection(s)",
                rate,
                ceiling,
                "-",
                True,
            )
        )
    if "1" in sweep.seconds and "4" in sweep.seconds:
        ratio = sweep.rate("4") / sweep.rate("1")
        rows.append(("concurrency 4 vs 1", f"{ratio:.2f}"))
        figures.append(
            Figure(
                NAME,
                f"{shape.name} {kind}: {what}, MiB/s at concurrency 4 vs concurrency 1",
                sweep.rate("4"),
                sweep.rate("1"),
                "-",
                True,
            )
        )
    record.print_table(f"network: {shape.name}, {kind} registry, {what}", rows)
    return figures


def chunk_cost(far: Shape, ceiling: Ceiling, quick: bool) -> list[Figure]:
    size = (QUICK_CHUNK_LAYER_MIB if quick else CHUNK_LAYER_MIB) * MIB
    runs = []
    with (
        harness.temporary_layers(1, size) as files,
        registry("oci") as host,
        calibration.emulator(far, host) as link,
    ):
        for repeat in range(CHUNK_REPEATS):
            seconds, _ = timed_push("oci", link, f"bench/chunk-{repeat}", "1", files)
            runs.append(seconds)
    actual = statistics.median(runs)
    ideal = size / MIB / ceiling.mib_per_s + 3 * far.rtt
    lost = 1 - ideal / actual
    record.print_table(
        f"network: chunk cost, 1 x {size // MIB} MiB to the OCI registry over {far.describe()}",
        [
            ("push s", f"{actual:.2f} (runs " + ", ".join(f"{s:.2f}" for s in runs) + ")"),
            ("ideal s", f"{ideal:.2f} ({ceiling.mib_per_s:.2f} MiB/s ceiling + 3 RTT)"),
            ("lost", f"{lost:.1%} (target <= {CHUNK_TARGET_LOST:.0%})"),
        ],
    )
    return [
        Figure(
            NAME,
            f"far oci: 1 x {size // MIB} MiB at concurrency 1, push s (median of "
            f"{CHUNK_REPEATS}) vs ideal s (MiB / 1-connection ceiling + 3 RTT); "
            f"lost {lost:.1%}",
            actual,
            ideal,
            f"lost <= {CHUNK_TARGET_LOST:.0%}",
            lost <= CHUNK_TARGET_LOST,
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.network", description=__doc__)
    parser.add_argument("--shape", nargs="+", default=list(SHAPES), help=", ".join(SHAPES))
    parser.add_argument("--concurrency", nargs="+", default=list(LEVELS), help="levels, or auto")
    parser.add_argument("--registry", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--repeats", type=int, default=1, help="pushes per level (median)")
    parser.add_argument("--quick", action="store_true", help="small layers, for a smoke run")
    parser.add_argument("--no-chunk-cost", action="store_true", help="skip the chunk cost")
    parser.add_argument("--chunk-cost-only", action="store_true", help="only the chunk cost")
    parser.add_argument("--no-record", action="store_true", help="print, append nothing")
    options = parser.parse_args(args)
    try:
        shapes = tuple(shape_named(name) for name in options.shape)
    except ValueError as exc:
        parser.error(str(exc))
    plan = Plan(
        () if options.chunk_cost_only else shapes,
        tuple(options.concurrency),
        tuple(options.registry),
        options.repeats,
        options.quick,
        not options.no_chunk_cost,
    )
    path = os.environ.get("PYTHONPATH")
    prefix = [f"PYTHONPATH={path}"] if path else []  # it chooses the uploaderd measured
    command = shlex.join([*prefix, "python", "-m", "benchmarks.network", *args])
    commit = measured_commit("")
    figures = measure_plan(plan)
    if not options.no_record:
        record.append_results(figures, command, commit)
        print(f"\nrecorded in {record.RESULTS_PATH} (commit {commit})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
