"""The AWS JSON 1.1 framing ECR speaks, as botocore sends and parses it.

Everything here is about the wire: which header names the operation, how a result and
an error are framed, which status an error carries. botocore finds the error name in
``__type`` and copies the other fields of a modeled error (``lastValidByteReceived``
of ``InvalidLayerPartException``, for instance) to the top level of
``ClientError.response``, so errors must carry those fields exactly as modeled.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import orjson
from aiohttp import web

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
#: ECR Public's ``targetPrefix`` and signing name (botocore's ecr-public model).
PUBLIC_TARGET_PREFIX = "SpencerFrontendService."
SIGNING_NAME = "ecr"
PUBLIC_SIGNING_NAME = "ecr-public"
CONTENT_TYPE = "application/x-amz-json-1.1"
SIGV4_SCHEME = "AWS4-HMAC-SHA256"

#: A fixed account id: ECR registry ids are 12-digit AWS account ids.
REGISTRY_ID = "000000000000"
REGION = "us-east-1"

JsonObject = dict[str, Any]


class EcrError(Exception):
    """An error answer, named as ECR names it so clients can branch on the code.

    ``fields`` are the modeled members of the error shape besides ``message``; they
    reach the client at the top level of ``ClientError.response``.
    """

    def __init__(self, code: str, message: str, *, status: int = 400, **fields: object) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields

    def to_json(self) -> JsonObject:
        return {"__type": self.code, "message": self.message, **self.fields}


def operation_name(target: str | None, prefix: str = TARGET_PREFIX) -> str:
    """Returns the operation named by ``X-Amz-Target``.

    AWS answers an unknown target with ``UnknownOperationException`` (HTTP 400): so
    does an ECR endpoint to ECR Public's prefix, and the reverse.  The caller decides
    whether the name is one it implements.
    """
    if not target or not target.startswith(prefix):
        raise EcrError("UnknownOperationException", f"unknown target {target!r}")
    return target.removeprefix(prefix)


def is_signed(request: web.Request) -> bool:
    """True if the request carries a SigV4 ``Authorization`` header.

    Signatures are not verified (any credentials are accepted); the check exists so a
    client that forgot to sign, or signs with the wrong scheme, fails here as it would
    against ECR instead of passing silently.
    """
    return request.headers.get("Authorization", "").startswith(SIGV4_SCHEME)


_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,]+/[0-9]{8}/[^/,]+/([^/,]+)/aws4_request")


def check_signing_name(request: web.Request, signing_name: str) -> None:
    """A signature scoped to another service is refused, as AWS refuses it.

    ECR signs as ``ecr``, ECR Public as ``ecr-public``: a client configured with the
    wrong one would fail against AWS, so it must fail here too.
    """
    scope = _CREDENTIAL_SCOPE.search(request.headers.get("Authorization", ""))
    if scope is None or scope.group(1) != signing_name:
        raise EcrError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{signing_name}'.",
            status=403,
        )


def decode_body(raw: bytes | bytearray) -> JsonObject:
    """Parses a request body; an empty body is an empty input, as botocore sends it.

    An UploadLayerPart body is almost all one base64 string.  Its text is lifted
    out by its delimiters (``bytes.find`` runs at memory speed) and the parser
    sees only the rest: a JSON parser's string scan was most of this server's
    CPU, which in benchmarks it shares with the push it measures.  The value
    is then a view of the base64 text.  A body the lift cannot prove it
    reads right (an escape in the string, the key not where a key can be)
    is parsed whole, as before.
    """
    if not raw:
        return {}
    lifted = _lift_part_blob(raw)
    value = _parse_object(raw if lifted is None else lifted[0])
    if lifted is not None:
        if value.get(PART_BLOB) != "":
            return _parse_object(raw)
        value[PART_BLOB] = lifted[1]
    return value


PART_BLOB = "layerPartBlob"
_PART_BLOB_KEY = b'"layerPartBlob"'
_VALUE_OPENING = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*"')
_JSON_SPACE = b" \t\r\n"


def _lift_part_blob(raw: bytes | bytearray) -> tuple[bytes | bytearray, memoryview] | None:
    """``raw`` with layerPartBlob's string emptied, and a view of that string's text; or None."""
    key = raw.find(_PART_BLOB_KEY)
    if key < 0:
        return None
    # Outside strings a quote is structural; inside one it is escaped, so a
    # key's opening quote directly after '{' or ',' (and spaces) is a key.
    if not raw[:key].rstrip(_JSON_SPACE).endswith((b"{", b",")):
        return None
    opening = _VALUE_OPENING.match(raw, key + len(_PART_BLOB_KEY))
    if opening is None:
        return None
    start = opening.end()
    end = raw.find(b'"', start)
    if end < 0 or raw.find(b"\\", start, end) >= 0:
        return None
    return raw[:start] + raw[end:], memoryview(raw)[start:end]


def _parse_object(raw: bytes | bytearray) -> JsonObject:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EcrError("SerializationException", f"request body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise EcrError("SerializationException", "request body must be a JSON object")
    return value


def _headers() -> dict[str, str]:
    return {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": str(uuid.uuid4())}


def result_response(result: JsonObject) -> web.Response:
    return web.Response(status=200, body=json.dumps(result).encode(), headers=_headers())


def error_response(error: EcrError) -> web.Response:
    return web.Response(
        status=error.status, body=json.dumps(error.to_json()).encode(), headers=_headers()
    )


class ApiCall:
    """One decoded request: its members, and the address the client reached us at."""

    def __init__(self, body: JsonObject, base_url: str) -> None:
        self.body = body
        self.base_url = base_url
