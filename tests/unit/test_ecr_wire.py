"""The UploadLayerPart request uploaderd builds itself is the one ECR expects.

uploaderd builds the part's JSON body and its SigV4 payload hash in a worker thread
and hands both to botocore (see ``EcrPart``).  These tests capture the request on a
real HTTP server on loopback and check it the way ECR would: the body is JSON with the
right members, its blob decodes to the part, ``X-Amz-Content-SHA256`` is the body's
hash, and the signature recomputed from the captured request with the same secret
matches the one sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from uploaderd.registry.base import PartBytes, UploadSession
from uploaderd.registry.ecr import EcrSettings, open_ecr_registry

ACCESS_KEY = "AKIDWIRETEST"
SECRET_KEY = "wire-test-secret"
REGION = "us-east-1"


@dataclass
class CapturedRequest:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CapturingServer:
    url: str = ""
    requests: list[CapturedRequest] = field(default_factory=list)
    fail_first: int = 0
    """Answer this many requests with a 500 ServerException, as ECR may."""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(CapturedRequest(str(request.url), dict(request.headers), body))
        if len(self.requests) <= self.fail_first:
            return web.json_response(
                {"__type": "ServerException", "message": "try again"},
                status=500,
                content_type="application/x-amz-json-1.1",
            )
        members = json.loads(body)
        last = members["partLastByte"]
        return web.json_response(
            {"uploadId": members["uploadId"], "lastByteReceived": last},
            content_type="application/x-amz-json-1.1",
        )


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CapturingServer]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    capturing = CapturingServer()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/", capturing.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    capturing.url = f"http://127.0.0.1:{port}"
    try:
        yield capturing
    finally:
        await runner.cleanup()


def recomputed_signature(captured: CapturedRequest) -> str:
    """The signature botocore's own signer gives the captured request's signed headers."""
    signed = re.search(r"SignedHeaders=([^,]+)", captured.headers["Authorization"])
    assert signed is not None
    names = signed.group(1).split(";")
    lowered = {name.lower(): value for name, value in captured.headers.items()}
    request = AWSRequest(
        method="POST",
        url=captured.url,
        headers={name: lowered[name] for name in names},
        data=captured.body,
    )
    request.context["timestamp"] = lowered["x-amz-date"]
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "ecr", REGION)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def sent_signature(captured: CapturedRequest) -> str:
    match = re.search(r"Signature=([0-9a-f]{64})", captured.headers["Authorization"])
    assert match is not None
    return match.group(1)


async def push_one_part(
    server: CapturingServer, data: bytes, first_byte: int, encoded_for: UploadSession
) -> tuple[int, list[CapturedRequest]]:
    settings = EcrSettings(region=REGION, endpoint_url=server.url)
    session = UploadSession("team/app", "upload-1", len(data))
    async with open_ecr_registry(settings) as registry:
        part = registry.encode_part(encoded_for, PartBytes(data, first_byte))
        last = await registry.upload_part(session, first_byte, part)
    return last, server.requests


def assert_is_the_part(captured: CapturedRequest, data: bytes, first_byte: int) -> None:
    members = json.loads(captured.body)
    assert base64.b64decode(members.pop("layerPartBlob"), validate=True) == data
    assert members == {
        "repositoryName": "team/app",
        "uploadId": "upload-1",
        "partFirstByte": first_byte,
        "partLastByte": first_byte + len(data) - 1,
    }
    assert captured.headers["X-Amz-Target"].endswith(".UploadLayerPart")
    assert int(captured.headers["Content-Length"]) == len(captured.body)


@pytest.mark.parametrize("size", [1, 2, 3, 524_286, 524_287, 5 * 1024 * 1024 + 1])
async def test_part_body_and_signature_are_what_ecr_checks(
    server: CapturingServer, size: int
) -> None:
    data = os.urandom(size)
    session = UploadSession("team/app", "upload-1", size)
    last, [captured] = await push_one_part(server, data, 10_485_760, session)

    assert last == 10_485_760 + size - 1
    assert_is_the_part(captured, data, 10_485_760)
    payload_hash = hashlib.sha256(captured.body).hexdigest()
    assert captured.headers["X-Amz-Content-SHA256"] == payload_hash
    assert sent_signature(captured) == recomputed_signature(captured)


async def test_a_part_prepared_for_other_members_is_rebuilt_not_sent_wrong(
    server: CapturingServer,
) -> None:
    data = os.urandom(70_000)
    stale = UploadSession("team/app", "an-earlier-upload", len(data))
    _, [captured] = await push_one_part(server, data, 0, stale)

    assert_is_the_part(captured, data, 0)
    assert captured.headers["X-Amz-Content-SHA256"] == hashlib.sha256(captured.body).hexdigest()
    assert sent_signature(captured) == recomputed_signature(captured)


async def test_botocore_retries_resend_the_whole_prepared_body(server: CapturingServer) -> None:
    # botocore rewinds a body that is not bytes before each retry; the prepared
    # body is sent as a view, which must survive that and go out whole again.
    server.fail_first = 2
    data = os.urandom(3 * 1024 * 1024)
    session = UploadSession("team/app", "upload-1", len(data))
    last, attempts = await push_one_part(server, data, 0, session)

    assert last == len(data) - 1
    assert len(attempts) == 3
    for captured in attempts:
        assert_is_the_part(captured, data, 0)
        assert sent_signature(captured) == recomputed_signature(captured)
    assert attempts[0].body == attempts[2].body
