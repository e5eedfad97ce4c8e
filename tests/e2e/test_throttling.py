"""``--ecr-quota-share``: a host kept under the registry's rate meets no ThrottlingException.

The local registry throttles each layer-push operation above a rate
(``throttle-above=OPERATION:RATE``, a token bucket on the server's side, as
ECR's per-action quotas are); the real ``uploaderd push`` is given a share
whose rates (ECR's quotas x share) are below those.  Judged on the server's
side: it injected no throttle, and it holds every layer, byte for byte.  The
same push without the share meets throttles, so the check can fail.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.e2e.conftest import RegistryProcess, push, running_registry
from tests.e2e.daemon import start_daemon
from tests.helpers import make_layer

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
LAYERS = 6
#: The registry's rates; the share of 0.01 gives 5, 1 and 1 per second (ECR's 500, 100, 100).
REGISTRY_RATES = (
    "throttle-above=UploadLayerPart:10",
    "throttle-above=InitiateLayerUpload:2",
    "throttle-above=CompleteLayerUpload:2",
)
SHARE = "0.01"


def throttled_registry(storage: Path) -> AbstractContextManager[RegistryProcess]:
    options = ["--auto-create-repositories"]
    for spec in REGISTRY_RATES:
        options += ["--fault", spec]
    return running_registry(storage, *options)


def throttles(registry: RegistryProcess) -> int:
    return int(registry.stats()["faults_injected"].get("throttle-above", 0))


def test_a_share_under_the_registrys_rate_meets_no_throttling(tmp_path: Path) -> None:
    layers = [make_layer(tmp_path / "layers", f"l{i}", 1 * MIB + i) for i in range(LAYERS)]
    with throttled_registry(tmp_path / "registry") as registry:
        run = push(
            registry.url,
            "fleet/app",
            *(path for path, _ in layers),
            options=("--concurrency", str(LAYERS), "--ecr-quota-share", SHARE),
        )
        assert run.returncode == 0, run.stderr
        assert throttles(registry) == 0, registry.stats()["faults_injected"]
        assert [r["outcome"] for r in run.records] == ["uploaded"] * LAYERS
        for path, digest in layers:
            stored = registry.fetch_layer("fleet/app", digest)
            assert hashlib.sha256(stored).hexdigest() == digest.removeprefix("sha256:")
            assert stored == path.read_bytes()


def test_without_the_share_the_same_push_is_throttled(tmp_path: Path) -> None:
    """The control: six InitiateLayerUpload at once against a bucket of two."""
    layers = [make_layer(tmp_path / "layers", f"l{i}", 1 * MIB + i) for i in range(LAYERS)]
    with throttled_registry(tmp_path / "registry") as registry:
        run = push(
            registry.url,
            "fleet/app",
            *(path for path, _ in layers),
            options=("--concurrency", str(LAYERS)),
        )
        assert run.returncode == 0, run.stderr  # retried through, but throttled on the way
        assert throttles(registry) > 0


def test_the_daemon_counts_the_throttles_botocore_retried_on_its_own(tmp_path: Path) -> None:
    """botocore retries a throttle itself and answers as if nothing happened, so the
    engine's own retry counter never sees it; ``uploaderd_client_retries_total`` does."""
    with throttled_registry(tmp_path / "registry") as registry:
        daemon = start_daemon(tmp_path, registry.url, "--concurrency", str(LAYERS))
        try:
            for i in range(LAYERS):
                make_layer(daemon.watch / "fleet/app", f"l{i}.tar", 1 * MIB + i)
            daemon.wait_until(lambda: len(daemon.done_files()) == LAYERS, 60, "all in done/")
            assert daemon.failed_files() == []
            injected = throttles(registry)
            assert injected > 0
            client = daemon.metric_sum("uploaderd_client_retries_total")
            engine = daemon.metric_sum("uploaderd_retries_total", reason="ThrottlingException")
            # Every throttle is counted once: by botocore's retries, or by the engine's.
            assert client > 0
            assert client + engine == injected
        finally:
            assert daemon.stop() == 0
