"""``uploaderd demo``: the main job on one machine, so a newcomer sees it work.

It starts the embedded ECR-compatible registry on loopback, starts the real
``uploaderd run`` daemon on a temporary spool, drops sample layers into it
the way a build system does (write, then rename), waits for them to land in
``done/``, fetches every layer back through GetDownloadUrlForLayer to check
its digest, shows the daemon's metrics and ``uploaderd status``, and stops
the daemon with SIGTERM.  Then ``uploaderd push`` of the same files shows
that layers already present are skipped without sending a byte.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import anyio
import anyio.to_thread
from anyio.abc import Process

from uploaderd.sizes import MIB
from uploaderd.testing import ecr_client, free_port, running_local_registry

SAMPLE_LAYERS = {
    "demo/app": {"base.tar": 25 * MIB + 17, "deps.tar": 12 * MIB},
    "demo/tools": {"app.tar": 3 * MIB, "tag.tar": 1},
}
DEMO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIADEMOUPLOADERD",
    "AWS_SECRET_ACCESS_KEY": "demo-secret",  # the local registry checks no secret
    "AWS_REGION": "us-east-1",
}
UPLOADERD = [sys.executable, "-m", "uploaderd"]


def _drop_samples(spool: Path) -> dict[tuple[str, str], str]:
    """Write each layer under a hidden name, then rename it into place."""
    digests = {}
    for repository, layers in SAMPLE_LAYERS.items():
        directory = spool / repository
        directory.mkdir(parents=True, exist_ok=True)
        for name, size in layers.items():
            data = os.urandom(size)
            (directory / f".{name}.tmp").write_bytes(data)
            (directory / f".{name}.tmp").rename(directory / name)
            digests[(repository, name)] = "sha256:" + hashlib.sha256(data).hexdigest()
    return digests


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310  # loopback URL
        data: bytes = answer.read()
        return data


async def _verify(url: str, digests: dict[tuple[str, str], str]) -> bool:
    """Fetch every layer back the way an ECR user would and compare digests."""
    ok = True
    async with ecr_client(url) as client:
        for (repository, name), digest in digests.items():
            answer = await client.get_download_url_for_layer(
                repositoryName=repository, layerDigest=digest
            )
            data = await anyio.to_thread.run_sync(_get, answer["downloadUrl"])
            fetched = "sha256:" + hashlib.sha256(data).hexdigest()
            ok &= fetched == digest
            verdict = "verified" if fetched == digest else "MISMATCH"
            print(f"  {verdict:<9} {repository}/{name:<9} {len(data):>9} bytes {fetched}")
    return ok


async def _wait_for_done(state: Path, count: int, daemon: Process) -> bool:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and daemon.returncode is None:
        done = [p for p in (state / "done").rglob("*") if p.is_file()]
        if len(done) == count:
            return True
        await anyio.sleep(0.2)
    return False


def _show_metrics(metrics_url: str) -> None:
    text = _get(f"{metrics_url}/metrics").decode()
    wanted = (
        "uploaderd_uploaded_bytes_total{",
        "uploaderd_layers_total{",
        "uploaderd_queue_files ",
    )
    for line in text.splitlines():
        if line.startswith(wanted):
            print("  " + line)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Start the embedded ECR-compatible registry, push sample layers with "
        "'uploaderd push', fetch them back and check their digests."
    )


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="uploaderd-demo-") as scratch:
        root = Path(scratch)
        spool, state = root / "spool", root / "state"
        spool.mkdir()
        env = {**os.environ, **DEMO_CREDENTIALS}
        storage = root / "registry"
        async with running_local_registry(storage, auto_create_repositories=True) as registry:
            print(f"local ECR-compatible registry on {registry.url}")
            metrics_url = f"http://127.0.0.1:{free_port()}"
            command = [
                *UPLOADERD,
                "run",
                "--watch",
                str(spool),
                "--state-dir",
                str(state),
                "--endpoint-url",
                registry.url,
                "--settle-seconds",
                "0.5",
                "--metrics-address",
                metrics_url.removeprefix("http://"),
            ]
            print("$ uploaderd run --watch", spool, "--state-dir", state, "...\n", flush=True)
            daemon = await anyio.open_process(command, env=env, stdout=None, stderr=None)
            try:
                await anyio.sleep(1.5)
                digests = await anyio.to_thread.run_sync(_drop_samples, spool)
                print(f"\ndropped {len(digests)} sample layers into {spool}\n", flush=True)
                finished = await _wait_for_done(state, len(digests), daemon)
                print(f"\n{'all' if finished else 'NOT all'} layers in {state / 'done'}")
                print("fetching every layer back through GetDownloadUrlForLayer:")
                verified = await _verify(registry.url, digests)
                print("\nfrom the daemon's /metrics:")
                await anyio.to_thread.run_sync(_show_metrics, metrics_url)
                print("\n$ uploaderd status --state-dir", state, flush=True)
                await anyio.run_process(
                    [*UPLOADERD, "status", "--state-dir", str(state)], stdout=None, check=False
                )
            finally:
                daemon.send_signal(signal.SIGTERM)
                stopped = await daemon.wait()
            print(f"\ndaemon stopped on SIGTERM, exit status {stopped}")
            done = sorted(p for p in (state / "done").rglob("*") if p.is_file())
            print("\n$ uploaderd push --repository demo/app ... (the same files again)", flush=True)
            again = await anyio.run_process(
                [
                    *UPLOADERD,
                    "push",
                    "--repository",
                    "demo/app",
                    "--endpoint-url",
                    registry.url,
                    *(str(p) for p in done if "demo/app" in str(p)),
                ],
                env=env,
                stdout=None,
                stderr=subprocess.STDOUT,
                check=False,
            )
    ok = finished and verified and stopped == 0 and again.returncode == 0
    print("\ndemo " + ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1
