"""A layer's sha256 computed from its parts as they are read for sending: one pass over the bytes.

A layer whose digest is claimed beforehand (an image's blob: its manifest
names it) need not be read once to be checked and again to be sent.  The
availability check uses the claimed digest; if the registry lacks the
layer, the parts are hashed as the encoder reads them, and the digest is
compared before CompleteLayerUpload (or the final PUT), so a corrupt file is
never completed under a digest it does not have.

Parts are read strictly in order, one at a time per layer, in worker
threads; ``StreamDigest`` counts only the bytes that extend what it has, so
a part read again (after a retry, a resynchronisation or a restarted
upload) is not hashed twice.  If the push skipped bytes (it resumed an
upload past its start), the digest is incomplete and the caller hashes the
file whole instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from uploaderd.registry.base import PartSource


@dataclass(slots=True)
class StreamDigest:
    """sha256 over a layer's bytes, fed in order from the parts being sent."""

    size: int
    hashed: int = 0
    """Bytes ``0..hashed-1`` are in the digest."""
    _hash: hashlib._Hash = field(default_factory=hashlib.sha256)

    @property
    def complete(self) -> bool:
        return self.hashed == self.size

    def feed(self, offset: int, data: memoryview) -> None:
        """Hash the part of ``data`` (the layer's bytes from ``offset``) not hashed yet."""
        end = offset + len(data)
        if offset > self.hashed or end <= self.hashed:
            return  # a gap before it (never filled), or bytes already counted
        self._hash.update(data[self.hashed - offset :])
        self.hashed = end

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


@dataclass(frozen=True, slots=True)
class HashingPartSource:
    """A ``PartSource`` that feeds every byte the encoder reads to a ``StreamDigest``."""

    source: PartSource
    digest: StreamDigest

    @property
    def first_byte(self) -> int:
        return self.source.first_byte

    @property
    def length(self) -> int:
        return self.source.length

    def read_into(self, buffer: memoryview, offset: int = 0) -> None:
        self.source.read_into(buffer, offset)
        self.digest.feed(self.source.first_byte + offset, buffer)

    def chunks(self, chunk_size: int) -> Iterator[memoryview]:
        offset = self.source.first_byte
        for chunk in self.source.chunks(chunk_size):
            self.digest.feed(offset, chunk)
            offset += len(chunk)
            yield chunk
