"""What a registry accepts per layer: a fact of each backend, checked before anything is sent.

The engine cuts every layer into parts and refuses a layer too big for the
registry before a single request, so the numbers belong to the backend, not
to the engine: ECR and ECR Public speak the same API with different limits,
and an OCI Distribution registry has none of them.  Each backend sets its
``limits``; the engine reads them (``engine.parts``).
"""

from __future__ import annotations

from dataclasses import dataclass

from uploaderd.sizes import MIB

LARGEST_PART = 20971520
"""The largest part any backend is sent: ECR's API reference maximum.  The
memory budget must hold one such part, whichever registry is chosen."""


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    """The per-layer rules of one kind of registry; ``None`` means no such limit."""

    kind: str
    """How messages name the registry ("ECR", "ECR Public", "the OCI registry")."""
    max_parts: int | None
    """Parts one layer may have; the part size grows until the layer fits."""
    max_layer_bytes: int | None
    """Bytes one layer may have; a bigger file is refused before any request."""
    min_part_size: int
    """Bytes every part but the last must have (ECR: LayerPartTooSmallException)."""
    max_part_size: int = LARGEST_PART
    """Bytes one part may have."""
    digests_per_check: int = 1
    """Layers one availability request can ask about: ECR's BatchCheckLayerAvailability
    takes 100, an OCI registry's HEAD one.  Where it is one, waiting to share a request
    only delays the check (``engine.availability``)."""


ECR_LIMITS = RegistryLimits(
    kind="ECR",
    max_parts=4200,
    max_layer_bytes=52000 * MIB,
    min_part_size=5 * MIB,
    digests_per_check=100,
)
"""Amazon ECR's service quotas: 4,200 parts and 52,000 MiB per layer, parts of 5 MiB or
more; 100 digests per BatchCheckLayerAvailability."""

ECR_PUBLIC_LIMITS = RegistryLimits(
    kind="ECR Public",
    max_parts=1000,
    max_layer_bytes=10000 * MIB,
    min_part_size=5 * MIB,
    digests_per_check=100,
)
"""Amazon ECR Public's quotas: 1,000 parts and 10,000 MiB per layer."""

OCI_LIMITS = RegistryLimits(
    kind="the OCI registry", max_parts=None, max_layer_bytes=None, min_part_size=5 * MIB
)
"""The distribution spec sets no part count or layer size.  Parts stay at least
5 MiB all the same: ECR's own OCI endpoint refuses smaller chunks, and a chunk
is one request, so smaller ones only cost round trips."""
