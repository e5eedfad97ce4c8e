"""``skopeo``: uploaderd against skopeo, doing the same work to the same kind of registry.

An OCI image layout of four incompressible, uncompressed layers is pushed to the CNCF
distribution registry (Debian's ``docker-registry``) by ``skopeo copy --preserve-digests
oci:... docker://...`` and by ``uploaderd push --image ... --registry ...``. Without
``--preserve-digests`` skopeo gzips each uncompressed layer on the way (random bytes, so
for nothing), and the comparison measured gzip; with it both send the same bytes and
produce the same digests. Each push gets a fresh registry with empty storage, so nothing
is skipped; the two tools run as a pair in each round, their order alternating, and the
figures are the medians of ``ROUNDS`` rounds.

It runs on loopback, and on the "WAN" shape through the link emulator (``linkemu``, its
own process), where both are bound by four 16 MiB/s connections and CPU is what differs.
Each tool's CPU is its own process's user+sys seconds (``wait4``, ``measure``), which
the registry and the emulator beside it do not touch; CPU per GiB is the figure that says
what a push takes from the builds on its host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks import calibration, harness, measure, record
from benchmarks.harness import GIB, MIB, BenchmarkError
from benchmarks.linkemu import SHAPES, Shape
from benchmarks.measure import ChildRun
from benchmarks.record import Figure
from uploaderd.testing import free_port

NAME = "skopeo"
LAYERS = 4
DEFAULT = "auto"
"""uploaderd's default concurrency, which is what the issue judges: pushed with no
``--concurrency`` at all, as a new user would."""
#: (setting, shape or None for plain loopback, full layer size, quick layer size, the
#: uploaderd concurrencies compared, the target for the default). skopeo 1.9.3 sends an
#: OCI layout's layers one after another, on one connection; over "WAN" uploaderd at
#: concurrency 1 is compared too, the same one connection, so that figure is the
#: protocol's cost rather than the parallelism (no target).
SETTINGS: tuple[tuple[str, Shape | None, int, int, tuple[str, ...], float], ...] = (
    ("loopback", None, 256 * MIB, 32 * MIB, (DEFAULT,), 1.3),
    ("WAN", SHAPES["WAN"], 128 * MIB, 16 * MIB, (DEFAULT, "1"), 2.0),
)
ROUNDS = 3
QUICK_ROUNDS = 1
TAG = "bench"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BenchmarkError(f"{name} is not installed; apt-get install {package}")
    return found


def _digest_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(4 * MIB):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _put_blob(root: Path, data_path: Path) -> dict[str, object]:
    digest = _digest_of(data_path)
    size = data_path.stat().st_size
    data_path.rename(root / "blobs" / "sha256" / digest.removeprefix("sha256:"))
    return {"mediaType": LAYER_TYPE, "digest": digest, "size": size}


def _write_json_blob(root: Path, media_type: str, value: object) -> dict[str, object]:
    raw = json.dumps(value).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(raw)
    return {"mediaType": media_type, "digest": digest, "size": len(raw)}


def write_layout(root: Path, layer_size: int) -> None:
    """An OCI layout of ``LAYERS`` random layers, tagged ``TAG``."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    layers = []
    for index in range(LAYERS):
        scratch = root / f"layer{index}"
        harness.write_random(scratch, layer_size)
        layers.append(_put_blob(root, scratch))
    config = _write_json_blob(
        root,
        "application/vnd.oci.image.config.v1+json",
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        },
    )
    manifest = _write_json_blob(
        root,
        "application/vnd.oci.image.manifest.v1+json",
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers,
        },
    )
    manifest["annotations"] = {"org.opencontainers.image.ref.name": TAG}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [manifest]}))
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))


@contextmanager
def distribution_registry() -> Iterator[str]:
    """A fresh CNCF registry on loopback; yields host:port."""
    binary = _tool("docker-registry", "docker-registry")
    with tempfile.TemporaryDirectory(prefix="uploaderd-bench-registry-") as scratch:
        port = free_port()
        config = Path(scratch) / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {scratch}/data\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _await_registry(f"http://127.0.0.1:{port}/v2/", process)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def _await_registry(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # loopback
            return
        except (urllib.error.URLError, OSError):
            if process.poll() is not None:
                break
            time.sleep(0.05)
    raise BenchmarkError("docker-registry did not start")


def run(*, quick: bool) -> list[Figure]:
    skopeo = _tool("skopeo", "skopeo")
    figures = []
    for setting, shape, full_size, quick_size, levels, target in SETTINGS:
        layer_size = quick_size if quick else full_size
        harness.require_free_disk(3 * LAYERS * layer_size)
        contenders = [("skopeo", skopeo, "")] + [
            (f"uploaderd c{level}", harness.uploaderd_executable(), level) for level in levels
        ]
        runs: dict[str, list[ChildRun]] = {who: [] for who, _, _ in contenders}
        with tempfile.TemporaryDirectory(prefix="uploaderd-bench-image-") as scratch:
            layout = Path(scratch) / "layout"
            write_layout(layout, layer_size)
            for number in range(QUICK_ROUNDS if quick else ROUNDS):
                # Each round in a rotated order: no tool always runs first (or last).
                turn = number % len(contenders)
                for who, tool, level in contenders[turn:] + contenders[:turn]:
                    runs[who].append(_push(who, tool, level, layout, shape))
        for who, _, _ in contenders[1:]:
            judged = target if who == f"uploaderd c{DEFAULT}" else None
            figures += _figures(
                setting, LAYERS * layer_size, who, runs[who], runs["skopeo"], judged
            )
    return figures


def _push(who: str, tool: str, level: str, layout: Path, shape: Shape | None) -> ChildRun:
    """One push of ``layout`` by ``tool`` to a fresh registry, through ``shape`` if given."""
    with contextlib.ExitStack() as stack:
        direct = stack.enter_context(distribution_registry())
        host = direct
        if shape is not None:
            link = stack.enter_context(calibration.emulator(shape, direct))
            host = f"127.0.0.1:{link.port}"
        repository = f"bench/{who.replace(' ', '-')}"
        if who == "skopeo":
            argv = [
                tool,
                "--insecure-policy",
                "copy",
                "--preserve-digests",
                "--dest-tls-verify=false",
                f"oci:{layout}:{TAG}",
                f"docker://{host}/{repository}:{TAG}",
            ]
        else:
            argv = [
                tool,
                "push",
                "--image",
                str(layout),
                "--repository",
                repository,
                "--registry",
                f"http://{host}",
                "--insecure-registry",
                "--json",
            ]
            if level != DEFAULT:
                argv += ["--concurrency", level]
        child = measure.run_measured(argv, harness.push_environment())
        if child.returncode != 0:
            raise BenchmarkError(f"{who} failed (rc {child.returncode}):\n{child.stderr[-3000:]}")
        _check_tagged(direct, repository)
    return child


def _check_tagged(host: str, repository: str) -> None:
    """The image must be there, tagged, or the run measured a failure."""
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{TAG}",
        method="HEAD",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()  # loopback
    except urllib.error.URLError as exc:
        raise BenchmarkError(f"{repository}:{TAG} is not in the registry: {exc}") from exc


def _figures(
    setting: str,
    total: int,
    who: str,
    ours_runs: list[ChildRun],
    their_runs: list[ChildRun],
    target: float | None,
) -> list[Figure]:
    """The figures of one uploaderd contender against skopeo; ``target`` None: none judged."""
    mib, gib = total / MIB, total / GIB
    theirs = statistics.median(mib / run.wall_seconds for run in their_runs)
    ours = statistics.median(mib / run.wall_seconds for run in ours_runs)
    their_cpu = statistics.median(run.cpu_seconds for run in their_runs) / gib
    our_cpu = statistics.median(run.cpu_seconds for run in ours_runs) / gib
    their_rss = max(run.peak_rss_bytes for run in their_runs) / MIB
    our_rss = max(run.peak_rss_bytes for run in ours_runs) / MIB
    rounds = ", ".join(
        f"{push.wall_seconds:.2f}/{copy.wall_seconds:.2f} s, "
        f"CPU {push.cpu_seconds:.2f}/{copy.cpu_seconds:.2f} s"
        for push, copy in zip(ours_runs, their_runs, strict=True)
    )
    record.print_table(
        f"skopeo: {setting}, an OCI layout of {total // MIB} MiB in {LAYERS} layers, "
        f"{who} vs skopeo, medians of {len(ours_runs)} rounds",
        [
            (f"{who} MiB/s", f"{ours:.1f}; CPU {our_cpu:.2f} s/GiB; peak RSS {our_rss:.0f} MiB"),
            (
                "skopeo MiB/s",
                f"{theirs:.1f}; CPU {their_cpu:.2f} s/GiB; peak RSS {their_rss:.0f} MiB",
            ),
            (
                "throughput ratio",
                f"{ours / theirs:.2f}" + (f" (target >= {target})" if target else ""),
            ),
            ("CPU per byte ratio", f"{our_cpu / their_cpu:.2f} (uploaderd / skopeo)"),
            ("rounds (uploaderd/skopeo)", rounds),
        ],
    )
    level = who.removeprefix("uploaderd c")
    flag = "(the default, auto)" if level == DEFAULT else f"--concurrency {level}"
    label = f"{setting}: uploaderd push --image {flag} vs skopeo copy --preserve-digests"
    return [
        Figure(
            NAME,
            f"{label}, MiB/s (median of {len(ours_runs)} rounds)",
            ours,
            theirs,
            f">= {target}" if target else "-",
            ours >= target * theirs if target else True,
        ),
        Figure(
            NAME,
            f"{label}, CPU-s per GiB (user+sys of each process, median)",
            our_cpu,
            their_cpu,
            "-",
            True,
        ),
        Figure(NAME, f"{label}, peak RSS MiB (highest round)", our_rss, their_rss, "-", True),
    ]
