"""The UploadLayerPart request body, prepared in a worker thread, and the hooks that send it.

``encode_ecr_part`` builds and hashes the whole JSON body off the event loop
(``EcrPart`` says why); ``install_part_hooks`` makes an aiobotocore client
send that body as it is instead of serializing the part again.  Either half
is useless without the other, so they live together, apart from the ECR calls.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pybase64

from uploaderd.registry.base import Allocate, PartPayload, PartSource, UploadSession, new_buffer
from uploaderd.registry.body import PartBody

RAW_CHUNK_BYTES = 3 * 65_536
"""Raw bytes base64-encoded at a time (196,608): a multiple of 3, so the chunks'
texts join with no padding between them.  Each chunk costs a read, a base64,
a copy and a hash update, each a GIL hand-off: 64 KiB chunks cost ~0.08 CPU-s
more per GiB.  The raw chunk and its text come from the encoding worker
thread's malloc arena, one per thread in use: 512 KiB chunks cost ~6 MB more
peak RSS at concurrency 4, 192 KiB ~2 MB.  They also stay in the CPU cache
between the base64 and the hash."""


@dataclass(slots=True)
class EcrPart(PartPayload):
    """A complete UploadLayerPart request body, built and hashed in a worker thread.

    botocore would base64-encode the part, ``json.dumps`` it, and SigV4 would
    hash the body, all on the event loop: the profile had that at 70% of the
    loop's time.  Here the thread does all of it, and the loop hands ``wire``
    to aiohttp as a view, never copied.  The blob comes first in the JSON
    object (member order does not matter), so the other members are a short
    tail written after it.
    """

    members: dict[str, Any]
    """The request's other members, as the body carries them."""
    payload_hash: str
    """The body's sha256, for SigV4's ``X-Amz-Content-SHA256``."""


def part_members(
    session: UploadSession, first_byte: int, length: int, registry_id: str | None = None
) -> dict[str, Any]:
    """The members botocore serializes beside the blob, so the prepared body matches them."""
    members: dict[str, Any] = {
        "repositoryName": session.repository,
        "uploadId": session.upload_id,
        "partFirstByte": first_byte,
        "partLastByte": first_byte + length - 1,
    }
    if registry_id is not None:
        members["registryId"] = registry_id
    return members


def encode_ecr_part(
    session: UploadSession,
    source: PartSource,
    allocate: Allocate = new_buffer,
    *,
    registry_id: str | None = None,
) -> EcrPart:
    """Stream ``source`` through small chunks into one body buffer, hashing as it goes.

    One buffer the size of the body, filled one chunk's text at a time: joining
    the chunks' texts instead would need a second body-sized copy, and would
    leave each worker thread's heap holding a part's worth of freed chunks no
    budget accounts for.
    """
    members = part_members(session, source.first_byte, source.length, registry_id)
    tail = _members_tail(members)
    head = b'{"layerPartBlob":"'
    body = allocate(len(head) + 4 * ((source.length + 2) // 3) + len(tail))
    body_hash = hashlib.sha256(head)
    body[: len(head)] = head
    end = len(head)
    for chunk in source.chunks(RAW_CHUNK_BYTES):
        text = pybase64.b64encode(chunk)
        body[end : end + len(text)] = text
        body_hash.update(text)
        end += len(text)
    body[end:] = tail
    body_hash.update(tail)
    return EcrPart(source.length, body, members, body_hash.hexdigest())


def _members_tail(members: dict[str, Any]) -> bytes:
    """What follows the blob's text: its closing quote, then the other members."""
    return b'",' + json.dumps(members, separators=(",", ":")).encode()[1:]


_STASH_KEY = "uploaderd_ecr_part"


def _stash_part(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Keep the prepared part away from botocore's serializer (it would base64 it again)."""
    part = params.get("layerPartBlob")
    if isinstance(part, EcrPart):
        context[_STASH_KEY] = part
        params["layerPartBlob"] = b""


def _use_prepared_body(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Replace botocore's body (with its empty blob) by the prepared one, before signing.

    If botocore serialized members the prepared body does not carry (a newer
    model, say), the body is rebuilt from botocore's members: a copy on the
    event loop, but never a request that differs from what botocore meant.
    ``X-Amz-Content-SHA256`` is SigV4's standard payload-hash header: signers
    use it instead of hashing the body again, and it is itself signed.
    """
    part: EcrPart | None = context.pop(_STASH_KEY, None)
    if part is None:
        return
    members = json.loads(params["body"])
    members.pop("layerPartBlob", None)
    if members != part.members:
        blob_end = len(part.wire) - len(_members_tail(part.members))
        part.wire = bytearray(memoryview(part.wire)[:blob_end]) + _members_tail(members)
        part.members = members
        part.payload_hash = hashlib.sha256(part.wire).hexdigest()
    params["body"] = part.wire
    params["headers"]["X-Amz-Content-SHA256"] = part.payload_hash


def _send_body_as_view(request: Any, **_: Any) -> None:
    """Runs after signing, before each attempt is sent (see ``PartBody``).

    botocore "rewinds" a body that is not bytes before each of its retries;
    ``PartBody`` has nothing to rewind and says so through ``seek``/``tell``.
    """
    if isinstance(request.body, bytearray | memoryview):
        request.body = PartBody(request.body)


def install_part_hooks(client: Any) -> None:
    """Make ``client`` accept ``EcrPart`` blobs (see its docstring).

    Events are named by the service (``ecr``, ``ecr-public``): both clients
    send the same UploadLayerPart body.
    """
    events = client.meta.events
    service = client.meta.service_model.service_id.hyphenize()
    events.register(f"before-parameter-build.{service}.UploadLayerPart", _stash_part)
    events.register(f"before-call.{service}.UploadLayerPart", _use_prepared_body)
    events.register(f"before-send.{service}.UploadLayerPart", _send_body_as_view)
