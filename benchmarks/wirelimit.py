"""The wire limit: the per-byte work ECR's JSON protocol forces on any client.

ECR's layer push cannot be done with less than this, whatever the client:

* sha256 over the whole layer, because the digest names the layer;
* base64 of every part, because ``UploadLayerPart`` carries the part as a JSON string;
* sha256 of every request body, because SigV4 signs the payload hash.

Measured in-process on one thread over the same files as the push, read from the page
cache just as the push reads them. One thread is the honest reference for a machine
with two cores: the push has the other core too, but it also shares the machine with
the registry process that decodes and stores every byte it sends.

The base64 is pybase64's, the fastest this host has and the one the push uses: a limit
computed with a slower encoder is not a limit. (Up to commit d78564c the reference used
the standard library's base64, about 20x slower than pybase64 here, which made the
reference about half as fast and every ratio about twice as flattering; push.py still
measures that figure with ``STDLIB_BASE64``, for comparison with the older rows.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pybase64

from benchmarks.harness import MIB

DEFAULT_PART_SIZE = 10 * MIB

Encoder = Callable[[memoryview], bytes]
FAST_BASE64: Encoder = pybase64.b64encode
STDLIB_BASE64: Encoder = base64.b64encode


@dataclass(frozen=True, slots=True)
class WireLimit:
    """What the forced work took one thread: its wall time and its own CPU time."""

    wall_seconds: float
    cpu_seconds: float


def wire_limit(
    files: Sequence[Path], part_size: int = DEFAULT_PART_SIZE, encode: Encoder = FAST_BASE64
) -> WireLimit:
    """The forced per-byte work for ``files``, done once by this thread.

    The CPU time is the thread's own (``thread_time``): the benchmark's other
    threads, if any, are not counted, just as only the push process's CPU is.
    """
    started, started_cpu = time.perf_counter(), time.thread_time()
    buffer = bytearray(part_size)
    for path in files:
        _push_work(path, buffer, encode)
    return WireLimit(time.perf_counter() - started, time.thread_time() - started_cpu)


def _push_work(path: Path, buffer: bytearray, encode: Encoder) -> str:
    layer_hash = hashlib.sha256()
    view = memoryview(buffer)
    first = 0
    with path.open("rb", buffering=0) as layer:
        while read := layer.readinto(buffer):
            part = view[:read]
            layer_hash.update(part)
            _sign_body(path.name, first, first + read - 1, encode(part))
            first += read
    return layer_hash.hexdigest()


def _sign_body(upload_id: str, first: int, last: int, blob: bytes) -> str:
    """Hashes the body botocore would send, streaming the blob rather than copying it
    into a joined body: the copy is not forced by the protocol, so it is not counted."""
    head = json.dumps(
        {
            "repositoryName": "bench/push",
            "uploadId": upload_id,
            "partFirstByte": first,
            "partLastByte": last,
        }
    )
    body_hash = hashlib.sha256(head[:-1].encode() + b', "layerPartBlob": "')
    body_hash.update(blob)
    body_hash.update(b'"}')
    return body_hash.hexdigest()
