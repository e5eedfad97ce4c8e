"""What the engine needs from a registry, and nothing more.

The interface follows ECR's layer-push API because it is the strictest of the
protocols we speak: one upload per layer, parts strictly in order, completion
with the digest.  Backends translate their own failures into the
``uploaderd.errors`` hierarchy so the engine can decide on retries by kind,
not by backend-specific names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UploadSession:
    """An upload the registry has opened for one layer.

    ``part_size`` is the registry's offer as ``start_upload`` returns it; the
    engine replaces it with the size it chose under ECR's rules.
    """

    repository: str
    upload_id: str
    part_size: int


@dataclass(frozen=True, slots=True)
class PartPayload:
    """A part's bytes as the registry's protocol carries them (ECR: base64 text).

    Prepared in a worker thread by ``Registry.encode_part`` so the event loop
    only moves bytes it already has.
    """

    length: int
    wire: bytes | bytearray


class Registry(Protocol):
    """A place layers can be pushed to."""

    memory_per_part_byte: float
    """Bytes held in memory for each byte of a part in flight (encodings, request body)."""

    def encode_part(self, data: bytearray) -> PartPayload:
        """Turn raw part bytes into what ``upload_part`` sends; runs off the event loop."""
        ...

    async def ping(self) -> None:
        """Raise ``TransientRegistryError`` unless the registry answers at all.

        Any answer counts, a refusal included: readiness is about reaching
        the registry, permissions show up on the layers themselves.
        """
        ...

    async def missing_layers(self, repository: str, digests: Sequence[str]) -> set[str]:
        """The subset of ``digests`` the repository does not have yet."""
        ...

    async def start_upload(self, repository: str) -> UploadSession:
        """Open an upload for one new layer."""
        ...

    async def upload_part(self, session: UploadSession, first_byte: int, part: PartPayload) -> int:
        """Send bytes ``first_byte``.. of the layer; return the last byte the registry holds.

        Raises ``PartOutOfOrderError`` carrying the registry's next byte when
        it holds a different count (a retried part that had already arrived).
        """
        ...

    async def complete_upload(self, session: UploadSession, digest: str) -> None:
        """Finish the upload; a layer the registry already has counts as finished."""
        ...

    async def put_manifest(
        self, repository: str, tag: str, manifest: bytes, media_type: str
    ) -> None:
        """Publish an image manifest under ``tag``; its blobs must already be present.

        Called only after every blob the manifest names was confirmed, so a
        tag never points at an image someone cannot pull.  Publishing the
        same manifest under the same tag again counts as success.
        """
        ...
