import itertools

import pytest

from uploaderd.engine.parts import (
    MAX_LAYER_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS_PER_LAYER,
    MIB,
    MIN_PART_SIZE,
    PartRange,
    choose_part_size,
    layer_size_problem,
    part_ranges,
)


@pytest.mark.parametrize(
    ("size", "part", "expected"),
    [
        (1, 5 * MIB, [PartRange(0, 0)]),
        (10 * MIB, 5 * MIB, [PartRange(0, 5 * MIB - 1), PartRange(5 * MIB, 10 * MIB - 1)]),
        (
            10 * MIB + 1,
            5 * MIB,
            [
                PartRange(0, 5 * MIB - 1),
                PartRange(5 * MIB, 10 * MIB - 1),
                PartRange(10 * MIB, 10 * MIB),
            ],
        ),
    ],
)
def test_part_ranges_are_contiguous_and_cover_the_layer(
    size: int, part: int, expected: list[PartRange]
) -> None:
    assert list(part_ranges(size, part)) == expected


def test_part_ranges_resume_from_a_byte() -> None:
    ranges = list(part_ranges(12, 5, start=7))
    assert ranges == [PartRange(7, 11)]


def test_every_part_but_the_last_is_full_size() -> None:
    ranges = list(part_ranges(123_456_789, 7 * MIB))
    assert all(r.length == 7 * MIB for r in ranges[:-1])
    assert sum(r.length for r in ranges) == 123_456_789
    assert all(b.first == a.last + 1 for a, b in itertools.pairwise(ranges))


def test_registry_part_size_is_the_default() -> None:
    assert choose_part_size(100 * MIB, requested=None, registry_default=10 * MIB) == 10 * MIB


def test_requested_part_size_is_clamped_to_ecr_limits() -> None:
    assert choose_part_size(100 * MIB, requested=1, registry_default=10 * MIB) == MIN_PART_SIZE
    assert (
        choose_part_size(100 * MIB, requested=64 * MIB, registry_default=10 * MIB) == MAX_PART_SIZE
    )


def test_part_size_grows_so_a_large_layer_fits_in_4200_parts() -> None:
    size = 50_000 * MIB
    part = choose_part_size(size, requested=None, registry_default=5 * MIB)
    assert MIN_PART_SIZE <= part <= MAX_PART_SIZE
    assert len(list(part_ranges(size, part))) <= MAX_PARTS_PER_LAYER


def test_layer_size_problems_are_specific() -> None:
    assert layer_size_problem(1) is None
    assert layer_size_problem(MAX_LAYER_SIZE) is None
    assert "empty" in (layer_size_problem(0) or "")
    assert "52,000 MiB" in (layer_size_problem(MAX_LAYER_SIZE + 1) or "")
