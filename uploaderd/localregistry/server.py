"""The aiohttp application: the ECR endpoint, blob downloads, and test controls.

Routes:

* ``POST /``: the ECR API (AWS JSON 1.1, operation in ``X-Amz-Target``), or ECR
  Public's in public mode (``SpencerFrontendService.`` targets).
* ``GET /blobs/<repository>/sha256:<hex>[?registryId=ID]``: a layer's bytes, where
  GetDownloadUrlForLayer points; unauthenticated, like ECR's pre-signed URLs.
* ``GET /_stats``, ``POST /_stats/reset``: what the registry saw (see stats.py),
  including ``request_log``, each operation's calls counted by the registryId they carried.
* ``GET /_faults``, ``POST /_faults`` (a JSON list of specs, replacing the active
  ones), ``POST /_faults/refuse?seconds=S``: fault injection at run time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import anyio
import anyio.to_thread
from aiohttp import web

from .catalog import Catalog, is_digest
from .config import LocalRegistryConfig
from .faults import SLOW_BODY_PIECES, Fault, FaultKind, FaultPlan, parse_fault
from .layers import LayerOperations
from .operations import Operation, find_operation, operation_table
from .protocol import (
    PUBLIC_SIGNING_NAME,
    PUBLIC_TARGET_PREFIX,
    SIGNING_NAME,
    TARGET_PREFIX,
    ApiCall,
    EcrError,
    JsonObject,
    check_signing_name,
    decode_body,
    error_response,
    is_signed,
    operation_name,
    result_response,
)
from .stats import RegistryStats
from .store import THREAD_THRESHOLD, BlobStore

log = logging.getLogger(__name__)

#: A 20 MiB part is ~28 MB once base64-encoded into JSON; leave room above that.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
UPLOAD_OPERATIONS = frozenset({"UploadLayerPart", "CompleteLayerUpload"})
NOT_JSON_PAGE = "<html><body><h1>502 Bad Gateway</h1></body></html>"


class ConnectionDroppedError(Exception):
    """Raised after closing a connection on purpose, so no answer is written."""


class RegistryApp:
    """Holds the registry's state and answers its HTTP routes.

    ``refuse`` is called with a number of seconds to stop accepting connections; the
    listener owns the sockets, so it is the one that can do that.
    """

    def __init__(self, config: LocalRegistryConfig, refuse: Callable[[float], None]) -> None:
        self._store = BlobStore(config.storage)
        self._catalog = Catalog(
            config.storage / "index.json",
            auto_create=config.auto_create_repositories,
            registry_ids=config.registry_ids,
        )
        self._target_prefix = PUBLIC_TARGET_PREFIX if config.public else TARGET_PREFIX
        self._signing_name = PUBLIC_SIGNING_NAME if config.public else SIGNING_NAME
        self.stats = RegistryStats()
        self.faults = FaultPlan(parse_fault(spec) for spec in config.faults)
        layers = LayerOperations(
            self._catalog,
            self._store,
            self.stats,
            part_size=config.part_size,
            missing_as_unavailable=config.missing_as_unavailable,
            limits=config.layer_limits,
        )
        self._operations = operation_table(self._catalog, layers, public=config.public)
        self._refuse = refuse
        #: True while a refusal window is open: requests on already-open connections
        #: are dropped too, so clients see the outage whatever their pooling.
        self.refusing = False
        self.app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        self.app.add_routes(
            [
                web.post("/", self._api),
                web.get("/blobs/{repository:.+}/{digest}", self._blob),
                web.get("/_stats", self._get_stats),
                web.post("/_stats/reset", self._reset_stats),
                web.get("/_faults", self._get_faults),
                web.post("/_faults", self._set_faults),
                web.post("/_faults/refuse", self._refuse_now),
            ]
        )

    async def _api(self, request: web.Request) -> web.StreamResponse:
        if not is_signed(request):
            return error_response(
                EcrError(
                    "MissingAuthenticationTokenException",
                    "Missing Authentication Token: requests must be signed with AWS SigV4",
                    status=403,
                )
            )
        try:
            name = operation_name(request.headers.get("X-Amz-Target"), self._target_prefix)
            operation = find_operation(self._operations, name)
            check_signing_name(request, self._signing_name)
            self.stats.requests[name] += 1
            body = await _read_body(request)
            self.stats.request_log.record(name, body.get("registryId"))
            with self._tracking(name, body):
                answer = await self._answer(request, name, operation, body)
        except EcrError as error:
            answer = error_response(error)
        except ConnectionDroppedError:
            return web.Response()  # never written: the transport is gone
        except Exception:
            # A bug here must still look like ECR to the client (a JSON
            # ServerException it may retry), not like an HTML page from aiohttp.
            log.exception("local registry failed to handle %s", request.headers.get("X-Amz-Target"))
            answer = error_response(
                EcrError("ServerException", "internal error in the local registry", status=500)
            )
        if self.faults.slow_body:
            self.stats.faults_injected[FaultKind.SLOW_BODY.value] += 1
            return await _trickle(request, answer, self.faults.slow_body)
        return answer

    async def _answer(
        self,
        request: web.Request,
        name: str,
        operation: Operation,
        body: JsonObject,
    ) -> web.Response:
        if self.faults.latency:
            await anyio.sleep(self.faults.latency)
        if self.refusing:
            _drop_connection(request)
        fault = self.faults.pick(name)
        if fault is not None:
            self.stats.faults_injected[fault.kind.value] += 1
            if fault.kind is FaultKind.NON_JSON:
                return web.Response(status=200, text=NOT_JSON_PAGE, content_type="text/html")
            if fault.kind is not FaultKind.DROP_AFTER_APPLY:
                raise _injected_error(fault)
        call = ApiCall(body, f"{request.scheme}://{request.host}")
        try:
            result = await operation(call)
        finally:
            if fault is not None:  # drop-after-apply: applied (or refused), never answered
                _drop_connection(request)
        if name == "UploadLayerPart":
            self._maybe_forget(str(body["uploadId"]))
        return result_response(result)

    def _tracking(self, name: str, body: JsonObject) -> AbstractContextManager[None]:
        upload_id = body.get("uploadId")
        if name in UPLOAD_OPERATIONS and isinstance(upload_id, str):
            return self.stats.upload_request(name, upload_id)
        return nullcontext()

    def _maybe_forget(self, upload_id: str) -> None:
        """forget-upload-after: the upload expires once it has received K parts."""
        limit = self.faults.forget_after
        session = self._store.find_upload(upload_id)
        if limit is not None and session is not None and len(session.part_sizes) >= limit:
            self._store.forget(upload_id)
            self.stats.faults_injected[FaultKind.FORGET_UPLOAD.value] += 1

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        try:
            repository = self._catalog.get(
                request.match_info["repository"], request.query.get("registryId")
            )
        except EcrError as error:
            raise web.HTTPNotFound(text=error.message) from None
        if not is_digest(digest) or digest not in repository.layers:
            raise web.HTTPNotFound(text=f"{digest} is not in {repository.name}")
        return web.FileResponse(
            self._store.blob_path(digest), headers={"Content-Type": "application/octet-stream"}
        )

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_json())

    async def _reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.to_json())

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response([fault.spec for fault in self.faults.faults])

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            specs = await request.json()
            if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
                raise ValueError("the body must be a JSON list of fault specs")
            faults = [parse_fault(spec) for spec in specs]
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        self.faults = FaultPlan(faults)
        for fault in faults:
            if fault.kind is FaultKind.REFUSE:
                self._refuse(fault.value)
        return web.json_response([fault.spec for fault in faults])

    async def _refuse_now(self, request: web.Request) -> web.Response:
        try:
            seconds = parse_fault(f"refuse-for={request.query.get('seconds', '')}").value
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        self._refuse(seconds)
        return web.json_response({"refusing_for": seconds})


async def _read_body(request: web.Request) -> JsonObject:
    try:
        raw = await _read_raw(request)
    except web.HTTPRequestEntityTooLarge:
        raise _too_large() from None
    if len(raw) > THREAD_THRESHOLD:
        return await anyio.to_thread.run_sync(decode_body, raw)
    return decode_body(raw)


async def _read_raw(request: web.Request) -> bytes | bytearray:
    """The request body, copied once into a buffer of its announced length.

    aiohttp's ``read()`` grows a bytearray chunk by chunk and then copies it
    into ``bytes``: for a 14 MB part body that was ~8 copies, most of this
    server's main-thread CPU, which in benchmarks it shares with the client it
    measures.  A body without Content-Length (chunked) still goes through it.
    """
    length = request.content_length
    if length is None:
        return await request.read()
    if length > MAX_REQUEST_BYTES:
        raise _too_large()
    body = bytearray(length)
    view = memoryview(body)
    filled = 0
    while chunk := await request.content.readany():
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return body


def _too_large() -> EcrError:
    return EcrError(
        "RequestEntityTooLargeException",
        f"request body larger than {MAX_REQUEST_BYTES} bytes",
        status=413,
    )


async def _trickle(
    request: web.Request, answer: web.Response, seconds: float
) -> web.StreamResponse:
    """slow-body: headers at once, then the body in pieces, ``seconds`` apart.

    The request was already applied; a client that times out mid-body cannot know it.
    """
    body = answer.body if isinstance(answer.body, bytes) else b""
    stream = web.StreamResponse(status=answer.status, headers=answer.headers)
    stream.content_length = len(body)
    step = max(1, -(-len(body) // SLOW_BODY_PIECES))
    try:
        await stream.prepare(request)
        for start in range(0, len(body), step):
            await anyio.sleep(seconds)
            await stream.write(body[start : start + step])
        await stream.write_eof()
    except ConnectionResetError:
        pass  # the client gave up (its read timeout): nothing more to send
    return stream


def _drop_connection(request: web.Request) -> None:
    """Closes the connection without an answer, as a crash or a network cut would."""
    if request.transport is not None:
        request.transport.abort()
    raise ConnectionDroppedError


def _injected_error(fault: Fault) -> EcrError:
    if fault.kind is FaultKind.THROTTLE:
        return EcrError("ThrottlingException", "Rate exceeded (injected fault)")
    if fault.kind is FaultKind.THROTTLE_ABOVE:
        scope = fault.operation or "all API requests"
        return EcrError("ThrottlingException", f"Rate exceeded: {scope} above {fault.value:g}/s")
    if fault.kind is FaultKind.REFUSE_PUT_IMAGE:
        return EcrError("InvalidParameterException", "Manifest refused (injected fault)")
    return EcrError("ServerException", "Internal error (injected fault)", status=500)
