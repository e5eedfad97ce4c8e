"""``OciRegistry`` in-process: token auth, range resynchronisation, cross-repository mounts."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web

from tests.helpers import digest_of
from tests.oci.conftest import OciRegistryProcess, needs_tools
from uploaderd.errors import (
    ConfigurationError,
    PartOutOfOrderError,
    RegistryError,
    UploadNotFoundError,
)
from uploaderd.registry.base import PartBytes, PartPayload, UploadSession
from uploaderd.registry.oci import (
    OciRegistry,
    OciSettings,
    open_oci_registry,
    registry_base_url,
)

TOKEN = "tok-123"


class FakeRegistry:
    """Token service plus a chunked-upload endpoint that checks Content-Range, as the spec says."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.token_requests: list[dict[str, str]] = []
        self.held = bytearray()
        self.base = ""
        self.patches = 0
        self.drop_after: int | None = None
        """Take this many bytes of the next PATCH, keep them, and drop the connection."""

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        expected = base64.b64encode(f"user:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401)
        return web.json_response({"token": TOKEN, "expires_in": 300})

    @web.middleware
    async def bearer(self, request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        if request.path.startswith("/v2/") and request.headers.get("Authorization") != (
            f"Bearer {TOKEN}"
        ):
            challenge = f'Bearer realm="{self.base}/token",service="fake",scope="repository:r:pull"'
            return web.json_response(
                {"errors": [{"code": "UNAUTHORIZED"}]},
                status=401,
                headers={"WWW-Authenticate": challenge},
            )
        return await handler(request)

    def _upload_headers(self) -> dict[str, str]:
        return {
            "Location": f"/v2/r/blobs/uploads/u1?state={len(self.held)}",
            "Range": f"0-{max(len(self.held) - 1, 0)}",
        }

    async def start(self, request: web.Request) -> web.Response:
        return web.Response(status=202, headers=self._upload_headers())

    async def patch(self, request: web.Request) -> web.Response:
        if request.query.get("state") != str(len(self.held)):
            return web.json_response({"errors": [{"code": "BLOB_UPLOAD_INVALID"}]}, status=400)
        first = int(request.headers["Content-Range"].partition("-")[0])
        if first != len(self.held):
            return web.Response(status=416, headers=self._upload_headers())
        self.patches += 1
        if self.drop_after is not None:
            self.held += await request.content.readexactly(self.drop_after)
            self.drop_after = None
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("dropped on purpose")
        self.held += await request.read()
        return web.Response(status=202, headers=self._upload_headers())

    async def status(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=self._upload_headers())


@pytest.fixture
async def fake() -> AsyncIterator[FakeRegistry]:
    registry = FakeRegistry("right")
    app = web.Application(middlewares=[registry.bearer])
    app.router.add_get("/token", registry.token)
    app.router.add_post("/v2/r/blobs/uploads/", registry.start)
    app.router.add_patch("/v2/r/blobs/uploads/u1", registry.patch)
    app.router.add_get("/v2/r/blobs/uploads/u1", registry.status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    registry.base = f"http://127.0.0.1:{port}"
    yield registry
    await runner.cleanup()


async def test_bearer_token_is_fetched_once_and_a_resent_part_resynchronises(
    fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOADERD_REGISTRY_PASSWORD", "right")
    settings = OciSettings(fake.base, insecure=True, username="user")
    async with open_oci_registry(settings) as registry:
        session = await registry.start_upload("r")
        part = registry.encode_part(session, PartBytes(b"0123456789"))
        assert await registry.upload_part(session, 0, part) == 9
        with pytest.raises(PartOutOfOrderError) as moved:
            await registry.upload_part(session, 0, part)  # an answer lost, the part resent
        assert moved.value.next_byte == 10
        assert await registry.upload_part(session, 10, part) == 19  # the latest Location
    assert len(fake.token_requests) == 1
    assert fake.token_requests[0] == {"scope": "repository:r:pull,push", "service": "fake"}


async def test_token_refused_is_a_permanent_error_naming_the_registry(
    fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOADERD_REGISTRY_PASSWORD", "wrong")
    settings = OciSettings(fake.base, insecure=True, username="user")
    async with open_oci_registry(settings) as registry:
        with pytest.raises(RegistryError) as refused:
            await registry.start_upload("r")
    assert not refused.value.retry_later
    assert "127.0.0.1" in refused.value.message
    assert "check the user name and password" in refused.value.message


async def _push_blob(registry: OciRegistry, repository: str, data: bytes) -> str:
    session = await registry.start_upload(repository)
    await registry.upload_part(session, 0, registry.encode_part(session, PartBytes(data)))
    await registry.complete_upload(session, digest_of(data))
    return digest_of(data)


@needs_tools
async def test_blob_pushed_to_one_repository_is_mounted_into_another(
    oci_registry: OciRegistryProcess,
) -> None:
    async with open_oci_registry(OciSettings(oci_registry.url, insecure=True)) as registry:
        digest = await _push_blob(registry, "team/a", os.urandom(50_000))
        patches = oci_registry.requests("PATCH")
        assert await registry.missing_layers("team/b", [digest]) == set()
    assert oci_registry.requests("PATCH") == patches
    assert "mount=" in oci_registry.log.read_text()
    assert oci_registry.get(f"/v2/team/b/blobs/{digest}")[0] == 200


@needs_tools
async def test_registry_that_appends_a_resent_part_gets_a_new_upload(
    oci_registry: OciRegistryProcess,
) -> None:
    # distribution 2.x ignores Content-Range: a resent part is appended, not refused.
    async with open_oci_registry(OciSettings(oci_registry.url, insecure=True)) as registry:
        session = await registry.start_upload("team/a")
        part = registry.encode_part(session, PartBytes(os.urandom(500)))
        assert await registry.upload_part(session, 0, part) == 499
        with pytest.raises(UploadNotFoundError):
            await registry.upload_part(session, 0, part)


def test_plain_http_needs_the_insecure_flag() -> None:
    with pytest.raises(ConfigurationError, match="--insecure-registry"):
        registry_base_url("http://127.0.0.1:5000", insecure=False)
    assert str(registry_base_url("example.com", insecure=False)) == "https://example.com/"


async def _chunked_session(registry: OciRegistry, layer_size: int) -> UploadSession:
    """An upload whose 4-byte parts go two to a chunk, as the engine would open it."""
    registry.uploads.chunk_bytes = 8
    session = await registry.start_upload("r")
    return replace(session, part_size=4, layer_size=layer_size)


async def test_parts_go_several_to_a_patch_and_only_a_chunks_last_waits_for_the_answer(
    fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOADERD_REGISTRY_PASSWORD", "right")
    data = b"abcdefghijkl"
    async with open_oci_registry(OciSettings(fake.base, insecure=True, username="user")) as reg:
        session = await _chunked_session(reg, len(data))
        assert await reg.upload_part(session, 0, reg.encode_part(session, PartBytes(data[:4]))) == 3
        assert fake.held == b""  # fed, not yet answered: the chunk's request is still open
        assert (
            await reg.upload_part(session, 4, reg.encode_part(session, PartBytes(data[4:8]))) == 7
        )
        assert (bytes(fake.held), fake.patches) == (data[:8], 1)
        last = reg.encode_part(session, PartBytes(data[8:]))
        assert await reg.upload_part(session, 8, last) == 11
    assert (bytes(fake.held), fake.patches) == (data, 2)


async def test_a_chunk_dropped_midway_continues_from_the_registrys_position(
    fake: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOADERD_REGISTRY_PASSWORD", "right")
    data = b"abcdefghijkl"
    fake.drop_after = 6  # the first chunk's connection dies after 6 of its 8 bytes
    async with open_oci_registry(OciSettings(fake.base, insecure=True, username="user")) as reg:
        session = await _chunked_session(reg, len(data))

        def part(first: int, last: int) -> PartPayload:
            return reg.encode_part(session, PartBytes(data[first:last], first))

        assert await reg.upload_part(session, 0, part(0, 4)) == 3  # confirmed for now
        with pytest.raises(PartOutOfOrderError) as moved:
            await reg.upload_part(session, 4, part(4, 8))
        assert moved.value.next_byte == 6  # asked where the upload stands: go on from there
        assert await reg.upload_part(session, 6, part(6, 10)) == 9
        assert await reg.upload_part(session, 10, part(10, 12)) == 11
    assert bytes(fake.held) == data
