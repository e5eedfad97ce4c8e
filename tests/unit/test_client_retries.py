"""Throttles botocore retried on its own still reach the layer limit and are counted.

botocore (adaptive retry mode, uploaderd's default) answers a throttled
UploadLayerPart by retrying it, and returns the final answer as if nothing
had happened: the engine sees no failure.  The real aiobotocore client
against the local registry throttling above a rate shows that each such
retry is reported (``Registry.client_retries``) and halves an adaptive limit,
and that the limit hears each refused attempt as it is answered, before the
call that botocore retried has returned.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_layer
from uploaderd.engine.retry import RetryPolicy
from uploaderd.engine.scheduler import EngineSettings, UploadEngine
from uploaderd.model import LayerJob, Outcome
from uploaderd.registry.ecr import EcrSettings, open_ecr_registry
from uploaderd.sizes import MIB
from uploaderd.testing import running_local_registry


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)


async def test_a_throttle_botocore_retried_is_told_to_the_limit_and_counted(
    tmp_path: Path,
) -> None:
    paths = [make_layer(tmp_path, f"layer{i}.tar", 6 * MIB)[0] for i in range(8)]
    reported: list[int] = []
    refusals: list[int] = []  # the calls already answered when each refusal was told
    settings = EngineSettings(
        concurrency=None,  # auto
        max_concurrency=8,
        memory_budget=256 * MIB,
        part_size=5 * MIB,
        retry=RetryPolicy(max_attempts=8),
        overlap_threshold=1 << 62,
    )
    async with running_local_registry(
        tmp_path / "storage",
        auto_create_repositories=True,
        faults=("throttle-above=UploadLayerPart:4",),
    ) as local:
        ecr = EcrSettings(region="us-east-1", endpoint_url=local.url)
        async with open_ecr_registry(ecr) as registry:
            registry.client_retries.listen(reported.append)
            registry.client_retries.listen_refusals(lambda: refusals.append(len(reported)))
            engine = UploadEngine(registry, settings)
            started_at = engine.limit.current
            results = await engine.push_all([LayerJob(path, "team/app") for path in paths])
            limit_after = engine.limit.current
        throttled = local.app.stats.faults_injected["throttle-above"]
    assert [r.outcome for r in results] == [Outcome.UPLOADED] * 8
    assert throttled > 0
    # Every throttle was retried by botocore itself (none reached the engine's policy)...
    assert sum(reported) == throttled
    # ...each refusal was heard as it came, before the retried call's final answer...
    assert len(refusals) == throttled
    assert refusals[0] == 0
    assert all(r.attempts == 1 for r in results)
    # ...and still halved the adaptive limit, which no engine retry could have done.
    assert limit_after < started_at
