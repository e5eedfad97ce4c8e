"""Request rates: the quota share's token buckets, the local registry's rate fault, Retry-After.

The buckets run on a clock the test moves and a sleep that moves it, so a
rate is checked as a count of tokens at exact instants, never as wall time.
The Retry-After test pushes a real layer over loopback to a tiny OCI
registry that answers 429 once; what it checks is the delay the retry
policy chose, as the engine's observer was told it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import anyio
import botocore.exceptions
import pytest
from aiohttp import web

from tests.helpers import make_layer
from uploaderd.engine.observer import SilentObserver
from uploaderd.engine.retry import RETRY_AFTER_JITTER, RetryPolicy
from uploaderd.engine.scheduler import EngineSettings, UploadEngine
from uploaderd.errors import ErrorCode, TransientRegistryError
from uploaderd.localregistry.faults import FaultKind, FaultPlan, RateBucket, parse_fault
from uploaderd.model import LayerJob, Outcome
from uploaderd.registry.choice import RegistryChoice, open_registry, quota_share
from uploaderd.registry.ecr import EcrSettings, open_ecr_registry
from uploaderd.registry.ecranswers import raise_client_error
from uploaderd.registry.quota import (
    ECR_PUBLIC_QUOTAS,
    ECR_QUOTAS,
    QuotaShare,
    TokenBucket,
    retry_after,
)
from uploaderd.sizes import MIB


class FakeTime:
    """A clock and a sleep that advances it: waiting costs no wall time."""

    def __init__(self) -> None:
        self.now = 500.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# --- the token bucket --------------------------------------------------------------------


def test_a_full_bucket_gives_its_burst_at_once_then_one_token_per_interval() -> None:
    clock = FakeTime()
    bucket = TokenBucket(rate=5, burst=5, clock=clock)
    assert [bucket.reserve() for _ in range(5)] == [0.0] * 5
    # The sixth is due when the bucket has refilled one token: 1/5 s; the seventh 2/5 s.
    assert bucket.reserve() == pytest.approx(0.2)
    assert bucket.reserve() == pytest.approx(0.4)


def test_the_rate_holds_over_time_and_idle_time_refills_only_up_to_the_burst() -> None:
    clock = FakeTime()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    for _ in range(3):
        bucket.reserve()
    clock.now += 1.0  # ten tokens' worth of time, but the bucket holds three
    assert bucket.tokens == pytest.approx(3)
    clock.now += 60.0
    assert bucket.tokens == pytest.approx(3)


async def test_waiters_are_served_in_order_at_exactly_the_rate() -> None:
    clock = FakeTime()
    bucket = TokenBucket(rate=4, burst=1, clock=clock, sleep=clock.sleep)
    granted: list[float] = []

    async def one() -> None:
        await bucket.take()
        granted.append(clock.now)

    for _ in range(9):
        await one()
    # One at once (the burst), then one every quarter second: 9 calls in 2 s, not more.
    assert granted[0] == 500.0
    assert granted[-1] == pytest.approx(502.0)
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert gaps == pytest.approx([0.25] * 8)


async def test_concurrent_waiters_reserve_successive_tokens() -> None:
    """Many layers waiting at once: each is told a later instant, none shares a token."""
    clock = FakeTime()
    bucket = TokenBucket(rate=2, burst=2, clock=clock)
    delays = [bucket.reserve() for _ in range(6)]
    assert delays == pytest.approx([0, 0, 0.5, 1.0, 1.5, 2.0])


async def test_a_cancelled_waiter_gives_its_token_back() -> None:
    clock = FakeTime()

    async def never(seconds: float) -> None:
        await anyio.sleep_forever()

    bucket = TokenBucket(rate=1, burst=1, clock=clock, sleep=never)
    bucket.reserve()
    with anyio.move_on_after(0.01):
        await bucket.take()
    assert bucket.tokens == pytest.approx(0)  # the cancelled reservation was returned


def test_burst_is_one_second_of_the_rate_but_at_least_one_token() -> None:
    assert TokenBucket.per_second(500).burst == 500
    assert TokenBucket.per_second(0.1).burst == 1  # PutImage at a share of 0.01
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(0, 1)


# --- the share ---------------------------------------------------------------------------


async def test_a_share_gives_each_action_its_fraction_of_the_quota() -> None:
    clock = FakeTime()
    share = QuotaShare.of(ECR_QUOTAS, 0.01, clock=clock)
    assert {a: b.rate for a, b in share.buckets.items()} == pytest.approx(
        {
            "BatchCheckLayerAvailability": 10,
            "InitiateLayerUpload": 1,
            "UploadLayerPart": 5,
            "CompleteLayerUpload": 1,
            "PutImage": 0.1,
        }
    )
    public = QuotaShare.of(ECR_PUBLIC_QUOTAS, 1.0, clock=clock)
    assert public.buckets["UploadLayerPart"].rate == 260
    assert public.buckets["CompleteLayerUpload"].rate == 10


async def test_actions_are_metered_apart_and_unknown_ones_not_at_all() -> None:
    clock = FakeTime()
    share = QuotaShare.of({"PutImage": 10.0, "UploadLayerPart": 500.0}, 0.1, clock=clock)
    share.buckets["PutImage"].reserve()  # PutImage's one token (1/s, burst 1) is used
    assert share.buckets["PutImage"].reserve() == pytest.approx(1.0)
    assert share.buckets["UploadLayerPart"].reserve() == 0.0  # its own bucket is full
    await share.take("DescribeRepositories")  # no quota: returns at once


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, "nan", "half", True, None])
def test_the_share_setting_is_a_fraction_above_zero_and_at_most_one(bad: object) -> None:
    with pytest.raises(ValueError, match=r"not a number|out of range"):
        quota_share(bad)


def test_the_share_setting_reads_numbers_and_strings() -> None:
    assert quota_share("0.01") == 0.01
    assert quota_share(1) == 1.0


async def test_a_share_with_an_oci_registry_is_refused() -> None:
    choice = RegistryChoice(
        registry_url="https://registry.example.com",
        insecure=False,
        username=None,
        region=None,
        endpoint_url=None,
        connections=4,
        request_timeout=10,
        ecr_quota_share=0.5,
    )
    with pytest.raises(Exception, match="ecr_quota_share applies to ECR"):
        async with open_registry(choice):
            pass


# --- the local registry's rate fault -----------------------------------------------------


def test_throttle_above_parses_a_rate_for_all_calls_or_for_one_operation() -> None:
    everything = parse_fault("throttle-above=20")
    assert (everything.kind, everything.value, everything.operation) == (
        FaultKind.THROTTLE_ABOVE,
        20,
        None,
    )
    parts = parse_fault("throttle-above=UploadLayerPart:2.5")
    assert (parts.value, parts.operation) == (2.5, "UploadLayerPart")
    assert parts.spec == "throttle-above=UploadLayerPart:2.5"
    for bad in ("throttle-above=0", "throttle-above=fast", "throttle-above=:5"):
        with pytest.raises(ValueError, match="throttle-above"):
            parse_fault(bad)


def test_the_registry_bucket_refuses_beyond_the_rate_without_taking_a_token() -> None:
    clock = FakeTime()
    bucket = RateBucket(2, clock)
    assert [bucket.admit() for _ in range(3)] == [True, True, False]
    clock.now += 0.5  # one token back
    assert [bucket.admit() for _ in range(2)] == [True, False]


def test_throttle_above_one_operation_leaves_the_others_alone() -> None:
    clock = FakeTime()
    plan = FaultPlan([parse_fault("throttle-above=UploadLayerPart:1")], clock)
    assert plan.pick("UploadLayerPart") is None
    fired = plan.pick("UploadLayerPart")
    assert fired is not None
    assert fired.kind is FaultKind.THROTTLE_ABOVE
    assert all(plan.pick("InitiateLayerUpload") is None for _ in range(50))
    clock.now += 1.0
    assert plan.pick("UploadLayerPart") is None


# --- Retry-After -------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("1") == 1.0
    assert retry_after(" 2.5 ") == 2.5
    assert retry_after(formatdate(1_000_030, usegmt=True), now=1_000_000) == pytest.approx(30)
    assert retry_after(formatdate(999_000, usegmt=True), now=1_000_000) == 0.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    assert retry_after("inf") is None


def test_an_ecr_answer_with_retry_after_carries_it() -> None:
    response: dict[str, Any] = {
        "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
        "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {"retry-after": "3"}},
    }
    error = botocore.exceptions.ClientError(response, "UploadLayerPart")  # type: ignore[arg-type]
    with pytest.raises(TransientRegistryError) as raised:
        raise_client_error(error, "team/app")
    assert raised.value.retry_after == 3.0
    response["ResponseMetadata"]["HTTPHeaders"] = {}
    with pytest.raises(TransientRegistryError) as raised:
        raise_client_error(error, "team/app")
    assert raised.value.retry_after is None


def test_the_policy_waits_what_the_registry_asked_capped_by_its_max_delay() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=5.0)
    asked = TransientRegistryError("429", code=ErrorCode.TOO_MANY_REQUESTS)
    asked.retry_after = 2.0
    for _ in range(20):
        assert 2.0 <= policy.delay_for(asked, 1) <= 2.0 * (1 + RETRY_AFTER_JITTER)
    asked.retry_after = 3600.0
    assert policy.delay_for(asked, 1) == 5.0
    plain = TransientRegistryError("503", code="HTTP503")
    assert policy.delay_for(plain, 1) <= 0.001


class TooBusyOnce:
    """A minimal OCI registry: blobs by chunked upload; the first upload POST gets a 429."""

    def __init__(self) -> None:
        self.held = bytearray()
        self.refused = 0

    async def head(self, request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def start(self, request: web.Request) -> web.Response:
        if not self.refused:
            self.refused += 1
            return web.json_response(
                {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]},
                status=429,
                headers={"Retry-After": "1"},
            )
        return web.Response(status=202, headers={"Location": "/v2/r/blobs/uploads/u1"})

    async def patch(self, request: web.Request) -> web.Response:
        self.held += await request.read()
        headers = {"Location": "/v2/r/blobs/uploads/u1", "Range": f"0-{len(self.held) - 1}"}
        return web.Response(status=202, headers=headers)

    async def put(self, request: web.Request) -> web.Response:
        return web.Response(status=201)


@pytest.fixture
async def too_busy_once() -> AsyncIterator[tuple[TooBusyOnce, str]]:
    registry = TooBusyOnce()
    app = web.Application(client_max_size=64 * MIB)
    app.router.add_head("/v2/r/blobs/{digest}", registry.head)
    app.router.add_post("/v2/r/blobs/uploads/", registry.start)
    app.router.add_patch("/v2/r/blobs/uploads/u1", registry.patch)
    app.router.add_put("/v2/r/blobs/uploads/u1", registry.put)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield registry, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


class RecordsRetries(SilentObserver):
    def __init__(self) -> None:
        self.retries: list[tuple[str, float]] = []

    def retrying(self, job: LayerJob, reason: str, delay: float) -> None:
        self.retries.append((reason, delay))


async def test_a_429_with_retry_after_is_waited_out_before_the_retry(
    too_busy_once: tuple[TooBusyOnce, str], tmp_path: Path
) -> None:
    registry_app, url = too_busy_once
    path, _digest = make_layer(tmp_path, "layer", 6 * MIB)
    choice = RegistryChoice(
        registry_url=url,
        insecure=True,
        username=None,
        region=None,
        endpoint_url=None,
        connections=4,
        request_timeout=10,
    )
    observer = RecordsRetries()
    # The policy's own backoff would be a millisecond: any wait of a second is the server's.
    settings = EngineSettings(
        concurrency=1,
        memory_budget=32 * MIB,
        part_size=None,
        retry=RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=20.0),
        overlap_threshold=1 << 62,
    )
    async with open_registry(choice) as registry:
        engine = UploadEngine(registry, settings, observer)
        [result] = await engine.push_all([LayerJob(path, "r")])
    assert result.outcome is Outcome.UPLOADED, result
    assert registry_app.refused == 1
    assert len(registry_app.held) == 6 * MIB
    [(reason, delay)] = observer.retries
    assert reason == ErrorCode.TOO_MANY_REQUESTS
    assert 1.0 <= delay <= 1.0 * (1 + RETRY_AFTER_JITTER)


@pytest.mark.parametrize(("chosen", "mode"), [(None, "adaptive"), ("standard", "standard")])
async def test_botocore_adaptive_retries_unless_the_aws_chain_names_a_mode(
    monkeypatch: pytest.MonkeyPatch, chosen: str | None, mode: str
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    if chosen is None:
        monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    else:
        monkeypatch.setenv("AWS_RETRY_MODE", chosen)
    settings = EcrSettings(region="us-east-1", endpoint_url="http://127.0.0.1:9")
    async with open_ecr_registry(settings) as registry:
        assert registry._client.meta.config.retries["mode"] == mode
