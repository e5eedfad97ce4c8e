"""One request to an OCI registry, and what its answer means.

The protocol steps (``oci.py``) decide what to ask and in what order; here is
what every request needs whatever it asks: answering an authentication
challenge, classing a lost connection, a 429 and a 5xx as worth retrying
(with the ``Retry-After`` they carry, which oras and regclient honour too),
and reading the rest (OCI error codes, the held ``Range``) into the
``uploaderd.errors`` hierarchy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NoReturn

import aiohttp
import aiohttp.abc
import aiohttp.payload
import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from uploaderd.errors import ErrorCode, RegistryError, TransientRegistryError, UploadNotFoundError
from uploaderd.registry.body import PartBody
from uploaderd.registry.ociauth import Authenticator
from uploaderd.registry.quota import retry_after

UPLOAD_GONE_CODES = frozenset({"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"})
"""distribution cancels an upload whose signed state is stale and answers BLOB_UPLOAD_INVALID."""

PERMANENT_HINTS = {
    "NAME_UNKNOWN": "the repository does not exist and the registry does not create it on push",
    "NAME_INVALID": "the registry refuses this repository name",
    "DIGEST_INVALID": "the registry computed a different digest from the bytes sent; "
    "the file was changed or corrupted while being pushed",
    "MANIFEST_BLOB_UNKNOWN": "the manifest names a blob the repository does not have",
    "MANIFEST_INVALID": "the registry refused the manifest",
    "TAG_INVALID": "the registry refuses this tag",
    "DENIED": "the credentials in use may not push to this repository",
    "UNSUPPORTED": "the registry does not support this operation",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """A registry's answer, read whole: OCI answers other than blobs are small."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def error_code(self) -> str:
        """The first OCI error code in the body (``{"errors":[{"code":...}]}``), else HTTPnnn."""
        try:
            errors = json.loads(self.body).get("errors") or []
            return str(errors[0]["code"])
        except (ValueError, AttributeError, LookupError, TypeError):
            return f"HTTP{self.status}"

    def error_text(self) -> str:
        try:
            errors = json.loads(self.body).get("errors") or []
            return "; ".join(str(e.get("message") or e.get("code")) for e in errors)
        except (ValueError, AttributeError, TypeError):
            return self.body[:200].decode("utf-8", "replace").strip()


@dataclass(eq=False)
class BodyPiece:
    data: bytes | memoryview
    written: anyio.Event | None = None
    """Set once aiohttp has written (and drained) this piece and asks for the next."""


class FedBody(aiohttp.payload.Payload):
    """A request body of the pieces fed to ``receive``, written as they come (``ocipatch``)."""

    def __init__(self, receive: MemoryObjectReceiveStream[BodyPiece], length: int) -> None:
        super().__init__(b"", size=length, content_type="application/octet-stream")
        self._receive = receive

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streamed chunk has no text")

    async def write(self, writer: aiohttp.abc.AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: aiohttp.abc.AbstractStreamWriter, content_length: int | None
    ) -> None:
        async with self._receive:
            async for piece in self._receive:
                await writer.write(piece.data)
                if piece.written is not None:
                    piece.written.set()


class ConnectionLostError(TransientRegistryError):
    """The request may or may not have reached the registry."""


@dataclass(slots=True)
class OciTransport:
    """Requests to one registry over one aiohttp session, authenticated as it asks."""

    session: aiohttp.ClientSession
    auth: Authenticator
    name: str
    """The registry's ``host[:port]``, for messages."""

    async def send(
        self,
        method: str,
        url: URL,
        repository: str,
        *,
        headers: dict[str, str] | None = None,
        data: bytes | bytearray | memoryview | None = None,
        also_pull: str | None = None,
    ) -> Answer:
        """One request, answering an authentication challenge once if the registry asks."""
        scope = f"repository:{repository}:pull,push"
        if also_pull is not None:
            scope += f" repository:{also_pull}:pull"
        answered = False
        while True:
            request_headers = CIMultiDict(headers or {})
            authorization = self.auth.header(scope)
            if authorization is not None:
                request_headers["Authorization"] = authorization
            answer = await self.exchange(method, url, request_headers, data)
            challenge = answer.headers.get("WWW-Authenticate")
            if answer.status == 401 and challenge and not answered:
                self.auth.forget(scope)
                await self.auth.answer(challenge, scope)
                answered = True
                continue
            if answer.status in (401, 403):
                raise self.auth.refused(answer.status)
            if answer.status == 429 or answer.status >= 500:
                raise self.overloaded(answer, method, repository)
            return answer

    def overloaded(self, answer: Answer, method: str, repository: str) -> TransientRegistryError:
        """A 429 or 5xx: worth retrying, after the registry's ``Retry-After`` if it gave one."""
        error = TransientRegistryError(
            f"registry {self.name} answered HTTP {answer.status} to {method}: "
            f"{answer.error_text()}",
            repository=repository,
            code=answer.error_code() if answer.status >= 500 else ErrorCode.TOO_MANY_REQUESTS,
        )
        error.retry_after = retry_after(answer.headers.get("Retry-After"))
        if error.retry_after is not None:
            error.message += f" (it asked to retry after {error.retry_after:g} s)"
        return error

    async def exchange(
        self,
        method: str,
        url: URL,
        headers: CIMultiDict[str] | dict[str, str],
        data: bytes | bytearray | memoryview | aiohttp.payload.Payload | None,
    ) -> Answer:
        """The request as it is, with no authentication and any status accepted.

        A failure to get an answer is ``ConnectionLostError``: the request may
        have arrived, so an upload must be asked where it stands.
        """
        payload = PartBody(data) if isinstance(data, bytearray | memoryview) else data
        try:
            async with self.session.request(method, url, headers=headers, data=payload) as response:
                body = await response.read()
                return Answer(response.status, response.headers, body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ConnectionLostError(
                f"cannot reach registry {self.name}: {exc!r}", code=type(exc).__name__
            ) from exc


def raise_refusal(
    answer: Answer, registry: str, repository: str, doing: str, *, upload: bool = False
) -> NoReturn:
    """Raise what an answer the protocol step did not expect means.

    For a request to an open upload (``upload``), a 404 or an upload error code
    means the registry has forgotten it: the layer starts again, not fails.
    """
    code = answer.error_code()
    if upload and (answer.status == 404 or code in UPLOAD_GONE_CODES):
        raise UploadNotFoundError(
            f"registry {registry} no longer knows the upload ({code})",
            repository=repository,
            code=ErrorCode.UPLOAD_NOT_FOUND,
        )
    text = f"{code} (HTTP {answer.status}) while {doing}: {answer.error_text()}"
    hint = PERMANENT_HINTS.get(code)
    if hint:
        text += f"; {hint}"
    raise RegistryError(text, repository=repository, code=code)


def range_end(header: str | None) -> int | None:
    """The last byte of ``Range: 0-<last>``; None for no header or an empty upload."""
    if not header:
        return None
    _, _, end = header.partition("-")
    try:
        last = int(end)
    except ValueError:
        return None
    # distribution answers "0-0" for an upload that holds nothing yet.
    return None if last == 0 else last


def next_location(answer: Answer, request_url: URL, registry: str) -> URL:
    """The ``Location`` an upload's next request must use (distribution signs the offset in)."""
    location = answer.headers.get("Location")
    if not location:
        raise TransientRegistryError(
            f"registry {registry} answered an upload request without a Location",
            code=ErrorCode.MALFORMED_RESPONSE,
        )
    return request_url.join(URL(location, encoded=True))


def check_held(answer: Answer, last_byte: int, registry: str, repository: str) -> None:
    """Raise if the registry holds another count of bytes than up to ``last_byte``.

    A registry that ignores Content-Range (distribution 2.x) appends a resent
    part instead of answering 416: the upload then holds bytes in the wrong
    place, and only a new upload can fix that.
    """
    held = range_end(answer.headers.get("Range"))
    if held is not None and held != last_byte:
        raise UploadNotFoundError(
            f"registry {registry} holds bytes 0-{held} after a request ending at {last_byte}; "
            "starting the layer's upload again",
            repository=repository,
            code=ErrorCode.UPLOAD_DIVERGED,
        )
