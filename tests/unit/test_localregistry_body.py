"""The local registry's body decoder reads every request exactly as a JSON parser would.

UploadLayerPart's base64 text is lifted out by its delimiters instead of being scanned
by the parser (see ``decode_body``); whatever the body, the result must be what
``json.loads`` gives, with that one string as bytes, and invalid JSON must still be
refused.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uploaderd.localregistry.protocol import EcrError, decode_body

# AWS JSON 1.1 numbers are 64-bit (``long``); orjson reads a wider integer as a float.
LONG = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_scalars = st.none() | st.booleans() | LONG | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
# Keys and values that look like the blob's key or contain quotes, escapes and commas.
tricky_text = st.sampled_from(
    ['"layerPartBlob"', 'a,"layerPartBlob":"', "\\", '\\"', "{", ",", "QUJD", "/"]
) | st.text(max_size=12)


def as_parser_reads(value: dict[str, Any]) -> dict[str, Any]:
    blob = value.get("layerPartBlob")
    if isinstance(blob, bytes | bytearray | memoryview):
        return {**value, "layerPartBlob": bytes(blob).decode("ascii")}
    return value


@given(
    members=st.dictionaries(tricky_text | st.text(max_size=8), json_values | tricky_text),
    blob=st.none() | st.sampled_from(["", "QUJD", "QUI=", "a/b+", "QQ\\/="]) | tricky_text,
    blob_first=st.booleans(),
    separators=st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
)
def test_any_object_decodes_as_json_loads_reads_it(
    members: dict[str, Any],
    blob: str | None,
    blob_first: bool,
    separators: tuple[str, str],
) -> None:
    members.pop("layerPartBlob", None)
    if blob is not None:
        pair = {"layerPartBlob": blob}
        members = {**pair, **members} if blob_first else {**members, **pair}
    raw = json.dumps(members, separators=separators).encode()
    assert as_parser_reads(decode_body(raw)) == json.loads(raw)


def test_a_part_body_gives_its_base64_text_as_bytes() -> None:
    raw = b'{"layerPartBlob":"QUJD","repositoryName":"team/app","partFirstByte":0}'
    assert decode_body(raw) == {
        "layerPartBlob": b"QUJD",
        "repositoryName": "team/app",
        "partFirstByte": 0,
    }


@pytest.mark.parametrize(
    "raw",
    [
        b'{"x":"a,"layerPartBlob":"QUJD"}',  # the key follows an unterminated string
        b'{"layerPartBlob":"QUJD" "x":1}',  # a missing comma after the blob
        b'{"layerPartBlob":"QUJD"',  # no closing brace
        b'["layerPartBlob","QUJD"]',  # not an object
    ],
)
def test_invalid_json_is_still_refused(raw: bytes) -> None:
    with pytest.raises(EcrError) as refused:
        decode_body(raw)
    assert refused.value.code == "SerializationException"
