"""A big loose layer's digest, computed while its upload already runs.

A spool file has no digest until it is hashed, and on the fast links this
daemon is for, hashing a GiB takes about as long as sending it: hash, then
upload, is twice the time.  For a layer at least ``overlap_threshold`` bytes
the hash pass runs beside the upload instead.  As soon as the digest is known
the registry is asked whether it has the layer: if it does, the upload is
abandoned (the bytes wasted are what was sent while hashing); if not, the
upload may complete, under that digest, once the check has answered.  Parts
still go strictly in order, and both passes draw on the one byte budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from uploaderd.engine.budget import ByteBudget
from uploaderd.engine.reader import LayerFile, hash_layer


class HashAlongside:
    """The hash pass of one layer, run beside its upload, and what it found."""

    def __init__(
        self,
        layer: LayerFile,
        budget: ByteBudget,
        *,
        is_missing: Callable[[str], Awaitable[bool]],
        on_digest: Callable[[str], None],
    ) -> None:
        self.layer = layer
        self.budget = budget
        self.is_missing = is_missing
        self.on_digest = on_digest
        self.digest: str | None = None
        self.present = False
        """The registry had the layer: the upload was abandoned."""
        self._cleared = anyio.Event()

    async def run(self, upload: anyio.CancelScope) -> None:
        """Hash, ask the registry, then let the upload complete or cancel it."""
        digest = await hash_layer(self.layer, self.budget)
        self.digest = digest
        self.on_digest(digest)
        if not await self.is_missing(digest):
            self.present = True
            upload.cancel()
            return
        self._cleared.set()

    async def cleared(self) -> str:
        """The digest, once the registry said it lacks the layer: completion may go on."""
        await self._cleared.wait()
        assert self.digest is not None  # set before the event
        return self.digest
