"""``uploaderd demo``: the whole job on one machine, so a newcomer sees it work.

It starts the embedded ECR-compatible registry on loopback, writes a few
sample layers, runs the real ``uploaderd push`` command against it, fetches
every layer back through GetDownloadUrlForLayer to check its digest, and
pushes again to show that layers already present are skipped.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import anyio.to_thread
from aiobotocore.session import get_session

from uploaderd.localregistry import LocalRegistry, LocalRegistryConfig
from uploaderd.parts import MIB

SAMPLE_LAYERS = {"base.tar": 25 * MIB + 17, "deps.tar": 12 * MIB, "app.tar": 3 * MIB, "tag.tar": 1}
REPOSITORY = "demo/app"
DEMO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIADEMOUPLOADERD",
    "AWS_SECRET_ACCESS_KEY": "demo-secret",  # the local registry checks no secret
    "AWS_REGION": "us-east-1",
}


def _write_samples(directory: Path) -> dict[Path, str]:
    layers = {}
    for name, size in SAMPLE_LAYERS.items():
        data = os.urandom(size)
        path = directory / name
        path.write_bytes(data)
        layers[path] = "sha256:" + hashlib.sha256(data).hexdigest()
    return layers


async def _run_push(url: str, files: list[Path]) -> int:
    command = [sys.executable, "-m", "uploaderd", "push", "--repository", REPOSITORY]
    command += ["--endpoint-url", url, *map(str, files)]
    print("$ uploaderd push --repository", REPOSITORY, "--endpoint-url", url, "...", flush=True)
    env = {**os.environ, **DEMO_CREDENTIALS}
    process = await anyio.run_process(
        command, env=env, stdout=None, stderr=subprocess.STDOUT, check=False
    )
    return process.returncode


async def _verify(url: str, layers: dict[Path, str]) -> bool:
    """Fetch every layer back the way an ECR user would and compare digests."""
    ok = True
    async with get_session().create_client(
        "ecr",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id=DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ) as client:
        for path, digest in layers.items():
            answer = await client.get_download_url_for_layer(
                repositoryName=REPOSITORY, layerDigest=digest
            )
            data = await anyio.to_thread.run_sync(_download, answer["downloadUrl"])
            fetched = "sha256:" + hashlib.sha256(data).hexdigest()
            verdict = "verified" if fetched == digest else "MISMATCH"
            ok &= fetched == digest
            print(f"{verdict:<9} {path.name:<9} {len(data):>9} bytes {fetched}", flush=True)
    return ok


def _download(url: str) -> bytes:
    import urllib.request  # noqa: PLC0415  # only the demo downloads

    with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310  # loopback URL
        data: bytes = answer.read()
        return data


async def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="uploaderd-demo-") as scratch:
        root = Path(scratch)
        layers_dir = root / "layers"
        layers_dir.mkdir()
        config = LocalRegistryConfig(storage=root / "registry", auto_create_repositories=True)
        async with LocalRegistry(config) as registry:
            print(f"local ECR-compatible registry on {registry.url}", flush=True)
            layers = await anyio.to_thread.run_sync(_write_samples, layers_dir)
            print(f"wrote {len(layers)} sample layers in {layers_dir}\n", flush=True)
            first = await _run_push(registry.url, list(layers))
            print("\nfetching every layer back through GetDownloadUrlForLayer:", flush=True)
            verified = await _verify(registry.url, layers)
            print("\npushing again: every layer is already present, no part is sent", flush=True)
            second = await _run_push(registry.url, list(layers))
    return 0 if first == 0 and second == 0 and verified else 1
