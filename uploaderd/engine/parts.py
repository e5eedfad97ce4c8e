"""How a layer is cut into parts, under its registry's limits.

Every backend states its limits (``RegistryLimits``): ECR accepts parts of at
most 20971520 bytes, wants every part but the last to be at least 5 MiB (else
LayerPartTooSmallException at completion), allows at most 4,200 parts and
52,000 MiB per layer; ECR Public allows 1,000 parts and 10,000 MiB; an OCI
registry has no part count or layer size.  The service quota page lists
10 MiB as ECR's maximum part size while the API reference says 20971520
bytes, so the registry's own ``partSize`` answer is the default and anything
else is clamped to the range both agree on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from uploaderd.registry.limits import LARGEST_PART, RegistryLimits
from uploaderd.sizes import MIB

MAX_PART_SIZE = LARGEST_PART
"""The largest part the engine ever holds: the memory budget must fit one."""
MIN_PART_SIZE = 5 * MIB
"""The smallest part the backends take (every ``RegistryLimits.min_part_size`` today);
a layer's parts follow its registry's own ``limits``."""


@dataclass(frozen=True, slots=True)
class PartRange:
    """Bytes ``first``..``last`` inclusive, as UploadLayerPart names them."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def choose_part_size(
    layer_size: int,
    *,
    requested: int | None,
    registry_default: int,
    limits: RegistryLimits,
) -> int:
    """The part size to use for one layer.

    ``requested`` (``--part-size``) wins over the registry's answer; either is
    clamped to the registry's part sizes, then grown (in whole MiB) so the
    layer fits in its ``max_parts``.
    """
    size = requested if requested is not None else registry_default
    size = min(max(size, limits.min_part_size), limits.max_part_size)
    if limits.max_parts is not None:
        needed = -(-layer_size // limits.max_parts)  # ceil: the smallest size that fits
        if needed > size:
            size = min(-(-needed // MIB) * MIB, limits.max_part_size)
    return size


def part_ranges(layer_size: int, part_size: int, start: int = 0) -> Iterator[PartRange]:
    """The parts from byte ``start`` to the end of the layer, in upload order."""
    if part_size <= 0:
        raise ValueError(f"part size must be positive, got {part_size}")
    first = start
    while first < layer_size:
        last = min(first + part_size, layer_size) - 1
        yield PartRange(first, last)
        first = last + 1


def layer_size_problem(layer_size: int, limits: RegistryLimits) -> str | None:
    """Why the registry would refuse a layer of this size, checked before sending anything."""
    if layer_size == 0:
        return (
            "the file is empty (0 bytes); registries refuse an empty layer (EmptyUploadException)"
        )
    largest = limits.max_layer_bytes
    if limits.max_parts is not None:
        by_parts = limits.max_parts * limits.max_part_size
        largest = by_parts if largest is None else min(largest, by_parts)
    if largest is not None and layer_size > largest:
        return (
            f"the file is {layer_size:,} bytes ({_mib(layer_size)}), above {limits.kind}'s "
            f"limit of {largest:,} bytes ({_mib(largest)}) per layer; split the image into "
            "smaller layers"
        )
    return None


def _mib(nbytes: int) -> str:
    return f"{nbytes // MIB:,} MiB" if nbytes % MIB == 0 else f"{nbytes / MIB:,.1f} MiB"
