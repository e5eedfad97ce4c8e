"""How a layer is cut into parts, under ECR's rules.

ECR accepts a part of at most 20971520 bytes, wants every part but the last
to be at least 5 MiB (else LayerPartTooSmallException at completion), allows
at most 4,200 parts per layer and 52,000 MiB per layer.  The service quota
page lists 10 MiB as the maximum part size while the API reference says
20971520 bytes, so the registry's own ``partSize`` answer is the default and
anything else is clamped to the range both agree on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from uploaderd.sizes import MIB

MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 20971520
MAX_PARTS_PER_LAYER = 4200
MAX_LAYER_SIZE = 52000 * MIB


@dataclass(frozen=True, slots=True)
class PartRange:
    """Bytes ``first``..``last`` inclusive, as UploadLayerPart names them."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def choose_part_size(layer_size: int, *, requested: int | None, registry_default: int) -> int:
    """The part size to use for one layer.

    ``requested`` (``--part-size``) wins over the registry's answer; either is
    clamped to 5 MiB..20971520, then grown so the layer fits in 4,200 parts.
    """
    size = requested if requested is not None else registry_default
    size = min(max(size, MIN_PART_SIZE), MAX_PART_SIZE)
    needed = -(-layer_size // MAX_PARTS_PER_LAYER)  # ceil: the smallest size that fits
    if needed > size:
        size = min(-(-needed // MIB) * MIB, MAX_PART_SIZE)
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


def layer_size_problem(layer_size: int) -> str | None:
    """Why ECR would refuse a layer of this size, checked before sending anything."""
    if layer_size == 0:
        return "the file is empty (0 bytes); ECR refuses an empty layer (EmptyUploadException)"
    if layer_size > MAX_LAYER_SIZE:
        return (
            f"the file is {layer_size} bytes, above ECR's limit of {MAX_LAYER_SIZE} bytes "
            "(52,000 MiB) per layer; split the image into smaller layers"
        )
    return None
