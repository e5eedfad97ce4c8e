"""``small``: what does each layer cost the daemon beyond its bytes?

Many 64 KiB layers are renamed into the spool at once, as a build that produced them
would; the clock runs from just before the first rename to the last file's arrival in
done/ (the mtime of the done/ directory, which every move into it sets, so the end is
not rounded up to a polling interval). The reference is ``uploaderd push`` of one
128 MiB layer to the same registry in the same run, at the layer's own seconds (hash
and upload, without process start-up): the ratio of the two MiB/s is the share of
time the small layers spend on bytes rather than on per-layer work (journal, checks,
four requests, the move to done/).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from benchmarks import daemon, harness, measure, record, servers
from benchmarks.harness import GIB, MIB, BenchmarkError
from benchmarks.record import Figure

NAME = "small"
FULL_LAYERS = 2000
QUICK_LAYERS = 200
LAYER_SIZE = 64 * 1024
BIG_LAYER_SIZE = 128 * MIB
CONCURRENCY = 4
BUDGET = "256MiB"
REPOSITORY = "bench/small"
#: A generous floor, so the deadline only catches a run that is stuck.
SLOWEST_LAYERS_PER_S = 2.0


def run(*, quick: bool) -> list[Figure]:
    count = QUICK_LAYERS if quick else FULL_LAYERS
    harness.require_free_disk(2 * (count * LAYER_SIZE + BIG_LAYER_SIZE) + GIB)
    with (
        servers.local_registry() as registry,
        tempfile.TemporaryDirectory(prefix="uploaderd-bench-small-") as directory,
    ):
        root = Path(directory)
        big_seconds, big_wall = _push_big(root / "big.tar", registry.url)
        staged = daemon.stage_random_files(root / "staging", count, LAYER_SIZE)
        options = ("--concurrency", str(CONCURRENCY), "--memory-budget", BUDGET)
        with daemon.running_daemon(root, registry.url, *options) as process:
            first_rename = daemon.rename_into(staged, process.watch / REPOSITORY)
            process.wait_until(
                lambda: process.done_count(REPOSITORY) == count,
                what=f"pushing {count} small layers",
                timeout=120 + count / SLOWEST_LAYERS_PER_S,
                interval=0.05,
                progress=lambda: process.done_count(REPOSITORY),
            )
            observed = time.time() - first_rename
            last_done = (process.state_dir / "done" / REPOSITORY).stat().st_mtime
            ended = process.stop()
        completed = servers.completed_layers(registry.stats())
    if ended.returncode != 0 or completed != count + 1:
        raise BenchmarkError(
            f"small: daemon rc {ended.returncode}, registry completed {completed} of "
            f"{count + 1} layers"
        )
    seconds = last_done - first_rename
    layers_per_s = count / seconds
    small_mib_s = count * LAYER_SIZE / MIB / seconds
    big_mib_s = BIG_LAYER_SIZE / MIB / big_seconds
    record.print_table(
        f"small: {count} x {LAYER_SIZE // 1024} KiB through the daemon (concurrency "
        f"{CONCURRENCY}) vs 1 x {BIG_LAYER_SIZE // MIB} MiB through uploaderd push",
        [
            (
                "daemon layers/s",
                f"{layers_per_s:.1f} ({seconds:.2f} s first rename -> last in done/; "
                f"seen by polling after {observed:.2f} s)",
            ),
            ("daemon MiB/s equivalent", f"{small_mib_s:.2f}"),
            (
                "push MiB/s, one big layer",
                f"{big_mib_s:.1f} ({big_seconds:.2f} s for the layer, "
                f"{big_wall:.2f} s with process start-up)",
            ),
            ("MiB/s small / big", f"{small_mib_s / big_mib_s:.3f}"),
            ("per-layer cost", f"{1000 / layers_per_s:.1f} ms of wall time per layer"),
        ],
    )
    layers_per_big_mib = MIB / LAYER_SIZE
    return [
        Figure(
            NAME,
            f"daemon MiB/s, {count} x 64 KiB layers, vs push MiB/s, 1 x 128 MiB layer",
            small_mib_s,
            big_mib_s,
            "-",
            True,
        ),
        Figure(
            NAME,
            f"daemon layers/s, {count} x 64 KiB layers, vs 64 KiB layers/s at the push's MiB/s",
            layers_per_s,
            big_mib_s * layers_per_big_mib,
            "-",
            True,
        ),
    ]


def _push_big(path: Path, endpoint_url: str) -> tuple[float, float]:
    """The layer's own seconds (from ``--json``) and the push process's wall seconds."""
    harness.write_random(path, BIG_LAYER_SIZE)
    argv = harness.push_argv(
        [path],
        repository="bench/big",
        endpoint_url=endpoint_url,
        concurrency=CONCURRENCY,
        memory_budget=BUDGET,
    )
    child = measure.run_measured(argv, harness.push_environment(), timeout=600)
    path.unlink()
    records = [json.loads(line) for line in child.stdout.splitlines() if line.strip()]
    if child.returncode != 0 or [r["outcome"] for r in records] != ["uploaded"]:
        raise BenchmarkError(
            f"small: push of the {BIG_LAYER_SIZE // MIB} MiB reference layer failed: "
            f"rc {child.returncode}, {records}\n{child.stderr[-4000:]}"
        )
    return float(records[0]["seconds"]), child.wall_seconds
