"""``skopeo``: uploaderd against skopeo, pushing the same image to the same kind of registry.

An OCI image layout of four incompressible layers is pushed to the CNCF
distribution registry (Debian's ``docker-registry``) on loopback twice, each
time to a freshly started registry with empty storage so nothing is skipped:
once by ``skopeo copy oci:... docker://...``, once by ``uploaderd push --image
... --registry ...``.  The figure is uploaderd's MiB/s over skopeo's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks import harness, measure, record
from benchmarks.harness import MIB, BenchmarkError
from benchmarks.record import Figure

NAME = "skopeo"
LAYERS = 4
FULL_LAYER_SIZE = 256 * MIB
QUICK_LAYER_SIZE = 32 * MIB
CONCURRENCY = 4
TARGET = 1.3
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
        port = harness.free_port()
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
    layer_size = QUICK_LAYER_SIZE if quick else FULL_LAYER_SIZE
    harness.require_free_disk(3 * LAYERS * layer_size)
    skopeo = _tool("skopeo", "skopeo")
    total_mib = LAYERS * layer_size / MIB
    with tempfile.TemporaryDirectory(prefix="uploaderd-bench-image-") as scratch:
        layout = Path(scratch) / "layout"
        write_layout(layout, layer_size)
        with distribution_registry() as host:
            copy = measure.run_measured(
                [
                    skopeo,
                    "--insecure-policy",
                    "copy",
                    "--dest-tls-verify=false",
                    f"oci:{layout}:{TAG}",
                    f"docker://{host}/bench/skopeo:{TAG}",
                ],
                harness.push_environment(),
            )
        with distribution_registry() as host:
            push = measure.run_measured(
                [
                    harness.uploaderd_executable(),
                    "push",
                    "--image",
                    str(layout),
                    "--repository",
                    "bench/uploaderd",
                    "--registry",
                    f"http://{host}",
                    "--insecure-registry",
                    "--concurrency",
                    str(CONCURRENCY),
                    "--json",
                ],
                harness.push_environment(),
            )
    for who, child in (("skopeo copy", copy), ("uploaderd push", push)):
        if child.returncode != 0:
            raise BenchmarkError(f"{who} failed (rc {child.returncode}):\n{child.stderr[-3000:]}")
    ours, theirs = total_mib / push.wall_seconds, total_mib / copy.wall_seconds
    record.print_table(
        f"skopeo: an OCI layout of {LAYERS} x {layer_size // MIB} MiB to docker-registry",
        [
            (
                "uploaderd MiB/s",
                f"{ours:.1f} ({push.wall_seconds:.2f} s, "
                f"peak RSS {push.peak_rss_bytes / MIB:.0f} MiB)",
            ),
            (
                "skopeo MiB/s",
                f"{theirs:.1f} ({copy.wall_seconds:.2f} s, "
                f"peak RSS {copy.peak_rss_bytes / MIB:.0f} MiB)",
            ),
            ("ratio", f"{ours / theirs:.2f} (target >= {TARGET})"),
        ],
    )
    return [
        Figure(
            NAME,
            "uploaderd MiB/s vs skopeo copy MiB/s",
            ours,
            theirs,
            f">= {TARGET}",
            ours >= TARGET * theirs,
        ),
        Figure(
            NAME,
            "uploaderd peak RSS MiB vs skopeo peak RSS MiB",
            push.peak_rss_bytes / MIB,
            copy.peak_rss_bytes / MIB,
            "-",
            True,
        ),
    ]
