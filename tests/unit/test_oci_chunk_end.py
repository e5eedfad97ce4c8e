"""Where an OCI chunk ends: as few PATCHes as 64 MiB allows, each of whole parts."""

from __future__ import annotations

import pytest

from uploaderd.registry.ocichunks import CHUNK_BYTES, chunk_end
from uploaderd.sizes import MIB

PART = 10 * MIB


def chunks(layer_size: int, first_byte: int = 0) -> list[int]:
    """The sizes of the chunks a layer is sent in, from ``first_byte``."""
    sizes = []
    while first_byte < layer_size:
        last = chunk_end(first_byte, PART, layer_size, CHUNK_BYTES)
        sizes.append(last + 1 - first_byte)
        first_byte = last + 1
    return sizes


@pytest.mark.parametrize(
    ("layer_size", "expected"),
    [
        (3 * MIB, [3 * MIB]),
        (64 * MIB, [64 * MIB]),  # one PATCH, not 60 MiB and then 4 MiB
        (65 * MIB, [40 * MIB, 25 * MIB]),
        (256 * MIB, [70 * MIB, 70 * MIB, 60 * MIB, 56 * MIB]),  # 4 PATCHes, not 5
    ],
)
def test_a_layer_goes_in_as_few_equal_chunks_of_whole_parts_as_fit(
    layer_size: int, expected: list[int]
) -> None:
    sizes = chunks(layer_size)
    assert sizes == expected
    assert len(sizes) == -(-layer_size // CHUNK_BYTES)
    assert all(size % PART == 0 for size in sizes[:-1])


def test_a_resumed_upload_splits_what_is_left() -> None:
    # From a registry position inside the layer (after a broken chunk), on a part boundary.
    assert chunks(100 * MIB, first_byte=30 * MIB) == [40 * MIB, 30 * MIB]
