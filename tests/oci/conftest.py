"""The real CNCF distribution registry (``docker-registry``) and skopeo, on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import PushRun, RegistryProcess, running_registry, uploaderd_env
from tests.helpers import digest_of, layer_tar
from uploaderd.testing import free_port

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
HTPASSWD = shutil.which("htpasswd")
USER, PASSWORD = "builder", "s3cret-pass"
# Without these, distribution answers 404 for an OCI manifest (it would convert to schema 1),
# and answers for an index with its linux/amd64 manifest instead.
ACCEPT = (
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json"
)

needs_tools = pytest.mark.skipif(
    REGISTRY is None or SKOPEO is None,
    reason="needs docker-registry and skopeo (Debian packages; .ci/run installs them)",
)


@dataclass
class OciRegistryProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def requests(self, method: str) -> int:
        """How many requests of ``method`` the registry's access log shows."""
        return self.log.read_text().count(f'"{method} /v2/')

    def get(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{self.url}{path}", headers={"Accept": ACCEPT})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""


def start_oci_registry(directory: Path, *, htpasswd: Path | None = None) -> OciRegistryProcess:
    port = free_port()
    auth = (
        f"auth:\n  htpasswd:\n    realm: uploaderd-test\n    path: {htpasswd}\n" if htpasswd else ""
    )
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    log = directory / "registry.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(REGISTRY), "serve", str(config)], stdout=out, stderr=out)
    server = OciRegistryProcess(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{server.url}/v2/", timeout=1).close()
            return server
        except urllib.error.HTTPError:
            return server  # 401: up, and asking for credentials
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")


def _stop(server: OciRegistryProcess) -> None:
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture
def oci_registry(tmp_path: Path) -> Iterator[OciRegistryProcess]:
    directory = tmp_path / "oci-registry"
    directory.mkdir()
    server = start_oci_registry(directory)
    yield server
    _stop(server)


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[OciRegistryProcess]:
    if HTPASSWD is None:
        pytest.skip("needs htpasswd (apache2-utils) for bcrypt entries")
    directory = tmp_path / "auth-registry"
    directory.mkdir()
    entry = subprocess.run(
        [HTPASSWD, "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
    ).stdout
    htpasswd = directory / "htpasswd"
    htpasswd.write_text(entry)
    server = start_oci_registry(directory, htpasswd=htpasswd)
    yield server
    _stop(server)


@pytest.fixture
def ecr_registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    """``uploaderd local-registry``: the ECR-compatible one, for images pushed through PutImage."""
    with running_registry(tmp_path / "ecr-registry", "--auto-create-repositories") as server:
        yield server


def uploaderd_push(
    *args: str, env: dict[str, str] | None = None, home: Path | None = None
) -> PushRun:
    extra = dict(env or {})
    # Never pick up the developer's own docker credentials.
    extra["DOCKER_CONFIG"] = str(home) if home else "/nonexistent/uploaderd-tests"
    done = subprocess.run(
        [sys.executable, "-m", "uploaderd", "push", "--json", *args],
        capture_output=True,
        text=True,
        env=uploaderd_env(**extra),
        timeout=120,
        check=False,
    )
    return PushRun(done.returncode, done.stdout, done.stderr)


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SKOPEO), "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Layout:
    """An OCI image layout written by hand, and what it holds."""

    root: Path
    manifest: bytes
    config: bytes
    layers: list[bytes]

    @property
    def manifest_digest(self) -> str:
        return digest_of(self.manifest)

    def blob(self, data: bytes) -> Path:
        return self.root / "blobs" / "sha256" / digest_of(data).removeprefix("sha256:")


LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"


def write_layout(
    root: Path,
    layer_sizes: list[int],
    tag: str = "v1",
    *,
    layer_type: str = LAYER_TYPE,
) -> Layout:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layers = [layer_tar(size) for size in layer_sizes]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer) for layer in layers]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": layer_type, "digest": digest_of(layer), "size": len(layer)}
                for layer in layers
            ],
        }
    ).encode()
    for data in (config, manifest, *layers):
        (blobs / digest_of(data).removeprefix("sha256:")).write_bytes(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest_of(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return Layout(root, manifest, config, layers)
